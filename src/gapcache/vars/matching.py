"""Which served file or image a variable names: upstream patterns matched against the lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from packaging.version import InvalidVersion, Version

from .catalog import pattern_re
from .facts import Image, ServedFile


@dataclass(frozen=True)
class FileMatch:
    path: str  # served path below the files listener, URL-quoted, `{{ image_arch }}` where arches vary
    arches: tuple[str, ...]  # the architectures the mirror holds for it (empty: not per-arch)
    version: str


def _version_key(v: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, v)


def _upstream(f: ServedFile) -> list[str]:
    """The ``host/path`` spellings a file can match by: its served path, and its source URL."""
    out = [f.path]
    parts = urlsplit(f.source)
    if parts.scheme in ("http", "https") and parts.hostname:
        out.append(f"{parts.hostname}{parts.path}")
    return out


def match_file(files: list[ServedFile], pattern: str, arch_var: str = "image_arch") -> FileMatch | None:
    """The file(s) a variable's upstream pattern names: the newest version; with several
    architectures of it, the path with ``{{ image_arch }}`` (or ``{{ ansible_architecture }}``)
    in place of the architecture, so each node gets its own."""
    rx = pattern_re(pattern)
    found: list[tuple[ServedFile, re.Match[str], bool]] = []
    for f in files:
        for i, spelling in enumerate(_upstream(f)):
            m = rx.match(spelling)
            if m:
                found.append((f, m, i == 0))
                break
    if not found:
        return None
    groups = rx.groupindex
    versions = {m.group("v") if "v" in groups else "" for _, m, _ in found}
    newest = max(versions, key=_version_key)
    chosen = [(f, m, on_path) for f, m, on_path in found if (m.group("v") if "v" in groups else "") == newest]
    arch_group = "arch" if "arch" in groups else "march" if "march" in groups else None
    if arch_group is None or len(chosen) == 1:
        f, m, _ = chosen[0]
        arch = (m.group(arch_group),) if arch_group else ()
        return FileMatch(quote(f.path), arch, newest)
    var = "{{ image_arch }}" if arch_group == "arch" else "{{ ansible_architecture }}"
    templated: set[str | None] = set()
    for f, m, on_path in chosen:
        if not on_path:  # matched by source URL under a custom path: no common template
            templated.add(None)
            continue
        s, e = m.span(arch_group)
        templated.add(quote(f.path[:s]) + var + quote(f.path[e:]))
    arches = tuple(sorted(m.group(arch_group) for _, m, _ in chosen))
    if len(templated) == 1 and None not in templated:
        path = templated.pop()
        assert path is not None
        return FileMatch(path, arches, newest)
    preferred = next((c for c in chosen if c[1].group(arch_group) in ("amd64", "x86_64")), chosen[0])
    return FileMatch(quote(preferred[0].path), (preferred[1].group(arch_group),), newest)


def pick_file(files: list[ServedFile], pattern: str) -> str | None:
    """One literal served path for a pattern (amd64 preferred): for the shell variables."""
    rx = pattern_re(pattern)
    hits = [f for f in files if any(rx.match(s) for s in _upstream(f))]
    if not hits:
        return None
    amd = [f for f in hits if re.search(r"amd64|x86_64", f.path)]
    return quote((amd or hits)[-1].path)


def images_of(images: list[Image], upstream_repo: str) -> list[Image]:
    return [i for i in images if i.upstream == upstream_repo]


def newest_tag(images: list[Image]) -> Image | None:
    tagged = [i for i in images if i.tag]
    if not tagged:
        return images[0] if images else None
    return max(tagged, key=lambda i: _version_key((i.tag or "").lstrip("v")))


def image_ref(img: Image) -> str:
    """The mirror's name for an image with its tag (or digest)."""
    return f"{img.name}:{img.tag}" if img.tag else f"{img.name}@{img.digest}"


def has_prefix(images: list[Image], upstream_prefix: str) -> bool:
    return any(i.upstream.startswith(upstream_prefix.rstrip("/") + "/") for i in images)

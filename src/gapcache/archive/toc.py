"""A split archive's table of contents, and sorting what a user names (``gapcache load DIR/*``) by
content: archive parts, the TOC, and the lock files written beside them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArchiveError, FormatError, GapcacheError
from ..store import hash_file
from .format import ARCHIVE_FORMAT, HEX64, ZSTD_MAGIC


@dataclass
class Toc:
    """A split archive's table of contents (``ARCHIVE.toc.json``), its fields checked."""

    path: Path
    lock_sha256: str
    parts: list[tuple[Path, int, str]]  # (part, size, sha256 hex)


def read_toc(path: Path, doc: Any = None) -> Toc:
    """Parse and check a TOC: ``format`` (this gapcache's or older), the lock's sha256, and for each
    part a plain file name beside the TOC, its size and sha256."""
    try:
        if doc is None:
            doc = json.loads(path.read_bytes())
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        fmt = doc.get("format")
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise ValueError(f"format {fmt!r}")
        if fmt > ARCHIVE_FORMAT:
            raise FormatError(
                f"{path}: archive format {fmt} is newer than this gapcache reads ({ARCHIVE_FORMAT}); upgrade gapcache"
            )
        lock_sha = doc.get("lock_sha256")
        if not isinstance(lock_sha, str) or not HEX64.match(lock_sha):
            raise ValueError(f"lock_sha256 {lock_sha!r}")
        parts: list[tuple[Path, int, str]] = []
        if not isinstance(doc.get("parts"), list) or not doc["parts"]:
            raise ValueError("no parts")
        for part in doc["parts"]:
            name, size, sha = part["name"], part["size"], part["sha256"]
            if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith(".") or not name:
                raise ValueError(f"bad part name {name!r}")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"{name}: size {size!r}")
            if not isinstance(sha, str) or not HEX64.match(sha):
                raise ValueError(f"{name}: sha256 {sha!r}")
            parts.append((path.with_name(name), size, sha))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"{path}: unreadable or damaged table of contents: {exc}") from exc
    return Toc(path, lock_sha, parts)


@dataclass
class ArchiveSet:
    """What the user named (``gapcache load DIR/*``), sorted by content: the archive parts in
    order, the TOC if one was given, and the lock files beside them (not loaded)."""

    parts: list[Path]
    toc: Toc | None = None
    lock_files: list[Path] = field(default_factory=list)


def _sniff(path: Path) -> tuple[str, Any]:
    """``("archive", None)``, ``("toc", doc)`` or ``("lock", None)``, by content, not by name."""
    try:
        with open(path, "rb") as f:
            start = f.read(512)
    except FileNotFoundError as exc:
        raise GapcacheError(f"{path}: no such archive part") from exc
    except OSError as exc:
        raise GapcacheError(f"{path}: {exc.strerror}") from exc
    if start[:4] == ZSTD_MAGIC or start[257:262] == b"ustar":
        return "archive", None
    if start.lstrip()[:1] == b"{":
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ArchiveError(f"{path}: neither an archive nor a table of contents: {exc}") from exc
        if isinstance(doc, dict) and "parts" in doc:
            return "toc", doc
        if isinstance(doc, dict) and "items" in doc:
            return "lock", None
    return "archive", None  # the reader says what is wrong with it


def archive_set(paths: list[Path]) -> ArchiveSet:
    """Sort ``paths`` into parts, TOC and lock files by content. With a TOC, its parts in its order
    (parts named besides must be among them); without one, the parts as given, each once."""
    out = ArchiveSet(parts=[])
    given: list[Path] = []
    for p in paths:
        kind, doc = _sniff(p)
        if kind == "toc":
            if out.toc is not None:
                raise ArchiveError(f"{p}: a second table of contents (the first: {out.toc.path})")
            out.toc = read_toc(p, doc)
        elif kind == "lock":
            out.lock_files.append(p)
        elif p.resolve() not in {g.resolve() for g in given}:
            given.append(p)
    if out.toc is None:
        out.parts = given
        return out
    listed = {part.resolve() for part, _, _ in out.toc.parts}
    for g in given:
        if g.resolve() not in listed:
            raise ArchiveError(f"{g}: not a part listed in {out.toc.path}")
    out.parts = [part for part, _, _ in out.toc.parts]
    return out


def resolve_parts(paths: list[Path]) -> list[Path]:
    """The archive parts ``paths`` name (a TOC expands to its parts; lock files are skipped)."""
    return archive_set(paths).parts


def verify_toc(toc: Path | Toc) -> list[str]:
    """Check every part named by a TOC against its size and sha256; returns problems."""
    problems = []
    t = toc if isinstance(toc, Toc) else read_toc(toc)
    for p, size, sha in t.parts:
        if not p.exists():
            problems.append(f"{p.name}: missing")
            continue
        if p.stat().st_size != size:
            problems.append(f"{p.name}: size {p.stat().st_size}, expected {size}; re-send this part")
            continue
        if hash_file(p).removeprefix("sha256:") != sha:
            problems.append(f"{p.name}: sha256 does not match the table of contents; re-send this part")
    return problems

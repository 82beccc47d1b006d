"""Python packages resolved for the cluster's Pythons and CPUs, not the build host's.

Manifest section::

    python:
      requirements: ["requests", "numpy>=1.26"]
      requirements_files: [requirements.txt]
      targets:                          # default: DEFAULT_TARGETS (Ubuntu 22.04/24.04, RHEL 9)
        - {python: "3.10", platform: manylinux_2_28_aarch64}
      sdists: allow                     # allow: a wheel when one exists, else the sdist; never
      index_url: https://…/simple/      # default: the index pip on this host is configured with

Resolution uses uv's resolver (``uv pip compile --python-platform --python-version``): it resolves
for another platform and Python from this host and, unlike ``pip download --platform``, can fall back
to sdists. Only the configured index counts (``--no-config``, ``UV_*``/``PIP_*`` cleared). Each pinned
project's file list then comes from the index (PEP 691 JSON, or PEP 503 HTML) through the shared
downloader; for every target the best-matching wheel (by ``packaging.tags`` priority) is chosen, or
the sdist. Every file carries the index's sha256; the index's PEP 658 metadata file is kept too.
"""

from __future__ import annotations

import asyncio
import html.parser
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from ...blobs import BlobIndex, Handler
from ...errors import GapcacheError
from ...lock import GENERATED, Artifact, Item
from ...manifest.python import PythonSection, Target
from ...store import Store
from ...tools import build_extra
from ..base import ResolveContext

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
BOOTSTRAP = ["pip", "setuptools", "wheel"]


def isolated_env() -> dict[str, str]:
    """The environment for resolver subprocesses: the host's pip/uv settings do not leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def default_index_url() -> str:
    """The index pip on this host is configured with (its index-url), else pip's own default."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True, check=False
    )
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip()
    from pip._internal.models.index import PyPI

    return str(PyPI.simple_url)


def uv_binary() -> str:
    return str(build_extra("uv", "uv", "resolving Python packages").find_uv_bin())


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str
    size: int | None
    requires_python: str | None
    metadata_sha256: str | None


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def parse_project_page(body: bytes, content_type: str, page_url: str) -> list[IndexFile]:
    files = []
    if JSON_TYPE in content_type:
        doc = json.loads(body)
        for f in doc.get("files", []):
            sha = f.get("hashes", {}).get("sha256")
            if not sha or f.get("yanked"):
                continue
            meta = f.get("core-metadata", f.get("dist-info-metadata"))
            files.append(
                IndexFile(
                    filename=f["filename"],
                    url=urljoin(page_url, f["url"]).split("#", 1)[0],
                    sha256=sha,
                    size=f.get("size"),
                    requires_python=f.get("requires-python"),
                    metadata_sha256=meta.get("sha256") if isinstance(meta, dict) else None,
                )
            )
        return files
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    for a in parser.links:
        href = a.get("href")
        if not href or "data-yanked" in a:
            continue
        url, frag = urldefrag(urljoin(page_url, href))
        if not frag.startswith("sha256="):
            continue
        meta = a.get("data-core-metadata") or a.get("data-dist-info-metadata") or ""
        files.append(
            IndexFile(
                filename=url.rsplit("/", 1)[-1],
                url=url,
                sha256=frag[7:],
                size=None,
                requires_python=a.get("data-requires-python"),
                metadata_sha256=meta[7:] if meta.startswith("sha256=") else None,
            )
        )
    return files


def choose_file(files: list[IndexFile], version: str, target: Target, sdists: str) -> IndexFile | None:
    """The best wheel of ``version`` for ``target`` (by tag priority), else its sdist if allowed."""
    ranks = {t: i for i, t in enumerate(target.tags())}
    best: tuple[int, IndexFile] | None = None
    sdist = None
    for f in files:
        if f.filename.endswith(".whl"):
            try:
                _, ver, _, tags = parse_wheel_filename(f.filename)
            except ValueError:
                continue
            if str(ver) != version:
                continue
            rank = min((ranks[t] for t in tags if t in ranks), default=None)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, f)
        elif f.filename.endswith((".tar.gz", ".zip")):
            try:
                _, ver = parse_sdist_filename(f.filename)
            except ValueError:
                continue
            if str(ver) == version:
                sdist = f
    if best is not None:
        return best[1]
    return sdist if sdists == "allow" else None


def wheel_metadata(wheel: Path, filename: str) -> bytes:
    """The ``METADATA`` file of a wheel (its ``<name>-<version>.dist-info/``), as PEP 658 serves it."""
    import zipfile

    name, _version, _, _ = parse_wheel_filename(filename)
    try:
        with zipfile.ZipFile(wheel) as zf:
            candidates = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            want = [n for n in candidates if canonicalize_name(n.split("-", 1)[0]) == name]
            return zf.read((want or candidates)[0])
    except (zipfile.BadZipFile, IndexError, KeyError) as exc:
        raise GapcacheError(f"{filename}: no readable METADATA in the wheel ({exc})") from exc


PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


async def compile_target(
    reqs: list[str], target: Target, section: PythonSection, index: str, scratch: Path, extra: list[str] = BOOTSTRAP
) -> dict[str, str]:
    """Pinned ``{project: version}`` for one target, from uv's resolver (``extra``: projects always added)."""
    infile = scratch / f"req-{target.label()}.in"
    infile.write_text("\n".join([*reqs, *extra]) + "\n")
    cmd = [
        uv_binary(), "pip", "compile", str(infile), "--no-config", "--no-header", "--no-annotate", "--quiet",
        "--index-url", index, "--python-version", target.python, "--python-platform", target.uv_platform(),
        # the target Python need not exist here: uv resolves for --python-version; this interpreter only
        # runs sdist builds, and uv must not go looking for (or downloading) another one
        "--python", sys.executable, "--no-python-downloads",
    ]  # fmt: skip
    if section.sdists == "never":
        cmd += ["--only-binary", ":all:"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=isolated_env()
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        msg = err.decode(errors="replace").strip().splitlines()
        detail = " ".join(line.strip() for line in msg if line.strip())[-600:]
        raise GapcacheError(f"cannot resolve for target {target.label()}: {detail}")
    pins = {}
    for line in out.decode().splitlines():
        m = PIN_RE.match(line.strip())
        if m:
            pins[str(canonicalize_name(m.group(1)))] = m.group(2)
    return pins


class PythonKind:
    name = "python"
    listener = "pypi"

    def __init__(self, extra: list[str] = BOOTSTRAP) -> None:
        self.extra = extra  # projects resolved with every requirement set (pip, setuptools, wheel)

    async def resolve(self, section: PythonSection | None, ctx: ResolveContext) -> list[Item]:
        if section is None:
            return []
        reqs = list(section.requirements)
        for rf in section.requirements_files:
            for line in Path(rf).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line and not line.startswith("-"):
                    reqs.append(line)
        configured = section.index_url if section.index_url else await asyncio.to_thread(default_index_url)
        index = configured.rstrip("/") + "/"
        pins: dict[str, dict[str, str]] = {}  # target label -> project -> version
        for target in section.targets:
            what = f"requirements for {target.label()}"
            pinned = await ctx.attempt(
                self.name, what, compile_target(reqs, target, section, index, ctx.scratch, self.extra)
            )
            if pinned is not None:
                pins[target.label()] = pinned
        wanted: dict[tuple[str, str], list[Target]] = {}
        for target in section.targets:
            for project, version in pins.get(target.label(), {}).items():
                wanted.setdefault((project, version), []).append(target)
        pages: dict[str, list[IndexFile]] = {}

        async def page(project: str) -> list[IndexFile]:
            if project not in pages:
                url = f"{index}{project}/"
                body, headers = await ctx.downloader.get(
                    url, {"Accept": f"{JSON_TYPE}, text/html;q=0.1"}, max_size=64 << 20
                )
                pages[project] = parse_project_page(body, headers.get("Content-Type", ""), url)
            return pages[project]

        async def one(project: str, version: str, targets: list[Target]) -> Item:
            files = await page(project)
            chosen: dict[str, IndexFile] = {}
            for t in targets:
                f = choose_file(files, version, t, section.sdists)
                if f is None:
                    raise GapcacheError(f"no file for target {t.label()}")
                chosen[f.filename] = f
            arts, info = [], {}
            for f in chosen.values():
                path = f"pypi/{project}/{f.filename}"
                mt = "application/zip" if f.filename.endswith((".whl", ".zip")) else "application/gzip"
                arts.append(Artifact(path=path, source=f.url, digest=f"sha256:{f.sha256}", size=f.size, media_type=mt))
                entry: dict[str, Any] = {"requires_python": f.requires_python}
                if f.metadata_sha256:
                    arts.append(
                        Artifact(
                            path=path + ".metadata",
                            source=f.url + ".metadata",
                            digest=f"sha256:{f.metadata_sha256}",
                            media_type="text/plain",
                        )
                    )
                    entry["metadata"] = f"sha256:{f.metadata_sha256}"
                info[f.filename] = entry
            return Item(
                kind=self.name,
                name=f"{project}=={version}",
                request={"project": project},
                resolved={"project": project, "version": version, "targets": sorted(t.label() for t in targets),
                          "files": info},
                artifacts=arts,
            )  # fmt: skip

        results = await asyncio.gather(
            *(ctx.attempt(self.name, f"{p}=={v}", one(p, v, ts)) for (p, v), ts in sorted(wanted.items()))
        )
        return [r for r in results if r is not None]

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        """PEP 658: a ``.metadata`` file for every wheel the index gave none for, from the wheel."""
        out = []
        for item in items:
            arts = list(item.artifacts)
            files = {k: dict(v) for k, v in item.resolved.get("files", {}).items()}
            have = {a.path for a in arts if a.source != GENERATED or (a.digest and store.has(a.digest))}
            arts = [a for a in arts if a.path in have or a.source != GENERATED]
            for art in list(arts):
                meta_path = art.path + ".metadata"
                if not art.path.endswith(".whl") or meta_path in have or art.digest is None:
                    continue
                data = wheel_metadata(store.path(art.digest), art.path.rsplit("/", 1)[-1])
                digest = store.put_bytes(data)
                arts = [a for a in arts if a.path != meta_path]
                arts.append(
                    Artifact(path=meta_path, source=GENERATED, digest=digest, size=len(data), media_type="text/plain")
                )
                files.setdefault(art.path.rsplit("/", 1)[-1], {})["metadata"] = digest
            out.append(item.model_copy(update={"artifacts": arts, "resolved": {**item.resolved, "files": files}}))
        return out

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .simple import SimpleIndex

        return SimpleIndex(items, blobs).handle

"""The inventory: every item of a lock as a component (kind, name, version, source, digest, size,
license), with the packages inside it (the RPMs of a yum repo, the .debs of an apt repo, the files
of a Python project). Licenses are read from the content where it states one; NOASSERTION otherwise.

The per-kind rules below only read bytes and parse them (``inventory.rpm``, ``.deb``, ``.python``,
``.oci``, ``.tarball``): no kind package is imported, so an inventory works offline on any host.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TypeVar
from urllib.parse import quote

from ..lock import GENERATED, Artifact, Item, Lock
from .deb import read_deb
from .oci import image_facts
from .python import CoreMetadata, parse_metadata, sdist_metadata, wheel_metadata
from .rpm import read_rpm_header
from .source import Source
from .tarball import TarballMeta, chart_meta, galaxy_meta

T = TypeVar("T")


@dataclass
class Component:
    kind: str
    name: str
    version: str | None = None
    source: str | None = None
    digest: str | None = None
    size: int = 0
    license: str | None = None
    purl: str | None = None
    path: str | None = None  # logical path (a single artifact)
    packages: list[Component] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind, "name": self.name, "version": self.version, "source": self.source,
            "digest": self.digest, "size": self.size, "license": self.license or "NOASSERTION",
        }  # fmt: skip
        if self.purl:
            out["purl"] = self.purl
        if self.path:
            out["path"] = self.path
        if self.packages:
            out["packages"] = [p.to_json() for p in self.packages]
        return out


@dataclass
class Inventory:
    title: str
    lock_sha256: str
    components: list[Component]
    blobs: int
    bytes: int
    blobs_present: int
    differential: bool = False

    def summary(self) -> dict[str, dict[str, int]]:
        """Per kind: items, packages inside them, and bytes (each blob counted once per kind)."""
        out: dict[str, dict[str, int]] = {}
        for c in self.components:
            s = out.setdefault(c.kind, {"items": 0, "packages": 0, "bytes": 0})
            s["items"] += 1
            s["packages"] += len(c.packages)
            s["bytes"] += c.size
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, object]:
        return {
            "title": self.title, "lock_sha256": self.lock_sha256, "differential": self.differential,
            "items": [c.to_json() for c in self.components], "summary": self.summary(),
            "total": {"items": len(self.components), "blobs": self.blobs, "bytes": self.bytes,
                      "blobs_present": self.blobs_present},
        }  # fmt: skip


# ---- reading content -------------------------------------------------------------------------------


def _with(src: Source, digest: str | None, fn: Callable[[IO[bytes]], T | None]) -> T | None:
    if digest is None or not src.has(digest):
        return None
    try:
        with src.open(digest) as f:
            return fn(f)
    except (OSError, ValueError, EOFError):
        return None


def _item_size(item: Item) -> int:
    return sum({a.digest: a.size or 0 for a in item.artifacts}.values())


def _filename(art: Artifact) -> str:
    return art.path.rsplit("/", 1)[-1]


def _source(art: Artifact) -> str:
    return art.source


def rpm_package(art: Artifact, src: Source, kind: str) -> Component:
    hdr = _with(src, art.digest, read_rpm_header)
    name, version, arch, license_ = None, None, None, None
    if hdr is not None:
        name, version, arch, license_ = hdr.name, hdr.evr, hdr.arch, hdr.license
    if name is None:  # not in this archive (differential): from the file name, NAME-VERSION-RELEASE.ARCH.rpm
        m = re.match(r"^(.+)-([^-]+)-([^-]+)\.([^.]+)\.rpm$", _filename(art))
        if m:
            name, version, arch = m.group(1), f"{m.group(2)}-{m.group(3)}", m.group(4)
    name = name or _filename(art)
    purl = f"pkg:rpm/{quote(name)}@{quote(version or '')}" + (f"?arch={arch}" if arch else "") if version else None
    return Component(kind, name, version, _source(art), art.digest, art.size or 0, license_, purl, art.path)


def deb_package(art: Artifact, src: Source, kind: str) -> Component:
    info = _with(src, art.digest, read_deb)
    name, version, arch, license_ = None, None, None, None
    if info is not None:
        name, version, arch, license_ = info.name, info.version, info.arch, info.license
    if name is None:  # NAME_VERSION_ARCH.deb
        parts = _filename(art).removesuffix(".deb").split("_")
        if len(parts) == 3:
            name, version, arch = parts
    name = name or _filename(art)
    purl = f"pkg:deb/{quote(name)}@{quote(version or '')}" + (f"?arch={arch}" if arch else "") if version else None
    return Component(kind, name, version, _source(art), art.digest, art.size or 0, license_, purl, art.path)


def python_package(art: Artifact, src: Source, kind: str, sidecar: Artifact | None) -> Component:
    meta: CoreMetadata | None = None
    data = src.read(sidecar.digest) if sidecar is not None and sidecar.digest and src.has(sidecar.digest) else None
    if data is None:
        fname = _filename(art)
        data = _with(src, art.digest, wheel_metadata if fname.endswith(".whl") else lambda f: sdist_metadata(f, fname))
    if data is not None:
        meta = parse_metadata(data)
    name = (meta.name if meta else None) or _filename(art).split("-", 1)[0]
    version = meta.version if meta else None
    purl = f"pkg:pypi/{quote(name.lower())}@{quote(version)}?file_name={quote(_filename(art))}" if version else None
    lic = meta.license if meta else None
    return Component(kind, name, version, _source(art), art.digest, art.size or 0, lic, purl, art.path)


def _is_python_dist(art: Artifact) -> bool:
    return art.path.endswith((".whl", ".tar.gz", ".zip")) and art.path.startswith("pypi/")


def packages_of(item: Item, src: Source) -> list[Component]:
    """The packages among an item's artifacts, recognised by their file names."""
    by_path = {a.path: a for a in item.artifacts}
    out = []
    for art in item.artifacts:
        if art.path.endswith(".rpm"):
            out.append(rpm_package(art, src, item.kind))
        elif art.path.endswith(".deb"):
            out.append(deb_package(art, src, item.kind))
        elif _is_python_dist(art) or art.path.endswith(".whl"):
            out.append(python_package(art, src, item.kind, by_path.get(art.path + ".metadata")))
    return out


# ---- per kind ------------------------------------------------------------------------------------------


def _base(item: Item) -> Component:
    single = item.artifacts[0] if len(item.artifacts) == 1 else None
    version = item.resolved.get("version")
    return Component(
        kind=item.kind,
        name=item.name,
        version=str(version) if version is not None else None,
        source=single.source if single else None,
        digest=single.digest if single else None,
        size=_item_size(item),
        path=single.path if single else None,
    )


def file_component(item: Item, src: Source) -> Component:
    c = _base(item)
    c.name = item.name.removeprefix("files/")
    inner = packages_of(item, src)  # a downloaded .rpm / .deb / .whl says its own license
    if len(inner) == 1:
        c.version, c.license, c.purl = inner[0].version, inner[0].license, inner[0].purl
    return c


def image_component(item: Item, src: Source) -> Component:
    c = _base(item)
    r = item.resolved
    c.name = str(r.get("name", item.name))
    c.version = str(r["tag"]) if r.get("tag") else None
    c.digest = str(r.get("digest")) if r.get("digest") else None
    top = next((a for a in item.artifacts if a.digest == c.digest and "/manifests/" in a.path), None)
    c.source = top.source if top else None
    if c.digest is not None:
        stated_license, stated_version = image_facts(src.read(c.digest), src.read)
        c.license = stated_license
        c.version = c.version or stated_version
        repo = c.name.rsplit("/", 1)[-1]
        qual = f"?repository_url={quote(c.name, safe='/')}" + (f"&tag={quote(c.version)}" if c.version else "")
        c.purl = f"pkg:oci/{quote(repo)}@{quote(c.digest)}{qual}"
    return c


def python_component(item: Item, src: Source) -> Component:
    c = _base(item)
    c.name = str(item.resolved.get("project", item.name.split("==")[0]))
    c.version = str(item.resolved.get("version", "")) or None
    c.packages = packages_of(item, src)
    if len(c.packages) == 1:
        c.source, c.digest, c.path = c.packages[0].source, c.packages[0].digest, c.packages[0].path
    c.license = next((p.license for p in c.packages if p.license), None)
    if c.version:
        c.purl = f"pkg:pypi/{quote(c.name.lower())}@{quote(c.version)}"
    return c


def repo_component(item: Item, src: Source) -> Component:
    """A yum or apt repository: identified by its repomd.xml / InRelease; its packages inside."""
    c = _base(item)
    req = item.request
    c.source = str(req.get("baseurl") or req.get("url") or req.get("uri") or req.get("metalink") or "") or None
    ident = next(
        (a for a in item.artifacts if a.path.endswith(("/repodata/repomd.xml", "/InRelease", "/Release"))), None
    )
    c.digest = ident.digest if ident else c.digest
    c.packages = packages_of(item, src)
    return c


def _tarball(item: Item, src: Source, read: Callable[[IO[bytes]], TarballMeta | None]) -> Component:
    c = _base(item)
    main = next((a for a in item.artifacts if a.path.endswith((".tgz", ".tar.gz"))), None)
    if main is not None:
        c.source, c.digest, c.path = main.source, main.digest, main.path
        meta = _with(src, main.digest, read)
        if meta is not None:
            c.name, c.version, c.license = meta.name or c.name, meta.version or c.version, meta.license
    return c


def chart_component(item: Item, src: Source) -> Component:
    c = _tarball(item, src, chart_meta)
    c.name = str(item.resolved.get("name", c.name))
    c.version = str(item.resolved.get("version", c.version or "")) or None
    c.digest = str(item.resolved.get("digest", c.digest or "")) or None
    return c


def galaxy_component(item: Item, src: Source) -> Component:
    return _tarball(item, src, galaxy_meta)


def generic_component(item: Item, src: Source) -> Component:
    c = _base(item)
    for key in ("commit", "revision", "ref"):
        if c.version is None and item.resolved.get(key):
            c.version = str(item.resolved[key])
    if c.source is None:
        c.source = str(item.request.get("url") or item.request.get("repo") or "") or None
    c.packages = packages_of(item, src)
    return c


BY_KIND: dict[str, Callable[[Item, Source], Component]] = {
    "file": file_component,
    "image": image_component,
    "python": python_component,
    "rpm": repo_component,
    "apt": repo_component,
    "chart": chart_component,
    "galaxy": galaxy_component,
}


def collect(src: Source) -> Inventory:
    comps = [BY_KIND.get(item.kind, generic_component)(item, src) for item in src.lock.items]
    blobs = src.lock.blobs()
    for c in comps:  # a generated artifact has no download location
        if c.source == GENERATED:
            c.source = None
    return Inventory(
        title=src.title,
        lock_sha256=src.lock.sha256(),
        components=comps,
        blobs=len(blobs),
        bytes=sum(blobs.values()),
        blobs_present=sum(1 for d in blobs if d in src.present),
        differential=src.differential,
    )


def wanted_blobs(lock: Lock) -> set[str]:
    """The blobs the extractors read (from a compressed archive they are copied out of the stream):
    packages and their metadata files (a wheel only when no ``.metadata`` file is beside it), and
    image manifests and configs."""
    out: set[str] = set()
    for item in lock.items:
        paths = {a.path for a in item.artifacts}
        for a in item.artifacts:
            if a.digest is None or (a.path.endswith(".whl") and a.path + ".metadata" in paths):
                continue
            package = a.path.endswith((".rpm", ".deb", ".whl", ".metadata", ".tgz", ".tar.gz", ".zip"))
            image_doc = item.kind == "image" and "layer" not in a.media_type and (a.size or 0) <= 4 << 20
            if package or image_doc:
                out.add(a.digest)
    return out

"""Container images: resolve references against real registries, keep manifests byte-exact.

Manifest section::

    platforms: [linux/amd64, linux/arm64]        # default for every image ("all": every platform)
    images:
      - nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04
      - ubuntu:22.04                              # docker.io/library/ubuntu:22.04
      - ref: 127.0.0.1:5001/team/app:1@sha256:…
        platforms: [linux/amd64]
    registries:
      127.0.0.1:5001: {insecure: true}            # plain HTTP

Each image becomes artifacts under ``images/<name>/``: ``manifests/<digest>`` (the index or
manifest exactly as the registry sent it, and each selected child manifest) and
``blobs/<digest>`` (configs and layers). ``<name>`` keeps the registry host (``:`` written
``_``, DESIGN "Names"), so nvcr.io/nvidia/cuda and docker.io/nvidia/cuda never collide; a layer
shared by many images is one blob in the store and the archive.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator

from ..errors import GapcacheError
from .base import Artifact, Item, ResolveContext, ResolveFailure

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..serve import BlobIndex, Handler
    from ..store import Store

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
HOST_RE = re.compile(r"^(?:localhost|[A-Za-z0-9.-]+\.[A-Za-z0-9-]+|[A-Za-z0-9.-]+:\d+|\[[0-9a-fA-F:]+\](?::\d+)?)$")
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")


@dataclass(frozen=True)
class ImageRef:
    """A normalised reference: ``host`` as users write it, ``repo`` path, tag and/or digest."""

    host: str
    repo: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """Repository name in the mirror: upstream host first, ``:`` written ``_``."""
        return f"{host_component(self.host)}/{self.repo}"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    def __str__(self) -> str:
        out = f"{self.host}/{self.repo}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def host_component(host: str) -> str:
    return host.replace(":", "_")


def parse_ref(text: str) -> ImageRef:
    """Docker's normalisation: ``ubuntu`` → docker.io/library/ubuntu:latest."""
    ref = text.strip()
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ValueError(f"{text!r}: digest must be sha256:<64 hex>")
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        if not TAG_RE.match(tag):
            raise ValueError(f"{text!r}: invalid tag {tag!r}")
    first, sep, rest = ref.partition("/")
    if sep and (("." in first or ":" in first or first == "localhost") and HOST_RE.match(first)):
        host, repo = first, rest
    else:
        host, repo = DOCKER_HUB, ref
    if host in ("index.docker.io", DOCKER_HUB_API):
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    if not REPO_RE.match(repo) or len(repo) > 255:
        raise ValueError(f"{text!r}: invalid repository name {repo!r}")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(host, repo, tag, digest)


class ImageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str
    platforms: list[str] | None = None

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        parse_ref(v)
        return v

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str] | None) -> list[str] | None:
        return validate_platforms(v) if v is not None else None


class RegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    insecure: bool = False  # plain HTTP


def validate_platforms(v: list[str]) -> list[str]:
    for p in v:
        if p != "all" and not PLATFORM_RE.match(p):
            raise ValueError(f"platform {p!r}: expected os/arch[/variant] (e.g. linux/arm64) or all")
    return v


def coerce_images(v: Any) -> Any:
    if isinstance(v, list):
        return [{"ref": x} if isinstance(x, str) else x for x in v]
    return v


def platform_matches(wanted: list[str], platform: dict[str, Any] | None) -> bool:
    if "all" in wanted:
        return True
    if not platform:
        return False
    os_, arch, variant = platform.get("os"), platform.get("architecture"), platform.get("variant")
    for w in wanted:
        parts = w.split("/")
        if parts[0] == os_ and parts[1] == arch and (len(parts) < 3 or parts[2] == variant):
            return True
    return False


def _media_type(body: bytes, header: str | None) -> str:
    if header:
        mt = header.split(";", 1)[0].strip()
        if mt in INDEX_TYPES or mt in MANIFEST_TYPES:
            return mt
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise GapcacheError(f"registry answered a manifest that is not JSON ({exc})") from exc
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    if declared in INDEX_TYPES or declared in MANIFEST_TYPES:
        return str(declared)
    if isinstance(doc, dict) and "manifests" in doc:
        return OCI_INDEX
    if isinstance(doc, dict) and "layers" in doc:
        return OCI_MANIFEST
    raise GapcacheError(f"unsupported manifest media type {declared or header!r} (schema 1 is not supported)")


class ImageKind:
    name = "image"
    listener = "registry"

    async def resolve(self, manifest: Manifest, ctx: ResolveContext) -> list[Item]:
        default = manifest.platforms

        async def one(entry: ImageEntry) -> Item | None:
            ref = parse_ref(entry.ref)
            try:
                return await resolve_image(ref, entry.platforms or default, manifest, ctx)
            except (GapcacheError, OSError, ValueError, KeyError, TypeError) as exc:
                ctx.failures.append(ResolveFailure(self.name, str(ref), str(exc)))
                return None

        results = await asyncio.gather(*(one(e) for e in manifest.images))
        return [r for r in results if r is not None]

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        return items  # serves exactly what it fetched

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .image_serve import Registry

        registry = Registry(items, blobs)
        return registry.handle


def registry_base(ref: ImageRef, manifest: Manifest) -> str:
    cfg = manifest.registries.get(ref.host)
    scheme = "http" if cfg is not None and cfg.insecure else "https"
    return f"{scheme}://{ref.api_host}"


async def resolve_image(ref: ImageRef, platforms: list[str], manifest: Manifest, ctx: ResolveContext) -> Item:
    base = f"{registry_base(ref, manifest)}/v2/{ref.repo}"
    dl = ctx.downloader
    target = ref.digest or ref.tag
    assert target is not None
    body, headers = await dl.get(f"{base}/manifests/{target}", {"Accept": ACCEPT}, max_size=4 << 20)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if ref.digest and digest != ref.digest:
        raise GapcacheError(f"{ref}: registry sent a manifest with digest {digest}, expected {ref.digest}")
    top_type = _media_type(body, headers.get("Content-Type"))
    dl.store.put_bytes(body)
    arts: dict[str, Artifact] = {}

    def add(kind: str, d: str, size: int, media_type: str, source: str) -> None:
        path = f"images/{ref.name}/{kind}/{d}"
        arts[path] = Artifact(path=path, source=source, digest=d, size=size, media_type=media_type)

    add("manifests", digest, len(body), top_type, f"{base}/manifests/{digest}")
    chosen: list[str] = []
    manifests: list[tuple[bytes, str]] = []
    if top_type in INDEX_TYPES:
        index = json.loads(body)
        for desc in index.get("manifests", []):
            plat = desc.get("platform")
            if not platform_matches(platforms, plat):
                continue
            d = desc["digest"]
            child, child_headers = await dl.get(f"{base}/manifests/{d}", {"Accept": ACCEPT}, max_size=4 << 20)
            actual = "sha256:" + hashlib.sha256(child).hexdigest()
            if actual != d:
                raise GapcacheError(f"{ref}: child manifest {d} hashes to {actual}")
            child_type = _media_type(child, child_headers.get("Content-Type") or desc.get("mediaType"))
            dl.store.put_bytes(child)
            add("manifests", d, len(child), child_type, f"{base}/manifests/{d}")
            manifests.append((child, child_type))
            if plat:
                chosen.append("/".join(x for x in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if x))
        if not manifests:
            raise GapcacheError(f"{ref}: no manifest for platforms {', '.join(platforms)} in the index")
    else:
        manifests.append((body, top_type))
    for raw, _ in manifests:
        doc = json.loads(raw)
        for desc in [doc["config"], *doc.get("layers", [])]:
            d, size = desc["digest"], int(desc["size"])
            if not DIGEST_RE.match(d):
                raise GapcacheError(f"{ref}: unsupported blob digest {d!r}")
            add("blobs", d, size, desc.get("mediaType", "application/octet-stream"), f"{base}/blobs/{d}")
    resolved: dict[str, Any] = {"name": ref.name, "digest": digest, "media_type": top_type, "platforms": sorted(chosen)}
    if ref.tag:
        resolved["tag"] = ref.tag
    request: dict[str, Any] = {"ref": str(ref)}
    if platforms:
        request["platforms"] = platforms
    label = f"{ref.name}:{ref.tag}" if ref.tag else f"{ref.name}@{digest}"
    return Item(kind="image", name=label, request=request, resolved=resolved, artifacts=list(arts.values()))

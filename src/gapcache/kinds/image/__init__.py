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
from typing import Any

from ...blobs import BlobIndex, Handler
from ...errors import GapcacheError
from ...lock import Artifact, Item
from ...manifest.images import ImageEntry, ImagesSection
from ...names import DIGEST, ImageRef, parse_ref, platform_matches
from ...store import Store
from ..base import ResolveContext

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))


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

    async def resolve(self, section: ImagesSection, ctx: ResolveContext) -> list[Item]:
        default = section.platforms

        async def one(entry: ImageEntry) -> Item | None:
            ref = parse_ref(entry.ref)
            return await ctx.attempt(self.name, str(ref), resolve_image(ref, entry.platforms or default, section, ctx))

        async def found(ref: ImageRef, sources: list[str]) -> Item:
            item = await resolve_image(ref, default, section, ctx)
            return item.model_copy(update={"request": {**item.request, "discovered_from": sources}})

        discovered = discovered_refs(section, ctx)
        results = await asyncio.gather(
            *(one(e) for e in section.images),
            *(ctx.attempt(self.name, f"{r} (discovered in {', '.join(s)})", found(r, s)) for r, s in discovered),
        )
        return [r for r in results if r is not None]

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        return items  # serves exactly what it fetched

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .registry import Registry

        registry = Registry(items, blobs)
        return registry.handle


def discovered_refs(section: ImagesSection, ctx: ResolveContext) -> list[tuple[ImageRef, list[str]]]:
    """The images charts run (``ctx.discovered_images``) that the manifest does not list already,
    each once, with the charts it came from."""
    listed = {str(parse_ref(e.ref)) for e in section.images}
    out: dict[str, tuple[ImageRef, list[str]]] = {}
    for text, source in ctx.discovered_images:
        try:
            ref = parse_ref(text)
        except ValueError as exc:
            ctx.fail("image", text, f"discovered in {source}: {exc}")
            continue
        if str(ref) in listed:
            continue
        sources = out.setdefault(str(ref), (ref, []))[1]
        if source not in sources:
            sources.append(source)
    return [(ref, sorted(sources)) for ref, sources in (out[k] for k in sorted(out))]


IMAGE_CONFIGS = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")


async def _config_platform(manifest: bytes, base: str, ctx: ResolveContext) -> dict[str, Any] | None:
    """The platform of a single-platform image, from its config (None for other artifacts, e.g. a
    Helm chart, whose config says nothing about platforms)."""
    desc = json.loads(manifest).get("config") or {}
    if desc.get("mediaType") not in IMAGE_CONFIGS or not DIGEST.match(str(desc.get("digest"))):
        return None
    body = await ctx.downloader.get_bytes(f"{base}/blobs/{desc['digest']}", max_size=1 << 20)
    if "sha256:" + hashlib.sha256(body).hexdigest() != desc["digest"]:
        raise GapcacheError(f"config {desc['digest']} does not match its digest")
    ctx.keep(body)
    cfg = json.loads(body)
    return {k: cfg.get(k) for k in ("os", "architecture", "variant")} if isinstance(cfg, dict) else None


def registry_base(ref: ImageRef, section: ImagesSection) -> str:
    cfg = section.registries.get(ref.host)
    scheme = "http" if cfg is not None and cfg.insecure else "https"
    return f"{scheme}://{ref.api_host}"


async def resolve_image(ref: ImageRef, platforms: list[str], section: ImagesSection, ctx: ResolveContext) -> Item:
    base = f"{registry_base(ref, section)}/v2/{ref.repo}"
    dl = ctx.downloader
    target = ref.digest or ref.tag
    assert target is not None
    body, headers = await dl.get(f"{base}/manifests/{target}", {"Accept": ACCEPT}, max_size=4 << 20)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if ref.digest and digest != ref.digest:
        raise GapcacheError(f"{ref}: registry sent a manifest with digest {digest}, expected {ref.digest}")
    top_type = _media_type(body, headers.get("Content-Type"))
    ctx.keep(body)
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
            ctx.keep(child)
            add("manifests", d, len(child), child_type, f"{base}/manifests/{d}")
            manifests.append((child, child_type))
            if plat:
                chosen.append("/".join(x for x in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if x))
        if not manifests:
            raise GapcacheError(f"{ref}: no manifest for platforms {', '.join(platforms)} in the index")
        offered = [d.get("platform") for d in index.get("manifests", [])]
    else:
        manifests.append((body, top_type))
        offered = [await _config_platform(body, base, ctx)]
    for raw, _ in manifests:
        doc = json.loads(raw)
        for desc in [doc["config"], *doc.get("layers", [])]:
            d, size = desc["digest"], int(desc["size"])
            if not DIGEST.match(d):
                raise GapcacheError(f"{ref}: unsupported blob digest {d!r}")
            add("blobs", d, size, desc.get("mediaType", "application/octet-stream"), f"{base}/blobs/{d}")
    resolved: dict[str, Any] = {"name": ref.name, "digest": digest, "media_type": top_type, "platforms": sorted(chosen)}
    # a requested platform the image does not offer: said at build time, not at pull time on the node
    missing = [
        p for p in platforms if p != "all" and offered != [None] and not any(platform_matches([p], o) for o in offered)
    ]
    if missing:
        resolved["missing_platforms"] = missing
    if ref.tag:
        resolved["tag"] = ref.tag
    request: dict[str, Any] = {"ref": str(ref)}
    if platforms:
        request["platforms"] = platforms
    label = f"{ref.name}:{ref.tag}" if ref.tag else f"{ref.name}@{digest}"
    return Item(kind="image", name=label, request=request, resolved=resolved, artifacts=list(arts.values()))

"""Plain files (Kubespray's binaries, compose files, device-plugin YAML, …).

Manifest section ``files:``; each entry is one URL. Served on the ``files`` listener (8004) at
``/<host>/<path>`` — Kubespray's ``files_repo`` convention — with Range, ETag and directory
listings in the style of nginx's autoindex.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator

from ..errors import GapcacheError
from ..names import HEX64, default_file_path
from .base import Artifact, Item, ResolveContext, ResolveFailure

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..serve import BlobIndex, Handler
    from ..store import Store

PREFIX = "files/"


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    sha256: str | None = None
    path: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https", "file"):
            raise ValueError(f"scheme must be http, https or file, not {parts.scheme or 'none'!r}")
        if parts.scheme != "file" and not parts.hostname:
            raise ValueError("URL has no host")
        if not parts.path or parts.path.endswith("/"):
            raise ValueError("URL must name a file, not a directory")
        if re.search(r"\s", v):
            raise ValueError("URL contains whitespace")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.lower().removeprefix("sha256:")
        if not HEX64.match(v):
            raise ValueError("not 64 hex digits")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("/"):
            raise ValueError("must be relative (it is placed under the mirror's files tree)")
        return v

    def logical_path(self) -> str:
        return PREFIX + (self.path if self.path is not None else default_file_path(self.url))


FilesSection = list[FileEntry]


def guess_media_type(path: str) -> str:
    import mimetypes

    if path.endswith((".yaml", ".yml")):
        return "application/yaml"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


class FileKind:
    name = "file"
    listener = "files"

    async def resolve(self, manifest: Manifest, ctx: ResolveContext) -> list[Item]:
        async def one(entry: FileEntry) -> Item | None:
            lp = entry.logical_path()
            size = None
            if ctx.probe_sizes:
                try:
                    size = await ctx.downloader.head_size(entry.url)
                except (GapcacheError, OSError) as exc:
                    ctx.failures.append(ResolveFailure(self.name, lp, str(exc)))
                    return None
            request = entry.model_dump(exclude_none=True)
            art = Artifact(
                path=lp,
                source=entry.url,
                digest=f"sha256:{entry.sha256}" if entry.sha256 else None,
                size=size,
                media_type=guess_media_type(lp),
            )
            return Item(kind=self.name, name=lp, request=request, artifacts=[art])

        seen: set[str] = set()
        unique = []
        for e in manifest.files:
            if e.logical_path() not in seen:
                seen.add(e.logical_path())
                unique.append(e)
        results = await asyncio.gather(*(one(e) for e in unique))
        return [r for r in results if r is not None]

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        return items  # serves exactly what it fetched

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .file_serve import FilesTree

        return FilesTree(items, blobs).handle

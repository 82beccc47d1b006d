"""Plain files (Kubespray's binaries, compose files, device-plugin YAML, …).

Manifest section ``files:``; each entry is one URL. Served on the ``files`` listener (8004) at
``/<host>/<path>`` — Kubespray's ``files_repo`` convention — with Range, ETag and directory
listings in the style of nginx's autoindex.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ...lock import Artifact, Item
from ...manifest.files import FileEntry
from ...store import Store
from ..base import ResolveContext

if TYPE_CHECKING:  # serving code (aiohttp.web) is not loaded by a build
    from ...blobs import BlobIndex, Handler


def guess_media_type(path: str) -> str:
    import mimetypes

    if path.endswith((".yaml", ".yml")):
        return "application/yaml"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


class FileKind:
    name = "file"
    listener = "files"

    async def resolve(self, section: list[FileEntry], ctx: ResolveContext) -> list[Item]:
        async def one(entry: FileEntry) -> Item | None:
            lp = entry.logical_path()
            size = None
            if ctx.probe_sizes:
                size = await ctx.attempt(self.name, lp, ctx.downloader.head_size(entry.url))
                if size is None and any(f.item == f"{self.name} {lp}" for f in ctx.failures):
                    return None
            return self._item(entry, size)

        seen: set[str] = set()
        unique = []
        for e in section:
            lp = e.logical_path()
            if lp not in seen:
                seen.add(lp)
                unique.append(e)
        del seen
        if not ctx.probe_sizes:  # nothing to wait for: no task per entry (100,000 of them)
            return [r for r in [self._item(e, None) for e in unique] if r is not None]
        sem = asyncio.Semaphore(64)  # HEAD probes: bounded, not 100,000 tasks waiting at once

        async def bounded(entry: FileEntry) -> Item | None:
            async with sem:
                return await one(entry)

        results = await asyncio.gather(*(bounded(e) for e in unique))
        return [r for r in results if r is not None]

    def _item(self, entry: FileEntry, size: int | None) -> Item:
        lp = entry.logical_path()
        art = Artifact(
            path=lp,
            source=entry.url,
            digest=f"sha256:{entry.sha256}" if entry.sha256 else None,
            size=size,
            media_type=guess_media_type(lp),
        )
        return Item(kind=self.name, name=lp, request=entry.model_dump(exclude_none=True), artifacts=[art])

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        return items  # serves exactly what it fetched

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from ...filetree import FilesTree

        return FilesTree(items, blobs).handle

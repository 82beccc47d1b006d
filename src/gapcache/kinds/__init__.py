"""Content types, one package each. Each knows how to resolve its manifest section into artifacts,
publish what it generates, and serve its protocol from the lock; everything else (download, store,
pack, load) is shared. Adding a kind: its package under ``kinds/`` and one line in ``KINDS``.

A kind's package is imported only when it has work: a build whose manifest has only files never
loads the apt, rpm, chart or Python machinery (their imports cost more than resolving 1,000 files
from a warm store); ``serve`` loads those of the listeners it opens.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..lock import Item
from ..store import Store
from .base import Kind, ResolveContext

if TYPE_CHECKING:  # serving code (aiohttp.web) is not loaded by a build
    from ..blobs import BlobIndex, Handler


def _given(section: Any, ctx: ResolveContext) -> bool:
    return bool(section)


class LazyKind:
    """A kind by name and listener; its package is imported on first real use."""

    def __init__(
        self, name: str, listener: str, module: str, cls: str, wanted: Callable[[Any, ResolveContext], bool] = _given
    ) -> None:
        self.name, self.listener = name, listener
        self._where, self._wanted = (module, cls), wanted
        self._kind: Kind | None = None

    @property
    def kind(self) -> Kind:
        if self._kind is None:
            module, cls = self._where
            self._kind = getattr(importlib.import_module(f".{module}", __name__), cls)()
        return self._kind

    async def resolve(self, section: Any, ctx: ResolveContext) -> list[Item]:
        """Nothing to resolve (an empty section) imports nothing."""
        return await self.kind.resolve(section, ctx) if self._wanted(section, ctx) else []

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        return self.kind.publish(items, store) if items else items

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        return self.kind.handler(items, blobs, public_url)


# the chart kind before the image kind: it adds the images charts run (ResolveContext.discovered_images);
# bootstrap (gapcache itself, from build options rather than a manifest section) last: its files handler
# comes after the file kind's on the files listener
KINDS: dict[str, LazyKind] = {
    k.name: k
    for k in (
        LazyKind("file", "files", "file", "FileKind"),
        LazyKind("chart", "charts", "chart", "ChartKind", lambda s, ctx: bool(s.charts)),
        LazyKind("image", "registry", "image", "ImageKind", lambda s, ctx: bool(s.images or ctx.discovered_images)),
        LazyKind("python", "pypi", "python", "PythonKind"),
        LazyKind("rpm", "repos", "rpm", "RpmKind"),
        LazyKind("apt", "repos", "apt", "AptKind"),
        LazyKind("git", "files", "git", "GitKind"),
        LazyKind("galaxy", "files", "galaxy", "GalaxyKind"),
        LazyKind("bootstrap", "files", "bootstrap", "BootstrapKind"),
    )
}

__all__ = ["KINDS", "Kind", "LazyKind", "ResolveContext"]

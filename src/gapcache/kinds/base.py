"""The contract every content type implements (DESIGN: "The kind contract").

A kind gets its own manifest section (``Manifest.section(kind.name)``, never the whole manifest)
and a :class:`ResolveContext`, and returns :class:`~gapcache.lock.Item` records whose artifacts
say what to fetch and where it is served. Resolving writes nothing into the store: metadata a kind
fetched and wants to keep (an image manifest, a filtered primary.xml) goes through
:meth:`ResolveContext.keep`, and the build puts it into the store only when it really builds
(``build --plan`` leaves the store untouched). Downloading, verifying, storing, packing and
loading are shared machinery; a kind also answers the HTTP requests of its protocol on its
listener (a :data:`~gapcache.blobs.Handler`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import EnvironmentProblem, Failure, GapcacheError, describe
from ..fetch import Downloader
from ..lock import Item
from ..store import Store

if TYPE_CHECKING:  # serving code (aiohttp.web) is not loaded by a build
    from ..blobs import BlobIndex, Handler

T = TypeVar("T")


@dataclass
class ResolveContext:
    """What a kind may use while resolving: the shared downloader (metadata only) and scratch."""

    downloader: Downloader
    scratch: Path
    probe_sizes: bool = False
    failures: list[Failure] = field(default_factory=list)
    kept: dict[str, bytes] = field(default_factory=dict)
    # (image reference, what it came from): images a chart runs (``images: discover``), added by the
    # chart kind (which resolves first, exclusions applied) for the image kind to resolve too
    discovered_images: list[tuple[str, str]] = field(default_factory=list)

    def keep(self, data: bytes) -> str:
        """Remember fetched or derived metadata by digest; a real build stores it (a plan does not)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.kept[digest] = data
        return digest

    def fail(self, kind: str, name: str, reason: str) -> None:
        self.failures.append(Failure.of(kind, name, reason))

    async def attempt(self, kind: str, name: str, work: Awaitable[T]) -> T | None:
        """The one place an item's failure is caught: whatever goes wrong resolving one entry (a
        404, a malformed index, an unsafe path, a parser error) becomes a failure naming it, never a
        traceback; the other entries go on. Only environment problems (a missing tool, a full
        disk: exit 3) stop the build."""
        try:
            return await work
        except EnvironmentProblem:
            raise
        except Exception as exc:
            self.fail(kind, name, describe(exc))
            return None


class Kind(Protocol):
    name: str
    listener: str

    async def resolve(self, section: Any, ctx: ResolveContext) -> list[Item]:
        """Items for this kind's manifest section; an entry that cannot be resolved is a failure in
        ``ctx``, not an exception."""
        ...

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        """After fetch: generate the bytes this kind serves beyond what it fetched (stored as blobs
        with ``source: generated``) and return the items with those artifacts added."""
        ...

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        """A request handler for this kind's part of its listener: a response, or None if the
        path is not this kind's (the server then answers 404 and records a miss)."""
        ...


def publish_each(items: list[Item], make: Callable[[Item], Item], what: str) -> list[Item]:
    """Run a kind's generator over its items; a file-system error names the item."""
    out = []
    for item in items:
        try:
            out.append(make(item))
        except OSError as exc:
            raise GapcacheError(f"{item.name}: cannot generate {what}: {exc}") from exc
    return out

"""The contract every content type implements (DESIGN: "The kind contract").

A kind turns its manifest section into :class:`Item` records whose :class:`Artifact` entries say
what to fetch (source URL, digest and size when known) and where it lives in the mirror (logical
path). Downloading, verifying, storing, packing and loading are shared machinery; a kind also
answers the HTTP requests of its protocol on its listener (see ``serve.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from ..names import DIGEST, logical_path_error

if TYPE_CHECKING:
    from ..fetch import Downloader
    from ..manifest import Manifest
    from ..serve import BlobIndex, Handler
    from ..store import Store


GENERATED = "generated"  # the source of bytes gapcache produces on the connected side


class Artifact(BaseModel):
    """One blob an item needs: where it comes from (a URL, or ``generated``) and where it is served."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    source: str
    digest: str | None = None
    size: int | None = None
    media_type: str = "application/octet-stream"

    @field_validator("path")
    @classmethod
    def _path_ok(cls, v: str) -> str:
        bad = logical_path_error(v)
        if bad:
            raise ValueError(bad)
        return v

    @field_validator("digest")
    @classmethod
    def _digest_ok(cls, v: str | None) -> str | None:
        if v is not None and not DIGEST.match(v):
            raise ValueError(f"not a sha256 digest: {v!r}")
        return v

    @field_validator("size")
    @classmethod
    def _size_ok(cls, v: int | None) -> int | None:
        if v is not None and v < 0:
            raise ValueError("negative size")
        return v


class Item(BaseModel):
    """One manifest entry, resolved: what was asked, what it became, and its artifacts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    name: str
    request: dict[str, Any]
    resolved: dict[str, Any] = {}
    artifacts: list[Artifact]


@dataclass(frozen=True)
class ResolveFailure:
    kind: str
    name: str
    reason: str


@dataclass
class ResolveContext:
    """What a kind may use while resolving: the shared downloader (metadata only) and scratch."""

    downloader: Downloader
    scratch: Path
    probe_sizes: bool = False
    failures: list[ResolveFailure] = field(default_factory=list)


class Kind(Protocol):
    name: str
    listener: str

    async def resolve(self, manifest: Manifest, ctx: ResolveContext) -> list[Item]: ...

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        """After fetch: generate the bytes this kind serves beyond what it fetched (stored as blobs
        with ``source: generated``) and return the items with those artifacts added."""
        ...

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        """A request handler for this kind's part of its listener: a response, or None if the
        path is not this kind's (the server then answers 404 and records a miss)."""
        ...

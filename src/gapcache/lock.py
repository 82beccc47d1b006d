"""The lock: the manifest resolved, every artifact pinned to a digest and size.

An :class:`Item` is one manifest entry resolved; its :class:`Artifact` entries say what to fetch
(source URL, digest and size when known) and where it lives in the mirror (logical path).

JSON, sorted keys, items sorted, no timestamps: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from .errors import FormatError, GapcacheError
from .names import DIGEST, logical_path_error

LOCK_FORMAT = 1
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


class Lock(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = LOCK_FORMAT
    items: list[Item]

    @model_validator(mode="after")
    def _pinned(self) -> Lock:
        paths: dict[str, str] = {}
        for item in self.items:
            for art in item.artifacts:
                if art.digest is None or art.size is None:
                    raise ValueError(f"{item.kind} {item.name}: artifact {art.path} has no digest or size")
                other = paths.setdefault(art.path, art.digest)
                if other != art.digest:
                    raise ValueError(f"path {art.path} is claimed by two different blobs")
        return self

    @classmethod
    def build(cls, items: list[Item]) -> Lock:
        ordered = sorted(items, key=lambda i: (i.kind, i.name))
        ordered = [i.model_copy(update={"artifacts": sorted(i.artifacts, key=lambda a: a.path)}) for i in ordered]
        return cls(items=ordered)

    def artifacts(self) -> list[Artifact]:
        return [a for i in self.items for a in i.artifacts]

    def blobs(self) -> dict[str, int]:
        """Every distinct digest with its size, sorted by digest."""
        out: dict[str, int] = {}
        for a in self.artifacts():
            assert a.digest is not None and a.size is not None
            out[a.digest] = a.size
        return dict(sorted(out.items()))

    def total_size(self) -> int:
        return sum(self.blobs().values())

    def to_bytes(self) -> bytes:
        data = self.model_dump(mode="json")
        return (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def parse_lock(data: bytes, source: str) -> Lock:
    try:
        raw: Any = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise GapcacheError(f"{source}: not a gapcache lock (invalid JSON: {exc})") from exc
    if not isinstance(raw, dict):
        raise GapcacheError(f"{source}: not a gapcache lock")
    fmt = raw.get("format")
    if isinstance(fmt, int) and fmt > LOCK_FORMAT:
        raise FormatError(f"{source}: lock format {fmt} is newer than this gapcache reads ({LOCK_FORMAT})")
    try:
        return Lock.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GapcacheError(f"{source}: invalid lock: {where}: {first['msg']}") from exc


def read_lock(path: Path) -> Lock:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GapcacheError(f"{path}: cannot read lock: {exc.strerror}") from exc
    return parse_lock(data, str(path))

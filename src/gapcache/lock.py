"""The lock: the manifest resolved, every artifact pinned to a digest and size.

An :class:`Item` is one manifest entry resolved; its :class:`Artifact` entries say what to fetch
(source URL, digest and size when known) and where it lives in the mirror (logical path).

JSON, sorted keys, items sorted, no timestamps: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import weakref
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator, model_validator

from .errors import FormatError, GapcacheError
from .names import DIGEST, logical_path_error

LOCK_FORMAT = 1
GENERATED = "generated"  # the source of bytes gapcache produces on the connected side

# A full OS mirror's lock holds 100,000 items: what each model costs is multiplied by that. Every
# pydantic model carries its own set of the field names it was given (~700 bytes each, more than
# the model itself): models with the same names share one set (pydantic copies it before any
# change: model_copy), and media types and kinds are interned.
_FIELDS_SETS: dict[type, list[set[str]]] = {}
# a logical path every check of names.logical_path_error passes (the common case, checked fast)
_PLAIN_PATH = re.compile(r"(?:(?!\.\.?/)[\w.+~@%=,:-]+/)*(?!\.\.?\Z)[\w.+~@%=,:-]+", re.ASCII)


def _share_fields_set(model: BaseModel) -> None:
    fields = model.__pydantic_fields_set__
    shared = _FIELDS_SETS.setdefault(type(model), [])
    for candidate in shared:
        if candidate == fields:
            object.__setattr__(model, "__pydantic_fields_set__", candidate)
            return
    if len(shared) < 16:
        shared.append(fields)


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
        if len(v) <= 4096 and _PLAIN_PATH.fullmatch(v):
            return v
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

    @model_validator(mode="after")
    def _compact(self) -> Artifact:
        _share_fields_set(self)
        self.__dict__["media_type"] = sys.intern(self.media_type)
        return self


class Item(BaseModel):
    """One manifest entry, resolved: what was asked, what it became, and its artifacts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    name: str
    request: dict[str, Any]
    resolved: dict[str, Any] = {}
    artifacts: list[Artifact]

    @model_validator(mode="after")
    def _compact(self) -> Item:
        _share_fields_set(self)
        d = self.__dict__
        d["kind"] = sys.intern(self.kind)
        url = self.request.get("url")
        for art in self.artifacts:  # one string where the name is the path and the URL the source
            if art.path == self.name:
                art.__dict__["path"] = self.name
            if art.source == url:
                art.__dict__["source"] = url
        return self


class Lock(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = LOCK_FORMAT
    items: list[Item]

    @field_validator("format")
    @classmethod
    def _format_ok(cls, v: int) -> int:
        if v > LOCK_FORMAT:  # parse_lock says so with a FormatError
            raise ValueError(f"lock format {v} is newer than this gapcache reads ({LOCK_FORMAT})")
        return v

    @model_validator(mode="after")
    def _pinned(self) -> Lock:
        return self.check_pinned()

    def check_pinned(self) -> Lock:
        """Every artifact has a digest and a size, and no path is claimed by two blobs."""
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
        """``json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=1)`` + newline, one item
        at a time: the bytes are the same, without a second copy of the whole lock as dicts."""
        if not self.items:
            return (
                json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
            ).encode()
        parts = [f'{{\n "format": {json.dumps(self.format)},\n "items": [\n  '.encode()]
        for n, item in enumerate(self.items):
            text = json.dumps(item.model_dump(mode="json"), sort_keys=True, indent=1, ensure_ascii=False)
            if n:
                parts.append(b",\n  ")
            parts.append(text.replace("\n", "\n  ").encode())  # JSON strings never hold a raw newline
        parts.append(b"\n ]\n}\n")
        return b"".join(parts)

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


_PARSED: weakref.WeakValueDictionary[tuple[int, str], Lock] = weakref.WeakValueDictionary()
_LAST: list[Lock | None] = [None]  # the last one parsed stays (``load`` reads the head, drops it, loads)


def parse_lock(data: bytes, source: str) -> Lock:
    """The lock in ``data`` (checked: schema, digests, one blob per path).

    The same bytes parsed again while their :class:`Lock` is alive (or were the last parsed) give
    that same (immutable) object: a load reads the lock from each part, and ``serve`` from its
    check and from each worker.
    """
    key = (len(data), hashlib.sha256(data).hexdigest())
    cached = _PARSED.get(key)
    if cached is not None:
        return cached
    try:  # straight from the bytes (no intermediate dicts): most locks are valid
        lock = _parse_batches(data)
        if lock is None:
            lock = Lock.model_validate_json(data)
    except ValidationError:
        lock = _parse_explained(data, source)
    _PARSED[key] = _LAST[0] = lock
    return lock


_HEAD = b'{\n "format": 1,\n "items": [\n  {\n'
_TAIL = b"\n  }\n ]\n}\n"
_SEP = b"\n  },\n  {\n"  # between two items, in the layout to_bytes writes (a JSON string holds no newline)
_BATCH = 2000
_ITEMS: TypeAdapter[list[Item]] | None = None


def _parse_batches(data: bytes) -> Lock | None:
    """A lock in the layout :meth:`Lock.to_bytes` writes, validated ``_BATCH`` items at a time (None
    for any other layout). Validating the whole document at once first builds a tree of all of it
    (100,000 items: ~130 MB more at the peak, kept by the allocator afterwards)."""
    global _ITEMS
    if not (data.startswith(_HEAD) and data.endswith(_TAIL)):
        return None
    if _ITEMS is None:
        _ITEMS = TypeAdapter(list[Item])
    items: list[Item] = []
    start, end = len(_HEAD) - 4, len(data) - len(_TAIL) + 4  # from the first item's "{" to the last one's "}"
    while start < end:
        cut = start
        for _ in range(_BATCH):
            cut = data.find(_SEP, cut + 1, end)
            if cut < 0:
                break
        stop = end if cut < 0 else cut + 4  # just after the batch's last "}"
        items += _ITEMS.validate_json(b"[" + data[start:stop] + b"]")
        start = end if cut < 0 else stop + 2  # the next item's "{"
    lock = Lock.model_construct(format=LOCK_FORMAT, items=items)  # the items are validated already
    lock.check_pinned()
    return lock


def _parse_explained(data: bytes, source: str) -> Lock:
    """Parse ``data`` the slow way, to say what is wrong with it."""
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

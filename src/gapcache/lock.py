"""The lock: the manifest resolved, every artifact pinned to a digest and size.

An :class:`Item` is one manifest entry resolved; its :class:`Artifact` entries say what to fetch
(source URL, digest and size when known) and where it lives in the mirror (logical path).

JSON, sorted keys, items sorted, no timestamps: the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import re
import sys
import weakref
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a lock's models are made: they hold no cycles (they are
    freed by their reference counts), yet the collector's passes over a heap growing by 100,000
    models took ~0.5 s of a 1.7 s parse. The previous state is restored."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def share_fields_set(model: BaseModel) -> None:
    """Let ``model`` use a set of field names equal to its own that another model of its type already has."""
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
        share_fields_set(self)
        self.__dict__["media_type"] = sys.intern(self.media_type)
        return self


_NOTHING_RESOLVED: dict[str, Any] = {}  # never changed: items are frozen, their dicts only read


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
        share_fields_set(self)
        d = self.__dict__
        d["kind"] = sys.intern(self.kind)
        if not self.resolved:
            d["resolved"] = _NOTHING_RESOLVED  # one empty dict for every item that has nothing resolved
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
        for n, item in enumerate(ordered):  # a copy only of an item whose artifacts are not in order
            arts = item.artifacts
            if any(arts[k].path > arts[k + 1].path for k in range(len(arts) - 1)):
                ordered[n] = item.model_copy(update={"artifacts": sorted(arts, key=lambda a: a.path)})
                share_fields_set(ordered[n])
        return cls(items=ordered)

    def artifacts(self) -> list[Artifact]:
        return [a for i in self.items for a in i.artifacts]

    def blobs(self) -> dict[str, int]:
        """Every distinct digest with its size, sorted by digest."""
        out: dict[str, int] = {}
        for item in self.items:  # no list of every artifact, no list of (digest, size) pairs to sort
            for a in item.artifacts:
                assert a.digest is not None and a.size is not None
                out[a.digest] = a.size
        return {d: out[d] for d in sorted(out)}

    def total_size(self) -> int:
        return sum(self.blobs().values())

    def to_bytes(self) -> bytes:
        """``json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=1)`` + newline, one item
        at a time: the bytes are the same, without a second copy of the whole lock as dicts."""
        if not self.items:
            return (
                json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
            ).encode()
        # BytesIO grows one buffer in place and getvalue() hands it over without a copy: one lock's
        # worth of memory at the peak (a list of parts joined would hold it twice: 2 x 57 MB at 100,000).
        out = io.BytesIO()
        out.write(f'{{\n "format": {json.dumps(self.format)},\n "items": [\n  '.encode())
        for n, item in enumerate(self.items):
            text = json.dumps(item.model_dump(mode="json"), sort_keys=True, indent=1, ensure_ascii=False)
            if n:
                out.write(b",\n  ")
            out.write(text.replace("\n", "\n  ").encode())  # JSON strings never hold a raw newline
        out.write(b"\n ]\n}\n")
        return out.getvalue()

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


_PARSED: weakref.WeakValueDictionary[tuple[int, str], Lock] = weakref.WeakValueDictionary()
_LAST: list[Lock | None] = [None]  # the last one parsed stays (``load`` reads the head, drops it, loads)


class LockScan:
    """One pass over a lock's bytes with bounded memory: its items validated ``_BATCH`` at a time and
    let go, keeping only what is asked — every blob's size (always), the items' ``kind\0name`` keys
    (``keys``), the artifacts whose path ``select`` accepts (``selected``: path → (digest, size)).

    The checks are :func:`parse_lock`'s (schema, digests, every artifact pinned, one blob per path;
    a bad lock raises :class:`~gapcache.errors.GapcacheError` naming what is wrong), so a command that
    needs only these facts (``load``, ``verify``, ``ls``) never holds 100,000 models at once.
    :meth:`items` yields each item as soon as its batch is valid (the whole-lock checks end when the
    last one is given); :meth:`run` consumes them.
    """

    def __init__(self, data: bytes, source: str, *, keys: bool = False, select: Callable[[str], bool] | None = None):
        self.data, self.source = data, source
        self.want_keys, self.select = keys, select
        self.blobs: dict[str, int] = {}
        self.keys: set[str] = set()
        self.selected: dict[str, tuple[str, int]] = {}
        self.count = 0
        self._paths: dict[str, str] = {}
        self.done = False

    def run(self) -> LockScan:
        if not self.done:
            for _ in self.items():
                pass
        return self

    def total_size(self) -> int:
        return sum(self.blobs.values())

    def _batches(self) -> Iterator[list[Item]]:
        cached = _PARSED.get((len(self.data), hashlib.sha256(self.data).hexdigest()))
        if cached is not None:
            yield cached.items
            return
        if not _layout_ok(self.data):
            yield _parse_whole(self.data, self.source).items
            return
        adapter, given = _adapter(), 0
        try:
            for chunk in _chunks(self.data):
                batch = adapter.validate_json(chunk)
                given += len(batch)
                yield batch
        except ValidationError:
            yield _parse_explained(self.data, self.source).items[given:]

    def items(self) -> Iterator[Item]:
        blobs, paths, sel = self.blobs, self._paths, self.select
        for batch in self._batches():
            for item in batch:
                self.count += 1
                if self.want_keys:
                    self.keys.add(f"{item.kind}\0{item.name}")
                for art in item.artifacts:
                    if art.digest is None or art.size is None:
                        raise GapcacheError(
                            f"{self.source}: invalid lock: {item.kind} {item.name}: artifact {art.path} has no "
                            "digest or size"
                        )
                    digest = art.digest
                    blobs[digest] = art.size
                    if paths.setdefault(art.path, digest) != digest:
                        raise GapcacheError(
                            f"{self.source}: invalid lock: path {art.path} is claimed by two different blobs"
                        )
                    if sel is not None and sel(art.path):
                        self.selected[art.path] = (digest, art.size)
                yield item
        self._paths = {}
        self.blobs = dict(sorted(blobs.items()))
        self.done = True


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
    with gc_paused():
        lock = _parse_whole(data, source)
    _PARSED[key] = _LAST[0] = lock
    return lock


def _parse_whole(data: bytes, source: str) -> Lock:
    try:  # straight from the bytes (no intermediate dicts): most locks are valid
        lock = _parse_batches(data)
        if lock is None:
            lock = Lock.model_validate_json(data)
    except ValidationError:
        lock = _parse_explained(data, source)
    except ValueError as exc:  # check_pinned of a lock validated in batches
        raise GapcacheError(f"{source}: invalid lock: {exc}") from exc
    return lock


_HEAD = b'{\n "format": 1,\n "items": [\n  {\n'
_TAIL = b"\n  }\n ]\n}\n"
_SEP = b"\n  },\n  {\n"  # between two items, in the layout to_bytes writes (a JSON string holds no newline)
_BATCH = 2000
_ITEMS: TypeAdapter[list[Item]] | None = None


def _adapter() -> TypeAdapter[list[Item]]:
    global _ITEMS
    if _ITEMS is None:
        _ITEMS = TypeAdapter(list[Item])
    return _ITEMS


def _layout_ok(data: bytes) -> bool:
    return data.startswith(_HEAD) and data.endswith(_TAIL)


def _chunks(data: bytes) -> Iterator[bytes]:
    """The items of a lock in :meth:`Lock.to_bytes`'s layout as JSON arrays of ``_BATCH`` items."""
    start, end = len(_HEAD) - 4, len(data) - len(_TAIL) + 4  # from the first item's "{" to the last one's "}"
    while start < end:
        cut = start
        for _ in range(_BATCH):
            cut = data.find(_SEP, cut + 1, end)
            if cut < 0:
                break
        stop = end if cut < 0 else cut + 4  # just after the batch's last "}"
        yield b"[" + data[start:stop] + b"]"
        start = end if cut < 0 else stop + 2  # the next item's "{"


def _parse_batches(data: bytes) -> Lock | None:
    """A lock in the layout :meth:`Lock.to_bytes` writes, validated ``_BATCH`` items at a time (None
    for any other layout). Validating the whole document at once first builds a tree of all of it
    (100,000 items: ~130 MB more at the peak, kept by the allocator afterwards)."""
    if not _layout_ok(data):
        return None
    adapter = _adapter()
    items: list[Item] = []
    for chunk in _chunks(data):
        items += adapter.validate_json(chunk)
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
    return parse_lock(read_lock_bytes(path), str(path))


def read_lock_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GapcacheError(f"{path}: cannot read lock: {exc.strerror}") from exc


def scan_lock_file(path: Path, *, keys: bool = False) -> LockScan:
    """A lock file checked in one bounded pass (:class:`LockScan`, run)."""
    return LockScan(read_lock_bytes(path), str(path), keys=keys).run()

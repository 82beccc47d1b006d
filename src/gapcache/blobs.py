"""Serving primitives every kind uses: where a blob lives, verified reads, Range, sending a blob,
and the miss log.

A blob is located as ``(file, offset, length)`` — a store blob is ``(path, 0, size)``, an archive
member is ``(part, data offset, size)`` — so serving from an archive needs no second code path.
Every blob is hashed against its digest before its first byte is served by a process; small blobs
are then answered from memory, large ones go out with ``sendfile`` (zero copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from .archive import ArchiveReader
from .errors import GapcacheError, UsageError
from .lock import Lock
from .root import Root
from .store import hash_chunks, read_range

log = logging.getLogger("gapcache.serve")

SMALL = 256 * 1024  # blobs up to this size are kept in memory once verified
SMALL_CACHE_BYTES = 256 << 20


@dataclass(frozen=True)
class BlobLoc:
    digest: str
    path: Path
    offset: int
    size: int


class BlobIndex:
    """Where every blob of the lock lives, and a verify-once / small-blob cache per process."""

    def __init__(self, locs: dict[str, BlobLoc], last_modified: float) -> None:
        self.locs = locs
        self.last_modified = formatdate(last_modified, usegmt=True)
        self._verified: dict[str, asyncio.Future[bytes | None]] = {}
        self._small: OrderedDict[str, bytes] = OrderedDict()
        self._small_bytes = 0
        self._headers: dict[tuple[str, str, bool], dict[str, str]] = {}

    @classmethod
    def from_root(cls, root: Root, lock: Lock) -> BlobIndex:
        locs = {d: BlobLoc(d, root.store.path(d), 0, s) for d, s in lock.blobs().items()}
        mtime = (root.locks / root.current_name()).stat().st_mtime
        return cls(locs, mtime)

    @classmethod
    def from_archive(cls, parts: list[Path]) -> tuple[BlobIndex, Lock]:
        """Index an uncompressed archive in place (headers only; content is verified on serve)."""
        locs: dict[str, BlobLoc] = {}
        lock: Lock | None = None
        for part in parts:
            with ArchiveReader(part) as r:
                if r.compressed:
                    raise UsageError(f"{part}: a compressed archive cannot be served in place; load it")
                lock = lock or r.head.lock
                for blob in r.blobs():
                    assert blob.offset is not None
                    locs[blob.digest] = BlobLoc(blob.digest, part.resolve(), blob.offset, blob.size)
        assert lock is not None
        missing = [d for d in lock.blobs() if d not in locs]
        if missing:
            raise GapcacheError(f"{parts[0]}: {len(missing)} blob(s) of the lock are not in the archive")
        return cls(locs, parts[0].stat().st_mtime), lock

    def get(self, digest: str | None) -> BlobLoc | None:
        return self.locs.get(digest) if digest else None

    async def open(self, loc: BlobLoc) -> bytes | None:
        """Verify ``loc`` (once per process). Returns its bytes if small, else None.

        Raises :class:`GapcacheError` if the bytes at rest do not match the digest.
        """
        cached = self._small.get(loc.digest)
        if cached is not None:
            self._small.move_to_end(loc.digest)
            return cached
        fut = self._verified.get(loc.digest)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._verified[loc.digest] = fut
            try:
                data = await asyncio.to_thread(_read_verified, loc)
            except BaseException as exc:
                del self._verified[loc.digest]
                fut.set_exception(exc)
                fut.exception()
                raise
            fut.set_result(None)
            if data is not None:
                self._remember(loc.digest, data)
            return data
        await fut
        return self._small.get(loc.digest) if loc.size <= SMALL else None

    def cached(self, digest: str) -> bytes | None:
        return self._small.get(digest)

    def headers(self, loc: BlobLoc, content_type: str, registry: bool = False) -> dict[str, str]:
        """The fixed response headers of a blob (built once)."""
        key = (loc.digest, content_type, registry)
        hdrs = self._headers.get(key)
        if hdrs is None:
            hdrs = self._headers[key] = {
                "ETag": f'"{loc.digest}"',
                "Last-Modified": self.last_modified,
                "Accept-Ranges": "bytes",
                "Content-Type": content_type,
                "Cache-Control": "public, max-age=31536000, immutable",
            }
            if registry:
                hdrs["Docker-Content-Digest"] = loc.digest
                hdrs["Docker-Distribution-API-Version"] = "registry/2.0"
        return hdrs

    def _remember(self, digest: str, data: bytes) -> None:
        self._small[digest] = data
        self._small_bytes += len(data)
        while self._small_bytes > SMALL_CACHE_BYTES and self._small:
            _, old = self._small.popitem(last=False)
            self._small_bytes -= len(old)
            # evicted small blobs are re-read (and re-verified) next time
            self._verified.pop(_, None)


def _read_verified(loc: BlobLoc) -> bytes | None:
    keep = loc.size <= SMALL
    parts: list[bytes] = []
    actual = hash_chunks(
        read_range(loc.path, loc.offset, loc.size, what=f"blob {loc.digest}"), parts.append if keep else None
    )
    if actual != loc.digest:
        raise GapcacheError(f"blob {loc.digest}: {loc.path} is corrupt (hashes to {actual})")
    return b"".join(parts) if keep else None


# ---- responses ---------------------------------------------------------------------------------------


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """One ``bytes=`` range → (start, end exclusive); None: serve whole; False: unsatisfiable."""
    if not header:
        return None
    header = header.strip()
    if not header.startswith("bytes=") or "," in header:
        return None  # other units or multiple ranges: ignore the header (RFC 9110 allows it)
    spec = header[6:].strip()
    first, sep, last = spec.partition("-")
    if not sep or len(spec) > 40:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return False
            return (max(0, size - n), size)
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start < 0 or (last and end - 1 < start):
        return None  # inverted: syntactically invalid, ignore
    if start >= size:
        return False
    return (start, min(end, size))


class _SendfileResponse(web.StreamResponse):
    """Sends ``count`` bytes of a file from ``offset`` with the kernel's sendfile."""

    def __init__(self, loc: BlobLoc, offset: int, count: int, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._loc = loc
        self._offset = offset
        self._count = count

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if request.method == "HEAD" or self._count == 0:
            return writer
        assert writer is not None
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        loop = asyncio.get_running_loop()
        with open(self._loc.path, "rb") as f:
            try:
                await loop.sendfile(transport, f, self._loc.offset + self._offset, self._count)
            except NotImplementedError:
                f.seek(self._loc.offset + self._offset)
                left = self._count
                while left:
                    chunk = await loop.run_in_executor(None, f.read, min(1 << 20, left))
                    if not chunk:
                        raise ConnectionResetError("blob truncated") from None
                    await writer.write(chunk)
                    left -= len(chunk)
        await super().write_eof()
        return writer


async def send_blob(
    request: web.BaseRequest, blobs: BlobIndex, loc: BlobLoc, content_type: str, *, registry: bool = False
) -> web.StreamResponse:
    """GET/HEAD a blob with Range, ETag (the digest) and Last-Modified."""
    h = request.headers
    if "Range" not in h and "If-None-Match" not in h and "If-Range" not in h:
        cached = blobs.cached(loc.digest)
        if cached is not None:  # the hot path: a small verified blob, whole, from memory
            return web.Response(body=cached, headers=blobs.headers(loc, content_type, registry))
    etag = f'"{loc.digest}"'
    headers = dict(blobs.headers(loc, content_type, registry))
    inm = request.headers.get("If-None-Match")
    if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return web.Response(status=304, headers=headers)
    try:
        data = await blobs.open(loc)
    except (GapcacheError, OSError) as exc:
        log.error("refusing to serve %s: %s", loc.digest, exc)
        return web.Response(status=500, text="blob failed verification\n")
    rng = parse_range(request.headers.get("Range"), loc.size)
    if request.headers.get("If-Range") and request.headers["If-Range"].strip() != etag:
        rng = None
    status, start, end = 200, 0, loc.size
    if rng is False:
        headers["Content-Range"] = f"bytes */{loc.size}"
        return web.Response(status=416, headers=headers)
    if isinstance(rng, tuple):
        start, end = rng
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{loc.size}"
    if data is not None:  # aiohttp sends the headers (with Content-Length) and no body for HEAD
        return web.Response(status=status, body=data if status == 200 else data[start:end], headers=headers)
    stream = _SendfileResponse(loc, start, end - start, status=status, headers=headers)
    stream.content_length = end - start
    return stream


# ---- misses -----------------------------------------------------------------------------------------


class MissLog:
    """Appends one JSON line per request the mirrors could not answer (O_APPEND: safe across workers)."""

    def __init__(self, path: Path | None) -> None:
        self.fd: int | None = None
        if path is not None:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                log.warning("cannot write %s: %s (misses will not be recorded)", path, exc)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def record(self, listener: str, path: str, status: int) -> None:
        if self.fd is None:
            return
        line = json.dumps(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "listener": listener,
                "path": path[:2048],
                "status": status,
            },
            sort_keys=True,
        )
        with contextlib.suppress(OSError):
            os.write(self.fd, (line + "\n").encode())


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse | None]]

"""Serving primitives every kind uses: where a blob lives, verified reads, Range, sending a blob
(the miss log is :mod:`~gapcache.misslog`).

A blob is located as ``(file, offset, length)`` — a store blob is ``(path, 0, size)``, an archive
member is ``(part, data offset, size)`` — so serving from an archive needs no second code path.
Every blob is hashed against its digest before its first byte is served by a process; small blobs
are then answered from memory, large ones go out with ``sendfile`` (zero copy).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import NamedTuple

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from .archive import ArchiveReader, bootstrap_members, memberindex
from .errors import GapcacheError, UsageError
from .lock import Lock
from .misslog import MissLog as MissLog  # re-exported: serve, the listeners and tests import it here
from .root import Root
from .store import hash_chunks, read_range
from .wire import Prebuilt, cache_control, etag_matches, serialize_head

log = logging.getLogger("gapcache.serve")

SMALL = 256 * 1024  # blobs up to this size are kept in memory once verified
SMALL_CACHE_BYTES = 256 << 20
CHECKS = {"verified": 0, "corrupt": 0}  # blobs hashed by this process (for /metrics)


class BlobLoc(NamedTuple):
    """Where a blob's bytes are: ``(path, offset, size)``. A store blob keeps only its directory
    (``in_dir``: the path is ``base/<hex>``), as a root serves 100,000 of them."""

    digest: str
    base: Path
    offset: int
    size: int
    in_dir: bool = False

    @property
    def path(self) -> Path:
        return self.base / self.digest[7:] if self.in_dir else self.base


class BlobIndex:
    """Where every blob of the lock lives, and a verify-once / small-blob cache per process."""

    def __init__(self, locs: dict[str, BlobLoc], last_modified: float) -> None:
        self.locs = locs
        self.last_modified = formatdate(last_modified, usegmt=True)
        self.mtime = int(last_modified)
        self.lock_sha256 = ""  # from_archive: the sha256 of the lock's bytes in the archive
        self._verified: dict[str, asyncio.Future[bytes | None]] = {}
        self._failed: dict[str, tuple[tuple[int, int, int], GapcacheError]] = {}
        self._small: OrderedDict[str, bytes] = OrderedDict()
        self._small_bytes = 0
        self._headers: dict[tuple[str, str, bool, bool], dict[str, str]] = {}
        self._heads: dict[tuple[str, str, bool, bool], bytes] = {}

    @classmethod
    def from_root(cls, root: Root, lock: Lock) -> BlobIndex:
        blobs_dir = root.store.blobs
        locs = {d: BlobLoc(d, blobs_dir, 0, s, True) for d, s in lock.blobs().items()}
        mtime = (root.locks / root.current_name()).stat().st_mtime
        return cls(locs, mtime)

    @classmethod
    def from_archive(cls, parts: list[Path], *, cache: bool = True) -> tuple[BlobIndex, Lock]:
        """Index an uncompressed archive in place (content is verified on serve). The member
        offsets come from the cached member index when it is current (archive/memberindex.py)."""
        lock, lock_sha = _archive_lock(parts)
        expected = lock.blobs()
        resolved = [p.resolve() for p in parts]
        boot = bootstrap_members(lock)
        locs = {
            d: BlobLoc(d, resolved[n], offset, size)
            for d, n, offset, size in memberindex.members(parts, lock_sha, expected, cache=cache, boot=boot)
        }
        missing = [d for d in expected if d not in locs]
        if missing:
            raise GapcacheError(f"{parts[0]}: {len(missing)} blob(s) of the lock are not in the archive")
        index = cls(locs, parts[0].stat().st_mtime)
        index.lock_sha256 = lock_sha
        return index, lock

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
        failed = self._failed.get(loc.digest)
        if failed is not None:  # known corrupt: not hashed again until the file changes (a repair)
            if failed[0] == _file_id(loc.path):
                raise failed[1]
            del self._failed[loc.digest]
        fut = self._verified.get(loc.digest)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._verified[loc.digest] = fut
            try:
                data = await asyncio.to_thread(_read_verified, loc)
            except BaseException as exc:
                del self._verified[loc.digest]
                if isinstance(exc, GapcacheError):
                    self._failed[loc.digest] = (_file_id(loc.path), exc)
                    CHECKS["corrupt"] += 1
                fut.set_exception(exc)
                fut.exception()
                raise
            fut.set_result(None)
            CHECKS["verified"] += 1
            if data is not None:
                self._remember(loc.digest, data)
            return data
        await fut
        return self._small.get(loc.digest) if loc.size <= SMALL else None

    def cached(self, digest: str) -> bytes | None:
        return self._small.get(digest)

    def headers(
        self, loc: BlobLoc, content_type: str, registry: bool = False, immutable: bool = False
    ) -> dict[str, str]:
        """The fixed response headers of a blob (built once); ``immutable``: the path it is served
        at is content-addressed or versioned (see :data:`~gapcache.wire.IMMUTABLE`)."""
        key = (loc.digest, content_type, registry, immutable)
        hdrs = self._headers.get(key)
        if hdrs is None:
            hdrs = self._headers[key] = {
                "ETag": f'"{loc.digest}"',
                "Last-Modified": self.last_modified,
                "Accept-Ranges": "bytes",
                "Content-Type": content_type,
                "Cache-Control": cache_control(immutable),
            }
            if registry:
                hdrs["Docker-Content-Digest"] = loc.digest
                hdrs["Docker-Distribution-API-Version"] = "registry/2.0"
        return hdrs

    def head(self, loc: BlobLoc, content_type: str, registry: bool = False, immutable: bool = False) -> bytes:
        """The serialised status line and headers of a whole 200 answer for ``loc`` (built once)."""
        key = (loc.digest, content_type, registry, immutable)
        head = self._heads.get(key)
        if head is None:
            hdrs = self.headers(loc, content_type, registry, immutable)
            head = self._heads[key] = serialize_head(200, hdrs, loc.size)
        return head

    def _remember(self, digest: str, data: bytes) -> None:
        self._small[digest] = data
        self._small_bytes += len(data)
        while self._small_bytes > SMALL_CACHE_BYTES and self._small:
            _, old = self._small.popitem(last=False)
            self._small_bytes -= len(old)
            # evicted small blobs are re-read (and re-verified) next time
            self._verified.pop(_, None)


def _archive_lock(parts: list[Path]) -> tuple[Lock, str]:
    """The lock of an archive to serve in place (as models) and the sha256 of its bytes. Each part's
    lock is read and checked; the bytes are let go on return (57 MB at 100,000 items), before the
    member index is read."""
    lock: Lock | None = None
    lock_sha = ""
    for part in parts:
        with ArchiveReader(part) as r:
            if r.compressed:
                raise UsageError(f"{part}: a compressed archive cannot be served in place; load it")
            if lock is None:
                lock, lock_sha = r.head.lock, hashlib.sha256(r.head.lock_bytes).hexdigest()
    if lock is None:
        raise UsageError("no archive to serve")
    return lock, lock_sha


def _file_id(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


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


def byte_range(request: web.BaseRequest, size: int) -> tuple[int, int] | bool | None:
    """The request's one ``bytes=`` range → (start, end exclusive); None: serve whole; False:
    unsatisfiable (416). Parsed by aiohttp (``request.http_range``: ASCII digits only, one range);
    anything it refuses — other units, several ranges, ``1_0``, ``+1``, non-ASCII digits, an
    inverted range — is ignored, as RFC 9110 allows."""
    header = request.headers.get("Range")
    if header is None:
        return None
    try:
        rng = request.http_range
    except ValueError:
        return None
    if header.partition("=")[2].startswith("-"):  # suffix: the last N bytes; N = 0 cannot be satisfied
        n = -(rng.start or 0)
        return (max(0, size - n), size) if n > 0 and size > 0 else False
    start = rng.start or 0
    if start >= size:
        return False
    return (start, size if rng.stop is None else min(rng.stop, size))


class _SendfileResponse(web.StreamResponse):
    """Sends ``count`` bytes of a file from ``offset``: the loop's ``sendfile`` (asyncio), else
    :func:`_send_bounded` (uvloop has no ``loop.sendfile``)."""

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
            start = self._loc.offset + self._offset
            try:
                await loop.sendfile(transport, f, start, self._count)
            except NotImplementedError:
                await _send_bounded(transport, writer, f.fileno(), start, self._count)
        await super().write_eof()
        return writer


CHUNK = 16 * 1024  # the most a connection ever has queued in user space
SEND_TIMEOUT = 60.0  # like nginx's send_timeout: a client that takes nothing for this long is dropped


async def _send_bounded(
    transport: asyncio.Transport, writer: AbstractStreamWriter, fd: int, offset: int, count: int
) -> None:
    """Send without ever queueing more than :data:`CHUNK` bytes for a client that does not read.

    ``os.sendfile`` goes straight to the socket (zero copy; the kernel takes what fits in the
    socket buffer); when the socket is full, wait until it is writable again (polled on a
    duplicate of its descriptor: the loop's transport owns the original), at most
    :data:`SEND_TIMEOUT`. Where there is no sendfile (TLS, a file system without it), one CHUNK read
    from the file is queued through the transport at a time, and nothing more is sent until it has
    drained — the transport's write limits are set to 0 for that, so ``drain()`` waits for an
    empty buffer.
    """
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    tls = transport.get_extra_info("sslcontext") is not None  # bytes must go through the TLS layer
    sockfd = sock.fileno() if sock is not None and not tls else -1
    pollfd = -1
    transport.set_write_buffer_limits(high=0, low=0)
    try:
        while count:
            if transport.get_write_buffer_size():
                await _drained(transport, writer)
            if transport.is_closing():
                raise ConnectionResetError("connection lost")
            sent = 0
            if sockfd >= 0:  # the transport's buffer is empty here: never ahead of queued bytes
                try:
                    sent = os.sendfile(sockfd, fd, offset, min(count, 1 << 30))
                except BlockingIOError:
                    if pollfd < 0:
                        pollfd = os.dup(sockfd)
                    await _writable(loop, transport, pollfd)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK):
                        raise ConnectionResetError(str(exc)) from exc
                    sockfd = -1  # no sendfile for this file or socket: copy in chunks
                else:
                    if sent == 0:
                        raise ConnectionResetError("blob truncated")
            if not sent:
                chunk = await loop.run_in_executor(None, os.pread, fd, min(CHUNK, count), offset)
                if not chunk:
                    raise ConnectionResetError("blob truncated")
                transport.write(chunk)
                sent = len(chunk)
            offset += sent
            count -= sent
        if transport.get_write_buffer_size():
            await _drained(transport, writer)
    finally:
        if pollfd >= 0:
            os.close(pollfd)
        if not transport.is_closing():
            transport.set_write_buffer_limits()


async def _writable(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, pollfd: int) -> None:
    fut = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_writer(pollfd, ready)
    try:
        await asyncio.wait_for(fut, SEND_TIMEOUT)
    except asyncio.TimeoutError:
        transport.abort()
        raise ConnectionResetError(f"the client took nothing for {SEND_TIMEOUT:.0f} s") from None
    finally:
        loop.remove_writer(pollfd)


async def _drained(transport: asyncio.Transport, writer: AbstractStreamWriter) -> None:
    try:
        await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
    except asyncio.TimeoutError:
        transport.abort()
        raise ConnectionResetError(f"the client took nothing for {SEND_TIMEOUT:.0f} s") from None


async def send_blob(
    request: web.BaseRequest,
    blobs: BlobIndex,
    loc: BlobLoc,
    content_type: str,
    *,
    registry: bool = False,
    immutable: bool = False,
) -> web.StreamResponse:
    """GET/HEAD a blob with Range, ETag (the digest), Last-Modified and a 304 on a matching
    If-None-Match. ``immutable``: the path is content-addressed or versioned (cached for a year),
    else clients revalidate it (``no-cache``) — the kind decides per path."""
    h = request.headers
    if "Range" not in h and "If-None-Match" not in h and "If-Range" not in h and "If-Modified-Since" not in h:
        cached = blobs.cached(loc.digest)
        if cached is not None:  # the hot path: a small verified blob, whole, from memory
            return Prebuilt(blobs.head(loc, content_type, registry, immutable), cached)
    etag = f'"{loc.digest}"'
    headers = dict(blobs.headers(loc, content_type, registry, immutable))
    if etag_matches(h.get("If-None-Match"), etag) or (
        "If-None-Match" not in h and _not_modified_since(h.get("If-Modified-Since"), blobs.mtime)
    ):  # a client that revalidates by date only (apt for InRelease, wget -N) gets its 304 too
        return web.Response(status=304, headers=headers)
    try:
        data = await blobs.open(loc)
    except (GapcacheError, OSError) as exc:
        log.error("refusing to serve %s: %s", loc.digest, exc)
        return web.Response(status=500, text="blob failed verification\n")
    rng = byte_range(request, loc.size)
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
    if data is not None and status == 200:
        return Prebuilt(blobs.head(loc, content_type, registry, immutable), data)
    if data is not None:  # aiohttp sends the headers (with Content-Length) and no body for HEAD
        return web.Response(status=status, body=data if status == 200 else data[start:end], headers=headers)
    stream = _SendfileResponse(loc, start, end - start, status=status, headers=headers)
    stream.content_length = end - start
    return stream


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse | None]]


def public_base(request: web.BaseRequest, public_url: str | None) -> str:
    """The address clients use, for URLs a mirror writes into pages and repo files: ``--public-url``
    (a URL as given; a bare host gets this listener's port), else the Host the client sent; https
    when the connection is TLS."""
    scheme = "https" if request.secure else "http"
    if not public_url:
        return f"{scheme}://{request.host}"
    if "://" in public_url:
        return public_url.rstrip("/")
    port = request.host.rpartition(":")[2] if ":" in request.host else ("443" if request.secure else "80")
    return f"{scheme}://{public_url}:{port}"


def _not_modified_since(value: str | None, mtime: int) -> bool:
    """RFC 9110: If-Modified-Since at or after the Last-Modified we send (ignored when unparsable)."""
    if not value:
        return False
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return when.tzinfo is not None and when.timestamp() >= mtime

"""The content-addressed store: ``blobs/sha256/<hex>``, every byte once, only verified bytes.

A blob is written to ``tmp/`` on the same filesystem, hashed while it is written, fsynced, and
renamed into ``blobs/`` only when its digest matched. A reader therefore never sees a partial or
unverified blob under a digest name.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import DiskFull, VerifyError
from .names import split_digest

CHUNK = 1 << 20


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Callable[[int], int] = libc.syncfs
        return fn
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFull(str(path.parent)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def read_range(source: Path | int, offset: int = 0, length: int | None = None, *, what: str = "") -> Iterator[bytes]:
    """The bytes of a file (a path, or an open descriptor read with ``pread``) from ``offset``:
    ``length`` of them, or to the end. The one loop that reads stored content; a file that ends
    early raises :class:`VerifyError`."""
    fd = source if isinstance(source, int) else os.open(source, os.O_RDONLY)
    try:
        pos, left = offset, length
        while left is None or left > 0:
            chunk = os.pread(fd, CHUNK if left is None else min(CHUNK, left), pos)
            if not chunk:
                if left:
                    raise VerifyError(f"{what or source}: truncated ({left} bytes missing)")
                return
            pos += len(chunk)
            if left is not None:
                left -= len(chunk)
            yield chunk
    finally:
        if not isinstance(source, int):
            os.close(fd)


def hash_chunks(chunks: Iterable[bytes], sink: Callable[[bytes], object] | None = None) -> str:
    """sha256 of a stream of chunks, as ``sha256:<hex>``; each chunk also goes to ``sink``."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
        if sink is not None:
            sink(c)
    return "sha256:" + h.hexdigest()


def hash_file(path: Path, offset: int = 0, length: int | None = None) -> str:
    """sha256 of a file (or of ``length`` bytes at ``offset``), as ``sha256:<hex>``."""
    return hash_chunks(read_range(path, offset, length))


class Store:
    """A content-addressed blob store rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.tmp = root / "tmp"

    def ensure(self) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blobs / split_digest(digest)

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def digests(self) -> Iterator[str]:
        if not self.blobs.is_dir():
            return
        for entry in os.scandir(self.blobs):
            if entry.is_file() and len(entry.name) == 64:
                yield "sha256:" + entry.name

    def commit(self, tmp_path: Path, digest: str, *, durable: bool = True) -> Path:
        """Move a verified temp file into place under its digest (fsync first when durable)."""
        final = self.path(digest)
        if durable:
            fd = os.open(tmp_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp_path, final)
        return final

    def sync(self) -> None:
        """Flush everything written to the store's filesystem (one ``syncfs`` for a whole batch).

        Blobs are committed without a per-file fsync (on ext4 a thousand fsyncs serialise on the
        journal and cost more than the downloads); the build calls this once before it writes a
        lock that refers to them.
        """
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def put_bytes(self, data: bytes) -> str:
        """Store small generated content; returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest, len(data)):
            self.ensure()
            fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="put-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                self.commit(Path(tmp), digest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return digest

    def verify(self, digest: str) -> bool:
        path = self.path(digest)
        return path.is_file() and hash_file(path) == digest

    def free_bytes(self) -> int:
        return free_space(self.root)


def free_space(path: Path) -> int:
    """Free bytes on the filesystem that holds ``path`` (or would hold it, once created)."""
    target = path
    while not target.exists():
        target = target.parent
    return shutil.disk_usage(target).free


def check_space(path: Path, needed: int, margin: int = 1 << 20) -> None:
    """Raise :class:`DiskFull` unless ``needed`` bytes (plus a margin) fit under ``path``."""
    free = free_space(path)
    if needed + margin > free:
        raise DiskFull(str(path), needed + margin, free)

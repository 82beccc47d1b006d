"""The content-addressed store: ``blobs/sha256/<hex>``, every byte once, only verified bytes.

A blob is written to ``tmp/`` on the same filesystem, hashed while it is written, fsynced, and
renamed into ``blobs/`` only when its digest matched. A reader therefore never sees a partial or
unverified blob under a digest name.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import DiskFull, VerifyError, human_bytes
from .names import split_digest

CHUNK = 1 << 20
FILE_MODE = 0o644  # the content is public within the site: readable by a non-root `serve`
DIR_MODE = 0o755


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


def try_lock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting; False when another holder has it.

    Every temp file gapcache writes is locked by its writer while it is written, so a later run can
    tell a leftover (of a process killed with -9: the kernel dropped its lock) from work in progress.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_file(path: Path) -> int | None:
    """An exclusive ``flock`` on the lock file ``path`` (created if missing), or None when another
    process (or another open here) holds it. Its holder removes it before letting go
    (:func:`unlock_file`), so a lock taken on a file that is no longer at ``path`` is retried."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        if not try_lock(fd):
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass  # its holder finished and removed it: take a fresh one
        os.close(fd)


def unlock_file(path: Path, fd: int) -> None:
    """Remove the lock file while still holding it (a waiter then sees it is gone), then let go."""
    path.unlink(missing_ok=True)
    os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale(directory: Path, pattern: str) -> list[Path]:
    """Remove the leftovers of dead processes in ``directory``: entries whose name matches
    ``pattern`` (a regex with a ``pid`` group) when that process is gone and nobody holds a lock on
    the entry (a process in another pid namespace still holds its lock). Returns what was removed."""
    rx = re.compile(pattern)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = rx.fullmatch(entry.name)
        if not m or pid_alive(int(m.group("pid"))):
            continue
        path = Path(entry.path)
        try:
            fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if entry.is_dir(follow_symlinks=False) else 0))
        except OSError:
            continue
        try:
            if not try_lock(fd):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The new file gets ``mode`` (0644: a lock or ``current`` must be readable by a non-root
    ``serve``); the temp file carries the writer's pid so a later run can remove a leftover."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, rf"\.{re.escape(path.name)}\.tmp-(?P<pid>\d+)-\w+")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-")
    try:
        try_lock(fd)
        os.fchmod(fd, mode)
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


def read_range(
    source: Path | str | int, offset: int = 0, length: int | None = None, *, what: str = ""
) -> Iterator[bytes]:
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

    def remove_stale_temps(self) -> list[Path]:
        """Temp files of builds that died (``put-<pid>-*``, ``local-<pid>-*``); partial downloads
        stay: they are what a resume continues from."""
        return remove_stale(self.tmp, r"(?:put|local)-(?P<pid>\d+)-\w+")

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
        """Move a verified temp file into place under its digest (fsync first when durable).

        The only way into ``blobs/``: a temp file private to its writer, hashed as it was written,
        renamed atomically. A concurrent writer of the same blob renames the same bytes.
        """
        final = self.path(digest)
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            os.fchmod(fd, FILE_MODE)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, final)
        return final

    def quarantine(self, digest: str) -> Path | None:
        """Move a blob that does not hash to its name aside, to ``corrupt/<hex>`` (never deleted:
        it is evidence), so that nothing trusts it by its name again. Returns where it went."""
        src = self.path(digest)
        dest_dir = self.root / "corrupt"
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / src.name
        n = 1
        while dest.exists():
            n += 1
            dest = dest_dir / f"{src.name}.{n}"
        try:
            os.replace(src, dest)
        except FileNotFoundError:
            return None
        return dest

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
            fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=f"put-{os.getpid()}-")
            try:
                try_lock(fd)
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
        exc = DiskFull(str(path), needed + margin, free)
        need, have = _distinct_sizes(needed + margin, free)
        what = f"{need} ({human_bytes(needed)} + {human_bytes(margin)} to spare)" if needed else need
        exc.args = (f"not enough disk space in {path}: need {what}, {have} free",)
        raise exc


def _distinct_sizes(a: int, b: int) -> tuple[str, str]:
    """Two sizes written so that they read as different numbers ("2.1 MiB, 2.1 MiB" would not)."""
    x, y = human_bytes(a), human_bytes(b)
    if x != y:
        return x, y
    for digits in (2, 3):
        unit = x.split()[-1]
        scale = 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].index(unit)
        x, y = f"{a / scale:.{digits}f} {unit}", f"{b / scale:.{digits}f} {unit}"
        if x != y:
            return x, y
    return f"{a:,} bytes", f"{b:,} bytes"

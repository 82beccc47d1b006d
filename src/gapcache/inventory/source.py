"""What an inventory reads: the lock, and the blobs of an archive or a loaded root.

Blobs are located as :class:`~gapcache.blobs.BlobLoc` ``(file, offset, length)`` — through
:meth:`BlobIndex.from_root` for a root; for an uncompressed archive by its member headers (a
differential archive lacks some blobs: those are simply not there to read). A compressed archive
cannot be read in place: the few blobs the extractors ask for are copied out of the stream into a
temporary folder in one pass. Extractors get a seekable, bounded file over one blob.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..archive import ArchiveReader, archive_set
from ..blobs import BlobIndex, BlobLoc
from ..errors import GapcacheError
from ..lock import Lock
from ..root import Root

MAX_READ = 64 << 20  # the most an extractor reads into memory from one blob


class BlobSlice(io.RawIOBase):
    """``length`` bytes of a file from ``offset``: seekable, read-only."""

    def __init__(self, loc: BlobLoc) -> None:
        super().__init__()
        self._f = open(loc.path, "rb")  # noqa: SIM115 - closed in close()
        self._start = loc.offset
        self._size = loc.size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        data = os.pread(self._f.fileno(), n, self._start + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


@dataclass
class Source:
    """A lock and where its blobs are (``locs``: those an extractor can read; ``present``: every
    blob the archive or root holds); ``title`` names what was read."""

    title: str
    lock: Lock
    locs: dict[str, BlobLoc]
    present: set[str]
    differential: bool = False
    _cleanup: Callable[[], None] | None = None

    def has(self, digest: str | None) -> bool:
        return digest is not None and digest in self.locs

    @contextlib.contextmanager
    def open(self, digest: str) -> Iterator[IO[bytes]]:
        """A seekable binary file over the blob (buffered)."""
        raw = BlobSlice(self.locs[digest])
        with io.BufferedReader(raw, buffer_size=1 << 16) as f:
            yield f

    def read(self, digest: str, limit: int = MAX_READ) -> bytes | None:
        """The whole blob, if it is here and not larger than ``limit``."""
        loc = self.locs.get(digest)
        if loc is None or loc.size > limit:
            return None
        with self.open(digest) as f:
            return f.read()

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_root(path: Path) -> Source:
    root = Root(path)
    lock = root.current_lock()
    index = BlobIndex.from_root(root, lock)
    locs = {d: loc for d, loc in index.locs.items() if loc.path.is_file()}
    return Source(f"{path} (served)", lock, locs, set(locs))


def open_archive(path: Path, wanted: Callable[[Lock], set[str]] | None = None) -> Source:
    """An archive (or a TOC, or one of its parts): its lock and its blobs' places.

    For a compressed archive the blobs ``wanted(lock)`` names are copied to a temporary folder.
    """
    found = archive_set([path])
    if not found.parts:
        raise GapcacheError(f"{path}: no archive (a lock file? give the archive, or use `gapcache diff`)")
    locs: dict[str, BlobLoc] = {}
    present: set[str] = set()
    lock: Lock | None = None
    since: str | None = None
    tmp: Path | None = None
    try:
        for part in found.parts:
            with ArchiveReader(part) as r:
                if lock is None:
                    lock, since = r.head.lock, r.head.since
                if not r.compressed:
                    for blob in r.blobs():
                        assert blob.offset is not None
                        locs[blob.digest] = BlobLoc(blob.digest, part.resolve(), blob.offset, blob.size)
                        present.add(blob.digest)
                    continue
                want = wanted(lock) if wanted is not None else set()
                for blob in r.blobs():
                    present.add(blob.digest)
                    if blob.digest not in want:
                        continue  # the stream skips the member's data when the next header is read
                    tmp = tmp or Path(tempfile.mkdtemp(prefix="gapcache-inventory-"))
                    target = tmp / blob.digest[7:]
                    with open(target, "wb") as out:
                        for chunk in blob.chunks:
                            out.write(chunk)
                    locs[blob.digest] = BlobLoc(blob.digest, target, 0, blob.size)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    assert lock is not None
    title = f"{path}{' (differential)' if since else ''}"
    cleanup = (lambda: shutil.rmtree(tmp, ignore_errors=True)) if tmp is not None else None
    return Source(title, lock, locs, present, differential=since is not None, _cleanup=cleanup)

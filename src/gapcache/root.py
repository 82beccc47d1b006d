"""The offline root (default /opt/deepops): load archives into it, all or nothing.

Layout (DESIGN "Decisions"):

    blobs/sha256/<hex>      verified content
    locks/<lock-sha256>.json  every lock ever loaded
    current                 the name of the lock being served (``<lock-sha256>.json``)
    keys/                   public keys only
    misses.jsonl            requests the mirrors could not answer
    tmp/                    staging on the same filesystem

A load streams each archive part, refuses unsafe members and blobs the lock does not list,
hashes every blob into ``tmp/load-*/``, checks the lock's blobs are all present (in the archive or
already in the root), then moves the blobs into place, writes the lock and switches ``current``.
A failed load removes its staging and every directory it created: no new file is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .archive import ArchiveReader, VerifyReport, resolve_parts
from .errors import ArchiveError, DiskFull, GapcacheError
from .lock import Lock, read_lock
from .progress import NullProgress, Progress
from .store import Store, atomic_write, check_space, fsync_dir, hash_chunks, hash_file


@dataclass
class LoadResult:
    lock_name: str
    blobs_added: int
    bytes_added: int
    already_loaded: bool


class Root:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = Store(path)
        self.locks = path / "locks"
        self.current_file = path / "current"
        self.keys = path / "keys"
        self.misses = path / "misses.jsonl"

    def current_name(self) -> str:
        try:
            name = self.current_file.read_text().strip()
        except FileNotFoundError as exc:
            raise GapcacheError(f"{self.path}: nothing loaded yet (no 'current'); run gapcache load") from exc
        if "/" in name or not name.endswith(".json"):
            raise GapcacheError(f"{self.current_file}: invalid content {name!r}")
        return name

    def current_lock(self) -> Lock:
        return read_lock(self.locks / self.current_name())

    # ---- load ----------------------------------------------------------------------------------

    def load(self, archives: list[Path], progress: Progress | None = None) -> LoadResult:
        progress = progress or NullProgress()
        parts = resolve_parts(archives)
        for p in parts:
            if not p.is_file():
                raise GapcacheError(f"{p}: no such archive part")
        created = _missing_dirs(self.path)
        try:
            return self._load(parts, progress)
        except BaseException:
            for d in reversed(created):
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise

    def _load(self, parts: list[Path], progress: Progress) -> LoadResult:
        with ArchiveReader(parts[0]) as first:
            head = first.head
        lock = head.lock
        lock_name = hashlib.sha256(head.lock_bytes).hexdigest() + ".json"
        expected = lock.blobs()
        if (
            (self.locks / lock_name).is_file()
            and self.current_file.is_file()
            and self.current_name() == lock_name
            and all(self.store.has(d, s) for d, s in expected.items())
        ):
            return LoadResult(lock_name, 0, 0, already_loaded=True)
        needed = sum(s for d, s in expected.items() if not self.store.has(d, s))
        self.store.tmp.mkdir(parents=True, exist_ok=True)
        check_space(self.store.tmp, needed)
        staging = Path(tempfile.mkdtemp(prefix="load-", dir=self.store.tmp))
        staged: dict[str, Path] = {}
        try:
            progress.begin("load", len(expected), needed)
            for part in parts:
                with ArchiveReader(part) as r:
                    if r.head.lock_bytes != head.lock_bytes:
                        raise ArchiveError(f"{part}: carries a different lock than {parts[0]}")
                    for blob in r.blobs():
                        if blob.digest not in expected:
                            raise ArchiveError(f"{part}: blob {blob.digest} is not listed in the lock")
                        if expected[blob.digest] != blob.size:
                            raise ArchiveError(
                                f"{part}: blob {blob.digest} has {blob.size} bytes, the lock says "
                                f"{expected[blob.digest]}"
                            )
                        if blob.digest in staged or self.store.has(blob.digest, blob.size):
                            continue  # already here: the data is skipped, not read
                        target = staging / blob.digest[7:]
                        progress.start(blob.digest, blob.digest, blob.size)
                        actual = _write_hashing(target, blob.chunks, progress, blob.digest)
                        if actual != blob.digest:
                            progress.finish(blob.digest, False, "corrupt")
                            raise ArchiveError(
                                f"{part}: blob {blob.digest} is corrupt (its content hashes to {actual}); "
                                "nothing was loaded"
                            )
                        progress.finish(blob.digest, True)
                        staged[blob.digest] = target
            missing = [d for d in expected if d not in staged and not self.store.has(d, expected[d])]
            if missing:
                what = "a differential archive whose base is not loaded here" if head.since else "incomplete"
                raise ArchiveError(
                    f"{parts[0]}: {len(missing)} blob(s) of the lock are neither in the archive nor in "
                    f"{self.path} ({what}); first missing: {missing[0]}"
                )
            # Everything verified: publish. Blobs first, then the lock, then the switch.
            self.store.blobs.mkdir(parents=True, exist_ok=True)
            for digest, path in staged.items():
                os.replace(path, self.store.path(digest))
            if staged:
                fsync_dir(self.store.blobs)
            atomic_write(self.locks / lock_name, head.lock_bytes)
            atomic_write(self.current_file, (lock_name + "\n").encode())
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(str(self.path)) from exc
            raise
        finally:
            progress.end()
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.store.tmp.rmdir()  # only when empty
        return LoadResult(lock_name, len(staged), sum(expected[d] for d in staged), already_loaded=False)

    # ---- verify --------------------------------------------------------------------------------

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        progress = progress or NullProgress()
        report = VerifyReport()
        lock = self.current_lock()
        blobs = lock.blobs()
        progress.begin("verify", len(blobs), sum(blobs.values()))
        for digest, size in blobs.items():
            path = self.store.path(digest)
            progress.start(digest, digest, size)
            if not path.is_file():
                report.problems.append(f"blob {digest}: missing from {self.store.blobs}")
                progress.finish(digest, False, "missing")
                continue
            actual = hash_file(path)
            progress.advance(digest, size)
            report.blobs += 1
            report.bytes += size
            ok = actual == digest
            progress.finish(digest, ok, "" if ok else "corrupt")
            if not ok:
                report.problems.append(f"blob {digest}: content hashes to {actual} (corrupt)")
        progress.end()
        return report


def _missing_dirs(path: Path) -> list[Path]:
    """The directories from the first missing ancestor down to ``path`` (to undo a failed load)."""
    out: list[Path] = []
    p = path
    while not p.exists():
        out.append(p)
        if p.parent == p:
            break
        p = p.parent
    return list(reversed(out))


def _write_hashing(target: Path, chunks: Iterator[bytes], progress: Progress, key: str) -> str:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def write(chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
        progress.advance(key, len(chunk))

    try:
        digest = hash_chunks(chunks, write)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest

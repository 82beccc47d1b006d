"""The offline root (default /opt/deepops): load archives into it, all or nothing.

Layout (DESIGN "Decisions"):

    blobs/sha256/<hex>      verified content
    locks/<lock-sha256>.json  every lock ever loaded
    current                 the name of the lock being served (``<lock-sha256>.json``)
    keys/                   public keys only
    misses.jsonl            requests the mirrors could not answer
    tmp/                    staging on the same filesystem

A load streams each archive part, refuses unsafe members and blobs the lock does not list,
hashes every blob into ``tmp/load-<pid>-*/``, checks the lock's blobs are all present (in the archive
or already in the root), then moves the blobs into place, writes the lock and switches ``current``.
A blob the root already holds is re-hashed when the archive carries it, and replaced if corrupt
(loading the lock already served is a no-op: run ``gapcache verify --root`` first, which moves a
corrupt blob aside, and the next load restores it).
With a TOC, each part is checked against its size and sha256 and the lock against its digest.
A failed load removes its staging, the blobs and lock it wrote, and every directory it created:
no new file is left behind. Durability: the staged blobs are flushed by one ``syncfs`` before any is
renamed into ``blobs/`` (whose directory is then fsynced), and the lock and ``current`` are each
written atomically (fsync, rename, fsync of the directory) after that — a crash at any point leaves
``current`` naming a lock whose blobs are all on disk. Files are 0644 and directories 0755: a
non-root ``serve`` reads them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .archive import (
    ArchiveHead,
    ArchiveReader,
    ArchiveSet,
    BlobMember,
    VerifyReport,
    archive_set,
    memberindex,
)
from .errors import ArchiveError, DiskFull, GapcacheError
from .lock import Lock, read_lock, scan_lock_file
from .progress import NullProgress, Progress
from .signing import TrustedKey, read_detached, trusted_keys
from .signing import check as check_signature
from .store import (
    DIR_MODE,
    FILE_MODE,
    Store,
    atomic_write,
    check_space,
    hash_chunks,
    hash_file,
    read_range,
    remove_stale,
    try_lock,
)


@dataclass
class LoadResult:
    lock_name: str
    blobs_added: int
    bytes_added: int
    already_loaded: bool
    repaired: list[str] = field(default_factory=list)  # blobs that were corrupt in the root, restored
    lock_size: int | None = None  # the loaded lock's total_size() (None: not known)


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

    def load(
        self,
        archives: list[Path],
        progress: Progress | None = None,
        verify_keys: list[Path] | None = None,
        *,
        switch: bool = True,
        before: Callable[[ArchiveHead], None] | None = None,
    ) -> LoadResult:
        """Load an archive (its parts, or a TOC; lock files beside them are recognised and skipped).

        With ``verify_keys`` (``--verify-key``), or any ``*.pub`` in ``keys/``, the archive must carry a
        valid signature by one of those keys (signing.py), checked before anything is written.
        ``switch=False`` (``load --add``, sets.py) writes the blobs and the lock but leaves ``current``.
        ``before(head)`` is called once the lock is checked, before anything is written (``load`` says
        what the switch stops serving); ``head.scan(keys=True)`` is then already done when ``current`` exists.
        The lock is read once per part and never held as models (``ArchiveHead.scan``)."""
        progress = progress or NullProgress()
        keys = trusted_keys(self.keys, list(verify_keys or []))
        found = archive_set(archives)
        if not found.parts:
            raise GapcacheError("no archive given (only lock files)")
        for p in found.parts:
            if not p.is_file():
                raise GapcacheError(f"{p}: no such archive part")
        if found.toc is not None:
            for part, size, _ in found.toc.parts:
                if part.stat().st_size != size:
                    raise ArchiveError(
                        f"{part}: {part.stat().st_size} bytes, the table of contents says {size}; "
                        "re-send this part (nothing was loaded)"
                    )
        if found.toc is not None and keys:
            toc_sig = read_detached(found.toc.path)
            if toc_sig is not None:
                check_signature(str(found.toc.path), found.toc.path.read_bytes(), toc_sig, keys)
        created = _missing_dirs(self.path)
        try:
            return _Load(self, found, progress, keys, switch, before).run()
        except BaseException:
            for d in reversed(created):
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise

    # ---- verify --------------------------------------------------------------------------------

    def verify(self, progress: Progress | None = None, *, repair: bool = True) -> VerifyReport:
        """Re-hash every blob the current lock needs (every blob, in a store with no ``current``).

        A blob that does not hash to its name is moved aside to ``corrupt/`` (with ``repair``), so
        that nothing trusts it by its name, and a load of an archive that carries it restores it.
        """
        progress = progress or NullProgress()
        report = VerifyReport()
        if not self.current_file.exists() and self.store.blobs.is_dir():
            blobs = {d: self.store.path(d).stat().st_size for d in sorted(self.store.digests())}
        else:
            blobs = scan_lock_file(self.locks / self.current_name()).blobs  # no model per item kept
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
                moved = self.store.quarantine(digest) if repair else None
                where = f"; moved to {moved} (load an archive that carries it to restore it)" if moved else ""
                report.problems.append(f"blob {digest}: content hashes to {actual} (corrupt){where}")
        progress.end()
        return report


class _Load:
    """One load, all or nothing: everything it creates is listed, and removed if it fails."""

    def __init__(
        self,
        root: Root,
        found: ArchiveSet,
        progress: Progress,
        keys: list[TrustedKey],
        switch: bool = True,
        before: Callable[[ArchiveHead], None] | None = None,
    ) -> None:
        self.before = before
        self.keys = keys
        self.switch = switch
        self._held: int | None = None  # the root directory, flocked shared while loading
        self.root = root
        self.store = root.store
        self.parts = found.parts
        self.toc = found.toc
        self.progress = progress
        self.made: list[Path] = []  # directories this load created
        self.new_files: list[Path] = []  # the lock written by this load (undone on failure)
        self.new_blobs: list[str] = []  # names (hex) of the blobs this load brought into blobs/

    def _mkdir(self, path: Path) -> None:
        for d in _missing_dirs(path):
            d.mkdir(mode=DIR_MODE)
            os.chmod(d, DIR_MODE)  # whatever the umask: a non-root serve reads the root
            self.made.append(d)

    def _hold(self, path: Path) -> None:
        self._held = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._held, fcntl.LOCK_SH)

    def run(self) -> LoadResult:
        try:
            return self._run()
        except OSError as exc:
            self._undo()
            if exc.errno == errno.ENOSPC:
                raise DiskFull(str(self.root.path)) from exc
            raise
        except BaseException:
            self._undo()
            raise
        finally:
            if self._held is not None:
                os.close(self._held)

    def _undo(self) -> None:
        ours = {f.name for f in self.new_files}
        kept: set[str] = set()  # blobs another lock in the root needs (a load that ran alongside)
        for other in self.root.locks.glob("*.json") if self.root.locks.is_dir() else []:
            if other.name not in ours:
                with contextlib.suppress(GapcacheError, OSError):
                    kept |= {d[7:] for d in scan_lock_file(other).blobs}
        for f in reversed(self.new_files):
            f.unlink(missing_ok=True)
        blobs = str(self.store.blobs)
        for name in reversed(self.new_blobs):
            if name not in kept:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(blobs, name))
        for d in reversed(self.made):
            with contextlib.suppress(OSError):
                d.rmdir()

    def _run(self) -> LoadResult:
        # The first part's reader stays open: its blobs are read next, without reading its lock again.
        with ArchiveReader(self.parts[0], hashing=self.toc is not None, parse=False) as first:
            return self._run_with(first)

    def _run_with(self, first: ArchiveReader) -> LoadResult:
        root, store, parts = self.root, self.store, self.parts
        head = first.head
        check_signature(str(parts[0]), head.lock_bytes, head.signature, self.keys)
        lock_sha = hashlib.sha256(head.lock_bytes).hexdigest()
        if self.toc is not None and lock_sha != self.toc.lock_sha256:
            raise ArchiveError(
                f"{parts[0]}: its lock (sha256 {lock_sha}) is not the one {self.toc.path} names "
                f"({self.toc.lock_sha256}); nothing was loaded"
            )
        lock_name = lock_sha + ".json"
        expected = head.scan(keys=self.before is not None and root.current_file.exists()).blobs
        if self.before is not None:
            self.before(head)
        if (
            (root.locks / lock_name).is_file()
            and (not self.switch or (root.current_file.is_file() and root.current_name() == lock_name))
            and all(store.has(d, s) for d, s in expected.items())
        ):
            return LoadResult(lock_name, 0, 0, already_loaded=True, lock_size=sum(expected.values()))
        self._mkdir(root.path)
        self._hold(root.path)  # shared: `gapcache prune` (exclusive) does not run while this loads
        remove_stale(store.tmp, r"load-(?P<pid>\d+)-\w+")  # staging of loads that were killed
        self._mkdir(store.blobs)
        present = set(os.listdir(store.blobs))  # one listing, not a stat per blob
        needed = sum(s for d, s in expected.items() if d[7:] not in present)
        self._mkdir(store.tmp)
        staging = Path(tempfile.mkdtemp(prefix=f"load-{os.getpid()}-", dir=store.tmp))
        staging_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
        try_lock(staging_fd)  # ours while we live: a later load leaves it alone
        blobs_fd = os.open(store.blobs, os.O_RDONLY | os.O_DIRECTORY)
        self.progress.begin("load", len(expected), needed)
        try:
            check_space(store.tmp, needed)
            staged, repaired = self._stage(first, expected, present, staging_fd)
            missing = [
                d for d in expected if d[7:] not in staged and (d[7:] not in present or not store.has(d, expected[d]))
            ]
            if missing:
                what = "a differential archive whose base is not loaded here" if head.since else "incomplete"
                raise ArchiveError(
                    f"{parts[0]}: {len(missing)} blob(s) of the lock are neither in the archive nor in "
                    f"{root.path} ({what}); first missing: {missing[0]}"
                )
            # Everything verified: publish. Blobs first (made durable by one syncfs of the staged
            # files, not one fsync each: 100,000 fsyncs serialise on the journal), then the lock,
            # then the switch.
            if staged:
                store.sync()
            for name in staged:
                if name not in repaired and not _exists(name, blobs_fd):  # only what this load brings in
                    self.new_blobs.append(name)
                os.replace(name, name, src_dir_fd=staging_fd, dst_dir_fd=blobs_fd)
            if staged:
                os.fsync(blobs_fd)
            self._mkdir(root.locks)
            if not (root.locks / lock_name).exists():
                self.new_files.append(root.locks / lock_name)
            atomic_write(root.locks / lock_name, head.lock_bytes)
            if self.switch:
                atomic_write(root.current_file, (lock_name + "\n").encode())
        finally:
            self.progress.end()
            os.close(blobs_fd)
            os.close(staging_fd)
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                store.tmp.rmdir()  # only when empty
        added = [n for n in staged if n not in repaired]
        return LoadResult(
            lock_name,
            len(added),
            sum(expected["sha256:" + n] for n in added),
            already_loaded=False,
            repaired=sorted("sha256:" + n for n in repaired),
            lock_size=sum(expected.values()),
        )

    def _stage(
        self, first: ArchiveReader, expected: dict[str, int], present: set[str], staging_fd: int
    ) -> tuple[set[str], set[str]]:
        """Hash every blob the root lacks (or holds corrupt) into the staging directory; check each
        part. Returns the names (hex) staged and those of them that replace a corrupt blob."""
        store, progress, head = self.store, self.progress, first.head
        staged: set[str] = set()
        repaired: set[str] = set()
        toc_sha = {p: sha for p, _, sha in self.toc.parts} if self.toc is not None else {}
        boot = head.bootstrap()
        for n, part in enumerate(self.parts):
            with contextlib.ExitStack() as stack:
                if n == 0:
                    r = first
                else:
                    r = stack.enter_context(ArchiveReader(part, hashing=self.toc is not None, parse=False))
                    if r.head.lock_bytes != head.lock_bytes:
                        raise ArchiveError(f"{part}: carries a different lock than {self.parts[0]}")
                for blob in _blobs(part, r, boot):
                    size = expected.get(blob.digest)
                    if size is None:
                        raise ArchiveError(f"{part}: blob {blob.digest} is not listed in the lock")
                    if size != blob.size:
                        raise ArchiveError(f"{part}: blob {blob.digest} has {blob.size} bytes, the lock says {size}")
                    name = blob.digest[7:]
                    if name in staged:
                        continue
                    if name in present and store.has(blob.digest, blob.size):
                        if hash_file(store.path(blob.digest)) == blob.digest:
                            continue  # already here and sound: the archive's copy is skipped
                        repaired.add(name)  # corrupt in the root: this copy replaces it
                    progress.start(blob.digest, blob.digest, blob.size)
                    actual = _write_hashing(name, staging_fd, blob.chunks, progress, blob.digest)
                    if actual != blob.digest:
                        progress.finish(blob.digest, False, "corrupt")
                        raise ArchiveError(
                            f"{part}: blob {blob.digest} is corrupt (its content hashes to {actual}); "
                            "nothing was loaded"
                        )
                    progress.finish(blob.digest, True, "repaired" if name in repaired else "")
                    staged.add(name)
                if part in toc_sha and r.file_sha256() != toc_sha[part]:
                    raise ArchiveError(
                        f"{part}: sha256 does not match the table of contents {self.toc.path if self.toc else ''}; "
                        "re-send this part (nothing was loaded)"
                    )
        return staged, repaired


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _blobs(part: Path, reader: ArchiveReader, boot: dict[str, tuple[str, int]]) -> Iterator[BlobMember]:
    """The blob members of ``part``. An uncompressed part read without a TOC hash has its headers
    read by memberindex's scanner (a fifth of tarfile's time; on anything but the layout gapcache
    writes it hands over to ArchiveReader, which refuses unsafe members) and each blob by ``pread``."""
    if reader.streaming:
        yield from reader.blobs()
        return
    fd = os.open(part, os.O_RDONLY)
    try:
        for digest, offset, size in memberindex.iter_part(part, boot):
            yield BlobMember(digest, size, offset, read_range(fd, offset, size, what=f"{part}: blob {digest}"))
    finally:
        os.close(fd)


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


def _write_hashing(name: str, dir_fd: int, chunks: Iterator[bytes], progress: Progress, key: str) -> str:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE, dir_fd=dir_fd)
    os.fchmod(fd, FILE_MODE)

    def write(chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
        progress.advance(key, len(chunk))

    try:
        digest = hash_chunks(chunks, write)  # made durable with the others: Store.sync() before the renames
    finally:
        os.close(fd)
    return digest

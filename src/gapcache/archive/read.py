"""Reading archives: the lock first, then each blob member checked for safety; verify and TOC checks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

from ..errors import ArchiveError, FormatError, GapcacheError, UnsafeMember, VerifyError
from ..lock import Lock, LockScan, parse_lock
from ..progress import NullProgress, Progress
from ..store import CHUNK, hash_chunks, read_range
from .format import (
    ARCHIVE_FORMAT,
    INSTALL_MEMBER,
    LOCK_MEMBER,
    MAX_LOCK_BYTES,
    MAX_SIG_BYTES,
    PAX_FORMAT,
    PAX_SINCE,
    SIG_MEMBER,
    bootstrap_members,
    is_bootstrap_path,
)
from .members import _check_lock_header, _check_member, _HashingFile, _Header, _header_name, _is_zstd
from .toc import archive_set


def _boot_order(found: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """Bootstrap members in archive order (install.sh first), as ``format.bootstrap_members``."""
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != INSTALL_MEMBER, kv[0])))


def _chunk_advancer(progress: Progress, key: str) -> Callable[[bytes], None]:
    return lambda chunk: progress.advance(key, len(chunk))


# ---- reading ------------------------------------------------------------------------------------


class ArchiveHead:
    """The lock of an archive (its first member) and what its PAX header said.

    ``lock`` (every item as a model) is parsed when first asked for; :meth:`scan` checks the same
    bytes keeping only the blobs, the bootstrap files and what else is asked (lock.LockScan): a
    100,000-item lock in a few MB instead of a few hundred."""

    def __init__(
        self,
        path: Path,
        lock_bytes: bytes,
        since: str | None,
        compressed: bool,
        signature: bytes | None = None,  # the ``gapcache.lock.json.sig`` member, when the archive is signed
    ) -> None:
        self.path, self.lock_bytes, self.since = path, lock_bytes, since
        self.compressed, self.signature = compressed, signature
        self._lock: Lock | None = None
        self._scan: LockScan | None = None

    @property
    def lock(self) -> Lock:
        if self._lock is None:
            self._lock = parse_lock(self.lock_bytes, f"{self.path}:{LOCK_MEMBER}")
        return self._lock

    def scan(self, *, keys: bool = False) -> LockScan:
        """The lock checked in one bounded pass: ``blobs`` (digest → size), ``selected`` (the
        bootstrap files: path → (digest, size)), ``keys`` (with ``keys``)."""
        if self._scan is None or (keys and not self._scan.want_keys):
            self._scan = LockScan(
                self.lock_bytes, f"{self.path}:{LOCK_MEMBER}", keys=keys, select=is_bootstrap_path
            ).run()
        return self._scan

    def bootstrap(self) -> dict[str, tuple[str, int]]:
        """``format.bootstrap_members`` of the lock, from the parsed lock or the bounded scan."""
        if self._lock is not None:
            return bootstrap_members(self._lock)
        return _boot_order(self.scan().selected)


@dataclass
class BlobMember:
    digest: str
    size: int
    offset: int | None  # data offset in the file (None when the archive is compressed)
    chunks: Iterator[bytes] = field(repr=False)


class ArchiveReader:
    """Streams one archive (or one part): the lock first, then each blob with its bytes.

    With ``hashing`` the file is read strictly front to back (no blob offsets) and
    :meth:`file_sha256` gives the sha256 of the whole file: a split part is checked against its
    table of contents in the same pass that loads it. With ``parse=False`` the lock is not parsed
    into models up front (``head.scan()`` checks it in bounded memory; ``head.lock`` parses it).
    """

    def __init__(self, path: Path, *, hashing: bool = False, parse: bool = True) -> None:
        self.path = path
        self._parse = parse
        self.compressed = _is_zstd(path)
        self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._hashing: _HashingFile | None = _HashingFile(self._raw) if hashing else None
        self.streaming = self.compressed or hashing
        self._tar: tarfile.TarFile
        self._last = ""
        self._ended = False
        self._pending: tarfile.TarInfo | None = None  # read while looking for the signature
        try:
            source: Any = self._hashing or self._raw
            if self.compressed:
                dctx = zstandard.ZstdDecompressor()
                self._stream = dctx.stream_reader(source, read_size=CHUNK)
                source = self._stream
            if self.streaming:
                self._tar = tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK, tarinfo=_Header)  # noqa: SIM115
            else:
                self._tar = tarfile.open(fileobj=source, mode="r:", tarinfo=_Header)  # noqa: SIM115
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            self.close()
            raise ArchiveError(f"{path}: not a readable tar archive: {exc}") from exc
        try:
            self.head = self._read_head()
        except BaseException:  # a bad lock member: the constructor raises, so `with` cannot close it
            self.close()
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def file_sha256(self) -> str:
        """The sha256 (hex) of the whole file, once every member was read (``hashing`` only)."""
        assert self._hashing is not None
        try:
            while self._next() is not None:
                pass
            return self._hashing.hexdigest()
        except OSError as exc:
            raise ArchiveError(f"{self.path}: {exc}") from exc

    def _next(self) -> tarfile.TarInfo | None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        if self._ended:
            return None
        try:
            ti = self._tar.next()
        except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
            raise ArchiveError(f"{self.path}: damaged archive after member {self._last!r}: {exc}") from exc
        if ti is None:
            self._ended = True
            self._check_end()
        else:
            self._last = ti.name
            self._tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header read (~50 MB at 100,000)
        return ti

    def _check_end(self) -> None:
        """tarfile ends quietly at a header it cannot read: say which, and where."""
        damage = getattr(self._tar, "_gapcache_damage", None)
        if damage is None:
            return
        offset, buf, exc = damage
        name = _header_name(buf)
        what = f"the header of member {name!r}" if name else "a member header"
        if len(buf) < 512:
            raise ArchiveError(
                f"{self.path}: truncated at offset {offset} (after member {self._last!r}): "
                "the archive is incomplete; copy it again"
            )
        raise ArchiveError(
            f"{self.path}: damaged tar header at offset {offset} ({what}, after member {self._last!r}: "
            f"{exc}); the archive is corrupt, copy it again"
        )

    def _read_head(self) -> ArchiveHead:
        try:
            ti = self._next()
        except ArchiveError:
            self.close()
            raise
        if ti is None or ti.name != LOCK_MEMBER or not ti.isreg():
            self.close()
            raise ArchiveError(f"{self.path}: not a gapcache archive (first member is not {LOCK_MEMBER})")
        pax = ti.pax_headers
        fmt = pax.get(PAX_FORMAT)
        if fmt is not None and (not fmt.isdigit() or int(fmt) > ARCHIVE_FORMAT):
            self.close()
            raise FormatError(
                f"{self.path}: archive format {fmt} is newer than this gapcache reads "
                f"({ARCHIVE_FORMAT}); upgrade gapcache"
            )
        if ti.size > MAX_LOCK_BYTES:
            self.close()
            raise ArchiveError(f"{self.path}: lock member is implausibly large ({ti.size} bytes)")
        if self.streaming:
            data = b"".join(self._member_chunks(ti))
        else:  # one read into one buffer: a 100,000-item lock (57 MB) is not held twice
            data = os.pread(self._raw.fileno(), ti.size, ti.offset_data)
        if len(data) != ti.size:
            raise ArchiveError(f"{self.path}: truncated lock member")
        try:
            _check_lock_header(self.path, ti, data)
        except ArchiveError:
            self.close()
            raise
        self._last = ti.name
        try:
            signature = self._read_signature()
        except ArchiveError:
            self.close()
            raise
        head = ArchiveHead(self.path, data, pax.get(PAX_SINCE), self.compressed, signature)
        if self._parse:
            head.lock  # noqa: B018 - parsed (and checked) now: a bad lock fails the constructor
        return head

    def _read_signature(self) -> bytes | None:
        """The member after the lock: the signature if it is one, else kept for :meth:`blobs`."""
        ti = self._next()
        if ti is None or ti.name != SIG_MEMBER:
            self._pending = ti
            return None
        if not ti.isreg() or ti.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or ti.size > MAX_SIG_BYTES:
            raise UnsafeMember(str(self.path), ti.name, "not a plausible signature member")
        data = b"".join(self._member_chunks(ti))
        if len(data) != ti.size:
            raise ArchiveError(f"{self.path}: truncated signature member")
        return data

    def _member_chunks(self, ti: tarfile.TarInfo) -> Iterator[bytes]:
        left = ti.size
        if self.streaming:
            f = self._tar.extractfile(ti)
            if f is None:
                return
            while left:
                try:
                    chunk = f.read(min(CHUNK, left))
                except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
                    raise ArchiveError(f"{self.path}: member {ti.name}: {exc}") from exc
                if not chunk:
                    raise ArchiveError(f"{self.path}: member {ti.name} is truncated")
                left -= len(chunk)
                yield chunk
        else:
            try:
                yield from read_range(self._raw.fileno(), ti.offset_data, left, what=f"{self.path}: member {ti.name}")
            except VerifyError as exc:
                raise ArchiveError(str(exc)) from exc

    def blobs(self) -> Iterator[BlobMember]:
        """Each blob member, checked for safety; consume ``chunks`` before taking the next.

        Bootstrap members (``install.sh``, ``bootstrap/<file>``: artifacts of the lock stored under
        their own path, before the first blob) come as blobs with the lock's digest; their bytes are
        checked against it as they are read."""
        seen: set[str] = set()
        names: set[str] = set()
        boot = self.head.bootstrap()
        archive = str(self.path)
        in_blobs = False
        while True:
            ti = self._next()
            if ti is None:
                return
            digest = _check_member(archive, ti, boot)
            offset = None if self.streaming else ti.offset_data
            if ti.name in boot:
                if in_blobs:
                    raise UnsafeMember(archive, ti.name, "a bootstrap file after the blobs (it must follow the lock)")
                if ti.name in names:
                    raise UnsafeMember(archive, ti.name, "appears twice")
                names.add(ti.name)
                if ti.size != boot[ti.name][1]:
                    raise ArchiveError(
                        f"{archive}: member {ti.name} has {ti.size} bytes, the lock says {boot[ti.name][1]}"
                    )
                if digest not in seen:
                    seen.add(digest)
                    yield BlobMember(digest, ti.size, offset, self._checked_chunks(ti, digest))
                continue
            in_blobs = True
            if digest in seen:
                raise UnsafeMember(archive, ti.name, "appears twice")
            seen.add(digest)
            yield BlobMember(digest, ti.size, offset, self._member_chunks(ti))

    def _checked_chunks(self, ti: tarfile.TarInfo, digest: str) -> Iterator[bytes]:
        """A bootstrap member's bytes, refused at the end when they are not the lock's."""
        h = hashlib.sha256()
        for chunk in self._member_chunks(ti):
            h.update(chunk)
            yield chunk
        if "sha256:" + h.hexdigest() != digest:
            raise ArchiveError(
                f"{self.path}: member {ti.name} is corrupt (its content hashes to sha256:{h.hexdigest()}, "
                f"the lock says {digest}); nothing was loaded"
            )


def read_head(path: Path) -> ArchiveHead:
    try:
        with ArchiveReader(path) as r:
            return r.head
    except FileNotFoundError as exc:
        raise GapcacheError(f"{path}: no such archive") from exc


@dataclass
class VerifyReport:
    blobs: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    missing: int = 0
    differential: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_archive(paths: list[Path], progress: Progress | None = None) -> VerifyReport:
    """Re-hash every blob of an archive (all its parts) against its name and the lock.

    Each part is read once: with a TOC, a part's sha256 is computed in the same front-to-back pass
    that hashes its blobs (its size is checked first, so a short part is named before any is read).
    The lock is checked by ``ArchiveHead.scan`` (bounded memory, no model per item)."""
    progress = progress or NullProgress()
    report = VerifyReport()
    found = archive_set(paths)
    parts = found.parts
    toc_sha: dict[Path, str] = {}
    if found.toc is not None:
        for p, size, sha in found.toc.parts:
            if not p.exists():
                report.problems.append(f"{p.name}: missing")
            elif p.stat().st_size != size:
                report.problems.append(f"{p.name}: size {p.stat().st_size}, expected {size}; re-send this part")
            toc_sha[p] = sha
    if report.problems:
        return report
    first: ArchiveHead | None = None
    expected: dict[str, int] = {}
    seen: set[str] = set()
    for part in parts:
        with ArchiveReader(part, hashing=part in toc_sha, parse=False) as r:
            if first is None:
                first = r.head
                expected = first.scan().blobs
                progress.begin("verify", len(expected), sum(expected.values()))
            elif r.head.lock_bytes != first.lock_bytes:
                report.problems.append(f"{part}: carries a different lock than {first.path}")
                continue
            if found.toc is not None and hashlib.sha256(r.head.lock_bytes).hexdigest() != found.toc.lock_sha256:
                report.problems.append(f"{part}: its lock is not the one {found.toc.path} names")
                continue
            for blob in r.blobs():
                key = blob.digest
                progress.start(key, key, blob.size)
                actual = hash_chunks(blob.chunks, _chunk_advancer(progress, key))
                ok = actual == blob.digest
                progress.finish(key, ok, "" if ok else f"hashes to {actual}")
                report.blobs += 1
                report.bytes += blob.size
                if not ok:
                    report.problems.append(f"blob {blob.digest}: content hashes to {actual} (corrupt)")
                if blob.digest not in expected:
                    report.problems.append(f"blob {blob.digest}: not listed in the lock")
                elif expected[blob.digest] != blob.size:
                    report.problems.append(f"blob {blob.digest}: size {blob.size}, lock says {expected[blob.digest]}")
                seen.add(blob.digest)
            if part in toc_sha and r.file_sha256() != toc_sha[part]:
                report.problems.append(f"{part.name}: sha256 does not match the table of contents; re-send this part")
    progress.end()
    if first is not None:
        missing = [d for d in expected if d not in seen]
        report.missing = len(missing)
        report.differential = first.since is not None
        if not report.differential:
            report.problems += [f"blob {d}: listed in the lock but missing from the archive" for d in missing]
    return report

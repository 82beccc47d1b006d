"""Reading archives: the lock first, then each blob member checked for safety; verify and TOC checks."""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard

from ..errors import ArchiveError, FormatError, GapcacheError, UnsafeMember, VerifyError
from ..lock import Lock, parse_lock
from ..progress import NullProgress, Progress
from ..store import CHUNK, hash_chunks, hash_file, read_range
from .format import ARCHIVE_FORMAT, BLOB_MEMBER, LOCK_MEMBER, MAX_LOCK_BYTES, PAX_FORMAT, PAX_SINCE, ZSTD_MAGIC


def _chunk_advancer(progress: Progress, key: str) -> Callable[[bytes], None]:
    return lambda chunk: progress.advance(key, len(chunk))


# ---- reading ------------------------------------------------------------------------------------


@dataclass
class ArchiveHead:
    """The lock of an archive (its first member) and what its PAX header said."""

    path: Path
    lock: Lock
    lock_bytes: bytes
    since: str | None
    compressed: bool


@dataclass
class BlobMember:
    digest: str
    size: int
    offset: int | None  # data offset in the file (None when the archive is compressed)
    chunks: Iterator[bytes] = field(repr=False)


def _is_zstd(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == ZSTD_MAGIC


def _check_member(archive: str, ti: tarfile.TarInfo) -> str:
    """Return the blob digest of a safe member; raise UnsafeMember for anything else."""
    name = ti.name
    if name.startswith("/") or name.startswith("\\"):
        raise UnsafeMember(archive, name, "absolute path")
    if ".." in name.replace("\\", "/").split("/"):
        raise UnsafeMember(archive, name, "path traversal ('..')")
    if ti.issym() or ti.islnk():
        raise UnsafeMember(archive, name, f"link to {ti.linkname!r}")
    if ti.ischr() or ti.isblk() or ti.isfifo():
        raise UnsafeMember(archive, name, "device or fifo")
    if ti.isdir():
        raise UnsafeMember(archive, name, "directory entries are not part of a gapcache archive")
    if not ti.isreg() or ti.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise UnsafeMember(archive, name, f"unsupported member type {ti.type!r}")
    m = BLOB_MEMBER.match(name)
    if not m:
        raise UnsafeMember(archive, name, "not a member of a gapcache archive (only the lock and blobs/sha256/<hex>)")
    return "sha256:" + m.group(1)


class ArchiveReader:
    """Streams one archive (or one part): the lock first, then each blob with its bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.compressed = _is_zstd(path)
        self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._tar: tarfile.TarFile
        try:
            if self.compressed:
                dctx = zstandard.ZstdDecompressor()
                self._stream = dctx.stream_reader(self._raw, read_size=CHUNK)
                self._tar = tarfile.open(fileobj=self._stream, mode="r|", bufsize=CHUNK)  # noqa: SIM115
            else:
                self._tar = tarfile.open(fileobj=self._raw, mode="r:")  # noqa: SIM115
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            self.close()
            raise ArchiveError(f"{path}: not a readable tar archive: {exc}") from exc
        self.head = self._read_head()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self) -> tarfile.TarInfo | None:
        try:
            return self._tar.next()
        except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
            raise ArchiveError(f"{self.path}: damaged archive: {exc}") from exc

    def _read_head(self) -> ArchiveHead:
        ti = self._next()
        if ti is None or ti.name != LOCK_MEMBER or not ti.isreg():
            self.close()
            raise ArchiveError(f"{self.path}: not a gapcache archive (first member is not {LOCK_MEMBER})")
        fmt = ti.pax_headers.get(PAX_FORMAT)
        if fmt is not None and (not fmt.isdigit() or int(fmt) > ARCHIVE_FORMAT):
            self.close()
            raise FormatError(
                f"{self.path}: archive format {fmt} is newer than this gapcache reads "
                f"({ARCHIVE_FORMAT}); upgrade gapcache"
            )
        if ti.size > MAX_LOCK_BYTES:
            self.close()
            raise ArchiveError(f"{self.path}: lock member is implausibly large ({ti.size} bytes)")
        data = b"".join(self._member_chunks(ti))
        if len(data) != ti.size:
            raise ArchiveError(f"{self.path}: truncated lock member")
        lock = parse_lock(data, f"{self.path}:{LOCK_MEMBER}")
        return ArchiveHead(self.path, lock, data, ti.pax_headers.get(PAX_SINCE), self.compressed)

    def _member_chunks(self, ti: tarfile.TarInfo) -> Iterator[bytes]:
        left = ti.size
        if self.compressed:
            f = self._tar.extractfile(ti)
            if f is None:
                return
            while left:
                chunk = f.read(min(CHUNK, left))
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
        """Each blob member, checked for safety; consume ``chunks`` before taking the next."""
        seen: set[str] = set()
        archive = str(self.path)
        while True:
            ti = self._next()
            if ti is None:
                return
            digest = _check_member(archive, ti)
            if digest in seen:
                raise UnsafeMember(archive, ti.name, "appears twice")
            seen.add(digest)
            yield BlobMember(digest, ti.size, None if self.compressed else ti.offset_data, self._member_chunks(ti))


def read_head(path: Path) -> ArchiveHead:
    try:
        with ArchiveReader(path) as r:
            return r.head
    except FileNotFoundError as exc:
        raise GapcacheError(f"{path}: no such archive") from exc


def resolve_parts(paths: list[Path]) -> list[Path]:
    """Expand a TOC file into its parts (checking sizes); plain archive paths pass through."""
    out: list[Path] = []
    for p in paths:
        if p.name.endswith(".toc.json"):
            try:
                toc = json.loads(p.read_text())
                for part in toc["parts"]:
                    name = str(part["name"])
                    if "/" in name or name.startswith("."):
                        raise ArchiveError(f"{p}: bad part name {name!r}")
                    out.append(p.with_name(name))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ArchiveError(f"{p}: unreadable table of contents: {exc}") from exc
        else:
            out.append(p)
    return out


def verify_toc(toc: Path) -> list[str]:
    """Check every part named by a TOC against its size and sha256; returns problems."""
    problems = []
    doc = json.loads(toc.read_text())
    for part in doc["parts"]:
        p = toc.with_name(part["name"])
        if not p.exists():
            problems.append(f"{p.name}: missing")
            continue
        if p.stat().st_size != part["size"]:
            problems.append(f"{p.name}: size {p.stat().st_size}, expected {part['size']}")
            continue
        if "sha256" in part and hash_file(p).removeprefix("sha256:") != part["sha256"]:
            problems.append(f"{p.name}: sha256 does not match the table of contents; re-send this part")
    return problems


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
    """Re-hash every blob of an archive (all its parts) against its name and the lock."""
    progress = progress or NullProgress()
    report = VerifyReport()
    parts = resolve_parts(paths)
    for p in paths:
        if p.name.endswith(".toc.json"):
            report.problems += verify_toc(p)
    if report.problems:
        return report
    first: ArchiveHead | None = None
    seen: set[str] = set()
    for part in parts:
        with ArchiveReader(part) as r:
            if first is None:
                first = r.head
                expected = first.lock.blobs()
                progress.begin("verify", len(expected), sum(expected.values()))
            elif r.head.lock_bytes != first.lock_bytes:
                report.problems.append(f"{part}: carries a different lock than {first.path}")
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
    progress.end()
    if first is not None:
        missing = [d for d in first.lock.blobs() if d not in seen]
        report.missing = len(missing)
        report.differential = first.since is not None
        if not report.differential:
            report.problems += [f"blob {d}: listed in the lock but missing from the archive" for d in missing]
    return report

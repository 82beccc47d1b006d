"""The archive: one POSIX (PAX) tar carrying the lock first, then every blob sorted by digest.

    gapcache.lock.json            (PAX header GAPCACHE.format=1; GAPCACHE.since=<sha256> if differential)
    blobs/sha256/<hex>            sorted, each once
    …

Members have fixed owner (0/0, no names), mode 0644 and mtime 0, so the same lock and store
give the same archive bytes. Blob data is copied by the kernel (``copy_file_range``), never
through Python buffers. ``--split-size`` writes self-contained parts, each a complete tar
whose first member is the same lock, and ``ARCHIVE.toc.json`` with every part's size and sha256.
``--since OLD.lock`` leaves out blobs the far side already has. ``--compress zstd`` compresses
the whole stream (multi-threaded).

Reading (``scan``) refuses anything but the lock and ``blobs/sha256/<hex>`` regular files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

import zstandard

from .errors import ArchiveError, DiskFull, FormatError, GapcacheError, UnsafeMember
from .lock import Lock, parse_lock
from .progress import NullProgress, Progress
from .store import CHUNK, Store, atomic_write, check_space

LOCK_MEMBER = "gapcache.lock.json"
ARCHIVE_FORMAT = 1
PAX_FORMAT = "GAPCACHE.format"
PAX_SINCE = "GAPCACHE.since"
BLOB_MEMBER = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
RECORD = 10240
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_LOCK_BYTES = 1 << 30


def _header(name: str, size: int, pax: dict[str, str] | None = None) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mode = 0o644
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    if pax:
        ti.pax_headers = dict(pax)
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % 512)


def member_overhead(size: int) -> int:
    """Bytes a blob member of ``size`` takes in the tar (header + data + padding)."""
    return 512 + size + (-size % 512)


class _TarWriter:
    """Writes tar members to a file descriptor (kernel copies) or to a compressing stream."""

    def __init__(self, path: Path, compress: str | None, threads: int = -1) -> None:
        self.path = path
        self.f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.zstd: zstandard.ZstdCompressionWriter | None = None
        if compress == "zstd":
            cctx = zstandard.ZstdCompressor(level=3, threads=threads)
            self.zstd = cctx.stream_writer(self.f, closefd=False)
        self.written = 0

    def _write(self, data: bytes) -> None:
        if self.zstd is not None:
            self.zstd.write(data)
        else:
            self.f.write(data)
        self.written += len(data)

    def add_bytes(self, name: str, data: bytes, pax: dict[str, str] | None = None) -> None:
        self._write(_header(name, len(data), pax))
        self._write(data)
        self._write(_pad(len(data)))

    def add_file(self, name: str, src: Path, size: int, progress: Callable[[int], None]) -> None:
        self._write(_header(name, size))
        with open(src, "rb") as fin:
            if os.fstat(fin.fileno()).st_size != size:
                raise ArchiveError(f"store blob {src} has the wrong size (expected {size}); run gapcache verify")
            if self.zstd is None:
                self.f.flush()
                out_fd = self.f.fileno()
                left = size
                while left:
                    try:
                        n = os.copy_file_range(fin.fileno(), out_fd, min(left, 1 << 30))
                    except OSError as exc:
                        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                            raise
                        n = os.sendfile(out_fd, fin.fileno(), None, min(left, 1 << 30))
                    if n == 0:
                        raise ArchiveError(f"store blob {src} ended early")
                    left -= n
                    progress(n)
                # keep our position in sync with the fd (the kernel advanced it)
                self.f.seek(0, os.SEEK_END)
                self.written += size
            else:
                left = size
                while left:
                    chunk = fin.read(min(CHUNK, left))
                    if not chunk:
                        raise ArchiveError(f"store blob {src} ended early")
                    self._write(chunk)
                    left -= len(chunk)
                    progress(len(chunk))
        self._write(_pad(size))

    def close(self) -> None:
        end = b"\0" * 1024
        end += b"\0" * (-(self.written + len(end)) % RECORD)
        self._write(end)
        if self.zstd is not None:
            self.zstd.flush(zstandard.FLUSH_FRAME)
            self.zstd.close()  # type: ignore[no-untyped-call]
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.f.close()
        self.path.unlink(missing_ok=True)


@dataclass
class PackResult:
    parts: list[Path]
    toc: Path | None
    blobs: int
    blob_bytes: int
    archive_bytes: int = 0
    lock_bytes: bytes = b""


def part_name(out: Path, index: int) -> Path:
    """``deepops.tar`` → ``deepops.part001.tar`` (``.tar.zst`` keeps its double suffix)."""
    name = out.name
    for suffix in (".tar.zst", ".tar"):
        if name.endswith(suffix):
            return out.with_name(f"{name[: -len(suffix)]}.part{index:03d}{suffix}")
    return out.with_name(f"{name}.part{index:03d}")


def toc_path(out: Path) -> Path:
    return (
        out.with_name(out.name + ".toc.json")
        if not out.name.endswith(".tar")
        else out.with_name(out.name[: -len(".tar")] + ".toc.json")
    )


def lock_path_beside(out: Path) -> Path:
    return out.with_name(out.name + ".lock.json")


def pack(
    lock: Lock,
    store: Store,
    out: Path,
    *,
    split_size: int | None = None,
    since: Lock | None = None,
    compress: str | None = None,
    progress: Progress | None = None,
) -> PackResult:
    """Write the archive for ``lock`` from ``store`` to ``out`` (all or nothing)."""
    progress = progress or NullProgress()
    lock_bytes = lock.to_bytes()
    blobs = lock.blobs()
    if since is not None:
        have = set(since.blobs())
        blobs = {d: s for d, s in blobs.items() if d not in have}
    for digest, size in blobs.items():
        if not store.has(digest, size):
            raise ArchiveError(f"blob {digest} ({size} bytes) is not in the store {store.root}; build first")
    lock_pax = {PAX_FORMAT: str(ARCHIVE_FORMAT)}
    if since is not None:
        lock_pax[PAX_SINCE] = since.sha256()
    lock_member = member_overhead(len(lock_bytes)) + 512
    estimate = sum(member_overhead(s) for s in blobs.values())
    n_parts_guess = 1 if not split_size else max(1, estimate // split_size + 1)
    needed = estimate + lock_member * n_parts_guess + RECORD * n_parts_guess
    if compress is None:
        check_space(out.parent, needed)
    else:
        check_space(out.parent, needed // 2)  # a guess; ENOSPC while writing is still caught

    # Plan parts: whole blobs per part, each part a complete tar starting with the lock.
    plan: list[list[tuple[str, int]]] = [[]]
    used = lock_member
    for digest, size in blobs.items():
        cost = member_overhead(size)
        if split_size and plan[-1] and used + cost > split_size:
            plan.append([])
            used = lock_member
        plan[-1].append((digest, size))
        used += cost
    names = [out] if len(plan) == 1 and not split_size else [part_name(out, i + 1) for i in range(len(plan))]
    tmps = [n.with_name(f".{n.name}.tmp-{os.getpid()}") for n in names]
    writers: list[_TarWriter] = []
    progress.begin("pack", len(blobs), sum(blobs.values()))
    try:
        for part_blobs, tmp in zip(plan, tmps, strict=True):
            w = _TarWriter(tmp, compress)
            writers.append(w)
            w.add_bytes(LOCK_MEMBER, lock_bytes, lock_pax)
            for digest, size in part_blobs:
                hexd = digest[7:]
                key = f"blobs/sha256/{hexd}"
                progress.start(key, key, size)
                w.add_file(key, store.path(digest), size, _advancer(progress, key))
                progress.finish(key, True)
            w.close()
        parts_info: list[dict[str, str | int]] = []
        for tmp, name in zip(tmps, names, strict=True):
            info: dict[str, str | int] = {"name": name.name, "size": tmp.stat().st_size}
            if split_size:
                info["sha256"] = _sha256_file(tmp)
            parts_info.append(info)
        for tmp, name in zip(tmps, names, strict=True):
            os.replace(tmp, name)
    except OSError as exc:
        for w in writers:
            w.abort()
        if exc.errno == errno.ENOSPC:
            raise DiskFull(str(out.parent)) from exc
        raise
    except BaseException:
        for w in writers:
            w.abort()
        raise
    finally:
        progress.end()
    toc = None
    if split_size:
        toc = toc_path(out)
        doc = {"format": ARCHIVE_FORMAT, "lock_sha256": hashlib.sha256(lock_bytes).hexdigest(), "parts": parts_info}
        atomic_write(toc, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    return PackResult(
        parts=names,
        toc=toc,
        blobs=len(blobs),
        blob_bytes=sum(blobs.values()),
        archive_bytes=sum(int(p["size"]) for p in parts_info),
        lock_bytes=lock_bytes,
    )


def _advancer(progress: Progress, key: str) -> Callable[[int], None]:
    return lambda n: progress.advance(key, n)


def _chunk_advancer(progress: Progress, key: str) -> Callable[[bytes], None]:
    return lambda chunk: progress.advance(key, len(chunk))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


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
            fd = self._raw.fileno()
            pos = ti.offset_data
            while left:
                chunk = os.pread(fd, min(CHUNK, left), pos)
                if not chunk:
                    raise ArchiveError(f"{self.path}: member {ti.name} is truncated")
                left -= len(chunk)
                pos += len(chunk)
                yield chunk

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
        if "sha256" in part and _sha256_file(p) != part["sha256"]:
            problems.append(f"{p.name}: sha256 does not match the table of contents; re-send this part")
    return problems


def hash_chunks(chunks: Iterator[bytes], sink: Callable[[bytes], object] | None = None) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
        if sink is not None:
            sink(c)
    return "sha256:" + h.hexdigest()


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

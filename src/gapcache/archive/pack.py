"""Writing archives: one tar (or split parts with a TOC, or a zstd stream), blobs copied by the kernel."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from ..errors import ArchiveError, DiskFull
from ..lock import Lock
from ..progress import NullProgress, Progress
from ..store import CHUNK, Store, atomic_write, check_space, hash_file, remove_stale, try_lock
from .format import (
    ARCHIVE_FORMAT,
    INSTALL_MEMBER,
    LOCK_MEMBER,
    PAX_FORMAT,
    PAX_LOCK_SHA256,
    PAX_SINCE,
    RECORD,
    SIG_MEMBER,
    bootstrap_members,
    install_path_beside,
    member_overhead,
    part_name,
    tar_header,
    tar_pad,
    toc_path,
)


class _TarWriter:
    """Writes tar members to a file descriptor (kernel copies) or to a compressing stream."""

    def __init__(self, path: Path, compress: str | None, threads: int = -1) -> None:
        self.path = path
        self.f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        try_lock(self.f.fileno())  # held while written: a later run removes it only once we are gone
        self.zstd: zstandard.ZstdCompressionWriter | None = None
        if compress == "zstd":
            # the frame checksum: damage anywhere in the stream is refused when it is read
            cctx = zstandard.ZstdCompressor(level=3, threads=threads, write_checksum=True)
            self.zstd = cctx.stream_writer(self.f, closefd=False)
        self.written = 0

    def _write(self, data: bytes) -> None:
        if self.zstd is not None:
            self.zstd.write(data)
        else:
            self.f.write(data)
        self.written += len(data)

    def add_bytes(self, name: str, data: bytes, pax: dict[str, str] | None = None) -> None:
        self._write(tar_header(name, len(data), pax))
        self._write(data)
        self._write(tar_pad(len(data)))

    def add_file(self, name: str, src: Path, size: int, progress: Callable[[int], None]) -> None:
        self._write(tar_header(name, size))
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
        self._write(tar_pad(size))

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
    bootstrap: int = 0  # bootstrap members (install.sh, bootstrap/…) written under their own names
    installer: Path | None = None  # install.sh written beside a compressed or split archive


def pack(
    lock: Lock,
    store: Store,
    out: Path,
    *,
    split_size: int | None = None,
    since: Lock | None = None,
    compress: str | None = None,
    progress: Progress | None = None,
    signature: bytes | None = None,
) -> PackResult:
    """Write the archive for ``lock`` from ``store`` to ``out`` (all or nothing); ``signature`` (a
    ``gapcache.lock.json.sig`` document) goes right after the lock in every part.

    Bootstrap artifacts (``install.sh``, ``bootstrap/<file>``) follow it in the first part under their
    own names, once (not again as ``blobs/sha256/…``); a differential archive leaves out those the far
    side has, like any blob."""
    progress = progress or NullProgress()
    lock_bytes = lock.to_bytes()
    blobs = lock.blobs()
    boot = bootstrap_members(lock)
    if since is not None:
        have = set(since.blobs())
        blobs = {d: s for d, s in blobs.items() if d not in have}
        boot = {n: ds for n, ds in boot.items() if ds[0] not in have}
    boot_digests = {d for d, _ in boot.values()}
    blobs = {d: s for d, s in blobs.items() if d not in boot_digests}
    for digest, size in [*blobs.items(), *boot.values()]:
        if not store.has(digest, size):
            raise ArchiveError(f"blob {digest} ({size} bytes) is not in the store {store.root}; build first")
    lock_pax = {PAX_FORMAT: str(ARCHIVE_FORMAT)}
    if since is not None:
        lock_pax[PAX_SINCE] = since.sha256()
    # last: a damaged record before it drops it from the parsed header, and a missing digest is refused
    lock_pax[PAX_LOCK_SHA256] = hashlib.sha256(lock_bytes).hexdigest()
    lock_member = member_overhead(len(lock_bytes)) + 512
    if signature is not None:
        lock_member += member_overhead(len(signature))
    boot_cost = sum(member_overhead(s) for _, s in boot.values())
    estimate = sum(member_overhead(s) for s in blobs.values()) + boot_cost
    n_parts_guess = 1 if not split_size else max(1, estimate // split_size + 1)
    needed = estimate + lock_member * n_parts_guess + RECORD * n_parts_guess
    if compress is None:
        check_space(out.parent, needed)
    else:
        check_space(out.parent, needed // 2)  # a guess; ENOSPC while writing is still caught

    # Plan parts: whole blobs per part, each part a complete tar starting with the lock.
    plan: list[list[tuple[str, int]]] = [[]]
    used = lock_member + boot_cost
    for digest, size in blobs.items():
        cost = member_overhead(size)
        if split_size and (plan[-1] or (len(plan) == 1 and boot)) and used + cost > split_size:
            plan.append([])
            used = lock_member
        plan[-1].append((digest, size))
        used += cost
    names = [out] if len(plan) == 1 and not split_size else [part_name(out, i + 1) for i in range(len(plan))]
    remove_stale_parts(out)
    tmps = [n.with_name(f".{n.name}.tmp-{os.getpid()}") for n in names]
    writers: list[_TarWriter] = []
    progress.begin("pack", len(blobs) + len(boot), sum(blobs.values()) + sum(s for _, s in boot.values()))
    try:
        for index, (part_blobs, tmp) in enumerate(zip(plan, tmps, strict=True)):
            w = _TarWriter(tmp, compress)
            writers.append(w)
            w.add_bytes(LOCK_MEMBER, lock_bytes, lock_pax)
            if signature is not None:
                w.add_bytes(SIG_MEMBER, signature)
            for member, (digest, size) in boot.items() if index == 0 else ():
                progress.start(member, member, size)
                w.add_file(member, store.path(digest), size, _advancer(progress, member))
                progress.finish(member, True)
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
                info["sha256"] = hash_file(tmp).removeprefix("sha256:")
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
    installer = None
    if INSTALL_MEMBER in boot and (compress is not None or names != [out]):
        installer = install_path_beside(out)  # `tar -xf` cannot take it from a zstd stream without zstd
        atomic_write(installer, store.path(boot[INSTALL_MEMBER][0]).read_bytes())
        os.chmod(installer, 0o755)
    return PackResult(
        parts=names,
        toc=toc,
        blobs=len(blobs) + len(boot_digests),
        blob_bytes=sum(blobs.values()) + sum(dict(boot.values()).values()),
        archive_bytes=sum(int(p["size"]) for p in parts_info),
        lock_bytes=lock_bytes,
        bootstrap=len(boot),
        installer=installer,
    )


def remove_stale_parts(out: Path) -> list[Path]:
    """The ``.ARCHIVE.tmp-<pid>`` (and ``.ARCHIVE.partNNN.tar.tmp-<pid>``) files of a pack that was
    killed: removed once that process is gone."""
    stem, suffix = out.name, ""
    for s in (".tar.zst", ".tar"):
        if stem.endswith(s):
            stem, suffix = stem[: -len(s)], s
            break
    pattern = rf"\.{re.escape(stem)}(?:\.part\d+)?{re.escape(suffix)}\.tmp-(?P<pid>\d+)"
    return remove_stale(out.parent, pattern) if out.parent.is_dir() else []


def _advancer(progress: Progress, key: str) -> Callable[[int], None]:
    return lambda n: progress.advance(key, n)

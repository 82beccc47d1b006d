"""Checks on an archive's members while it is read (archive/read.py): which members are safe, the
lock member's header, tar headers that say why they are damaged, a file hashed as it is read."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import IO, Any

from ..errors import ArchiveError, UnsafeMember
from ..store import CHUNK
from .format import BLOB_MEMBER, BOOTSTRAP_DIR, HEX64, INSTALL_MEMBER, PAX_KEYS, PAX_LOCK_SHA256, PAX_SINCE, ZSTD_MAGIC


def _is_zstd(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == ZSTD_MAGIC


def _check_member(archive: str, ti: tarfile.TarInfo, boot: dict[str, tuple[str, int]] | None = None) -> str:
    """Return the blob digest of a safe member; raise UnsafeMember for anything else. ``boot``: the
    lock's bootstrap artifacts (``install.sh``, ``bootstrap/<file>``), accepted under their names."""
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
    if boot is not None and name in boot:
        return boot[name][0]
    if name == INSTALL_MEMBER or name.startswith(BOOTSTRAP_DIR):
        raise UnsafeMember(archive, name, "a bootstrap file the lock does not list")
    m = BLOB_MEMBER.match(name)
    if not m:
        raise UnsafeMember(
            archive,
            name,
            "not a member of a gapcache archive (only the lock, its bootstrap files and blobs/sha256/<hex>)",
        )
    return "sha256:" + m.group(1)


class _Header(tarfile.TarInfo):
    """A TarInfo that remembers why reading a header failed: tarfile takes a damaged header after
    the first member for the end of the archive, and the loader would then only see blobs missing."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> _Header:
        fileobj: Any = tf.fileobj
        offset = tf.offset
        buf = fileobj.read(512)
        try:
            obj = cls.frombuf(buf, tf.encoding or "utf-8", tf.errors)
            obj.offset = fileobj.tell() - 512
            return obj._proc_member(tf)  # type: ignore[attr-defined,no-any-return]
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]
            raise
        except tarfile.HeaderError as exc:
            tf._gapcache_damage = (offset, buf, exc)  # type: ignore[attr-defined]
            raise


def _header_name(buf: bytes) -> str:
    name = buf[:100].split(b"\0", 1)[0].decode("ascii", "replace")
    return name if name.isprintable() and name else ""


class _HashingFile:
    """A file read front to back while everything read is hashed (a TOC's part sha256, one pass)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def hexdigest(self) -> str:
        while self.read(CHUNK):
            pass
        return self.h.hexdigest()


def _check_lock_header(path: Path, ti: tarfile.TarInfo, data: bytes) -> None:
    """The lock member's integrity: a gapcache archive gives the lock's sha256 in its PAX header.

    A lock member with a PAX header must carry that digest and nothing unknown (a damaged record
    drops the records after it, or turns a key into an unknown one); only a hand-made lock member
    with no PAX header at all has no digest to check.
    """
    pax = ti.pax_headers
    extended = ti.offset_data - ti.offset > 512  # an extended header block preceded the member
    unknown = sorted(k for k in pax if k not in PAX_KEYS)
    if unknown:
        raise ArchiveError(f"{path}: the lock member's header is damaged (unknown field {unknown[0]!r})")
    since = pax.get(PAX_SINCE)
    if since is not None and not HEX64.match(since):
        raise ArchiveError(f"{path}: the lock member's header is damaged ({PAX_SINCE}={since!r})")
    claimed = pax.get(PAX_LOCK_SHA256)
    if claimed is None:
        if extended:
            raise ArchiveError(
                f"{path}: the lock member carries no {PAX_LOCK_SHA256} (its header is damaged, or an older "
                "gapcache wrote it: pack it again); nothing was loaded"
            )
        return
    actual = hashlib.sha256(data).hexdigest()
    if claimed != actual:
        raise ArchiveError(
            f"{path}: the lock member is damaged (its sha256 is {actual}, its header says {claimed}); "
            "nothing was loaded: copy the archive again"
        )

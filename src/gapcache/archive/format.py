"""The archive format: member names, PAX headers, and the names of parts, TOC and lock files."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..lock import Lock

LOCK_MEMBER = "gapcache.lock.json"
SIG_MEMBER = "gapcache.lock.json.sig"  # right after the lock when signed (signing.py)
MAX_SIG_BYTES = 64 << 10
ARCHIVE_FORMAT = 1
PAX_FORMAT = "GAPCACHE.format"
PAX_SINCE = "GAPCACHE.since"
PAX_LOCK_SHA256 = "GAPCACHE.lock_sha256"  # the lock member's own digest: transfer damage to it is refused
# what a lock member's PAX header may hold (POSIX keys tarfile may write, and ours); anything else is damage
PAX_KEYS = {
    PAX_FORMAT,
    PAX_SINCE,
    PAX_LOCK_SHA256,
    *("path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime"),
    *("charset", "comment", "hdrcharset"),
}
HEX64 = re.compile(r"^[0-9a-f]{64}$")
BLOB_MEMBER = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
# bootstrap members (kinds/bootstrap): artifacts of the lock stored under their own path, right after the
# lock (and signature) in the first part, so `tar -xf ARCHIVE install.sh` and `bootstrap/` need no gapcache
INSTALL_MEMBER = "install.sh"
BOOTSTRAP_DIR = "bootstrap/"
RECORD = 10240
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_LOCK_BYTES = 1 << 30


def tar_header(name: str, size: int, pax: dict[str, str] | None = None) -> bytes:
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


def tar_pad(size: int) -> bytes:
    return b"\0" * (-size % 512)


def member_overhead(size: int) -> int:
    """Bytes a blob member of ``size`` takes in the tar (header + data + padding)."""
    return 512 + size + (-size % 512)


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


def install_path_beside(out: Path) -> Path:
    """``deepops.tar.zst`` → ``deepops.tar.zst.install.sh``: the installer written beside a compressed
    or split archive (``tar -xf`` of a zstd stream needs zstd; a split archive's name is not a file)."""
    return out.with_name(out.name + ".install.sh")


def is_bootstrap_path(path: str) -> bool:
    """An artifact path stored in the archive under its own name (``install.sh``, ``bootstrap/<file>``)."""
    return path == INSTALL_MEMBER or (path.startswith(BOOTSTRAP_DIR) and "/" not in path[len(BOOTSTRAP_DIR) :])


def bootstrap_members(lock: Lock) -> dict[str, tuple[str, int]]:
    """``{member name: (digest, size)}`` of the lock's bootstrap artifacts, in archive order (install.sh first)."""
    found: dict[str, tuple[str, int]] = {}
    for a in lock.artifacts():
        if is_bootstrap_path(a.path) and a.digest is not None and a.size is not None:
            found[a.path] = (a.digest, a.size)
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != INSTALL_MEMBER, kv[0])))

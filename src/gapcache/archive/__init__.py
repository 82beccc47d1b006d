"""The archive: one POSIX (PAX) tar carrying the lock first, then every blob sorted by digest.

    gapcache.lock.json            (PAX header GAPCACHE.format=1; GAPCACHE.since=<sha256> if differential)
    gapcache.lock.json.sig        when signed
    install.sh, bootstrap/<file>  gapcache itself (kinds/bootstrap): lock artifacts under their own names,
                                  first part only, not repeated as blobs; install.sh also beside a
                                  compressed or split archive (ARCHIVE.install.sh)
    blobs/sha256/<hex>            sorted, each once
    …

Members have fixed owner (0/0, no names), mode 0644 and mtime 0, so the same lock and store
give the same archive bytes. Blob data is copied by the kernel (``copy_file_range``), never
through Python buffers. ``--split-size`` writes self-contained parts, each a complete tar
whose first member is the same lock, and ``ARCHIVE.toc.json`` with every part's size and sha256.
``--since OLD.lock`` leaves out blobs the far side already has. ``--compress zstd`` compresses
the whole stream (multi-threaded).

Reading refuses anything but the lock (and signature), the bootstrap files the lock lists (before the
blobs; their bytes checked against the lock's digest) and ``blobs/sha256/<hex>`` regular files. The lock member's
PAX header carries the lock's sha256 (``GAPCACHE.lock_sha256``), checked on every read; a TOC
carries it too, with each part's size and sha256, all checked on load.
"""

from .format import ARCHIVE_FORMAT, LOCK_MEMBER, bootstrap_members, lock_path_beside, part_name, toc_path
from .pack import PackResult, pack
from .read import ArchiveHead, ArchiveReader, BlobMember, VerifyReport, read_head, verify_archive
from .toc import ArchiveSet, Toc, archive_set, read_toc, resolve_parts, verify_toc

__all__ = [
    "ARCHIVE_FORMAT",
    "LOCK_MEMBER",
    "ArchiveHead",
    "ArchiveReader",
    "ArchiveSet",
    "BlobMember",
    "PackResult",
    "Toc",
    "VerifyReport",
    "archive_set",
    "bootstrap_members",
    "lock_path_beside",
    "pack",
    "part_name",
    "read_head",
    "read_toc",
    "resolve_parts",
    "toc_path",
    "verify_archive",
    "verify_toc",
]

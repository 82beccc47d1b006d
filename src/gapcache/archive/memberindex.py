"""The member index of an archive served in place: where each blob's bytes lie in its parts.

``serve --archive`` needs ``(part, data offset, size)`` for every blob. Reading every member
header of a 100,000-blob archive takes seconds, so the result is kept beside the archive as
``ARCHIVE.index`` (for a split archive, beside its first part), written atomically; where that
directory is not writable, under ``$XDG_CACHE_HOME/gapcache/index/``; failing that, not at all.

The index is a cache, never trusted for content: it is used only while every part has the size,
mtime and inode it was built from and the archive carries the same lock (by sha256), and only if its
own checksum holds and it names every blob of the lock with the lock's size. Anything else (stale,
truncated, corrupt, another version's) is ignored and rebuilt. The bytes it points at are hashed
against their digest before the first of them is served (blobs.BlobIndex), as always.

Format: ``GAPCACHE-MEMBER-INDEX 1\\n``, one JSON line (lock sha256, parts with size, mtime_ns,
inode, record count), the records (``<32sIQQ``: digest, part number, data offset, size), then the
sha256 of everything before it.

Headers are read with a small scanner of the only layout gapcache writes (ustar headers, PAX
``x`` records, regular files named ``blobs/sha256/<hex>`` after the lock and its signature); on
anything else it hands over to :class:`~gapcache.archive.read.ArchiveReader`, which checks every
member and says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from ..errors import GapcacheError
from ..store import atomic_write
from .format import BLOB_MEMBER, BOOTSTRAP_DIR, INSTALL_MEMBER, LOCK_MEMBER, SIG_MEMBER
from .read import ArchiveReader

log = logging.getLogger("gapcache.archive")

MAGIC = b"GAPCACHE-MEMBER-INDEX 1\n"
RECORD = struct.Struct("<32sIQQ")
Member = tuple[str, int, int, int]  # digest, part number, data offset, size


class _Unusual(Exception):
    """Not the layout gapcache writes: let ArchiveReader read it (and explain)."""


def index_path(parts: list[Path]) -> Path:
    """``ARCHIVE.index`` beside the (first) part."""
    first = parts[0]
    return first.with_name(first.name + ".index")


def cache_path(parts: list[Path]) -> Path:
    """Where the index goes when the archive's directory is not writable."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = hashlib.sha256(str(parts[0].resolve()).encode()).hexdigest()[:32]
    return base / "gapcache" / "index" / f"{name}.index"


def _key(parts: list[Path], lock_sha256: str) -> dict[str, object]:
    out = []
    for p in parts:
        st = p.stat()
        out.append({"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino})
    return {"lock_sha256": lock_sha256, "parts": out}


def members(
    parts: list[Path],
    lock_sha256: str,
    expected: dict[str, int],
    *,
    cache: bool = True,
    boot: dict[str, tuple[str, int]] | None = None,
) -> list[Member]:
    """Every blob member of ``parts`` as ``(digest, part number, data offset, size)``: from the
    cached index when it is sound and current, else read from the headers (and cached). ``boot``:
    the lock's bootstrap files (``format.bootstrap_members``), members under their own names."""
    key = _key(parts, lock_sha256)
    if cache:
        for where in (index_path(parts), cache_path(parts)):
            found = read_index(where, key, expected)
            if found is not None:
                return found
    found = scan(parts, boot)
    if cache:
        write_index(parts, key, found)
    return found


def read_index(path: Path, key: dict[str, object], expected: dict[str, int]) -> list[Member] | None:
    """The records of the index at ``path``, or None when missing, stale, damaged or incomplete."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    body, trailer = data[:-32], data[-32:]
    if not data.startswith(MAGIC) or hashlib.sha256(body).digest() != trailer:
        log.info("%s: damaged member index, reading the archive's headers again", path)
        return None
    line_end = body.find(b"\n", len(MAGIC))
    try:
        head = json.loads(body[len(MAGIC) : line_end])
        count = int(head.pop("count"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if head != key:
        log.info("%s: the archive changed since its member index was written; reading it again", path)
        return None
    records = memoryview(body)[line_end + 1 :]
    if len(records) != count * RECORD.size:
        return None
    out: list[Member] = []
    nparts = len(key["parts"])  # type: ignore[arg-type]
    for raw, part, offset, size in RECORD.iter_unpack(records):
        digest = "sha256:" + raw.hex()
        if part >= nparts or expected.get(digest, -1) != size:
            return None
        out.append((digest, part, offset, size))
    if len({m[0] for m in out}) != len(expected) or len(out) != len(expected):
        return None  # the lock's blobs, each once (a differential archive is not served in place)
    return out


def write_index(parts: list[Path], key: dict[str, object], found: list[Member]) -> Path | None:
    """Write the index beside the archive, else in the cache directory; None if neither could be."""
    head = json.dumps({**key, "count": len(found)}, sort_keys=True).encode()
    body = b"".join([MAGIC, head, b"\n", *(RECORD.pack(bytes.fromhex(d[7:]), p, o, s) for d, p, o, s in found)])
    data = body + hashlib.sha256(body).digest()
    for where in (index_path(parts), cache_path(parts)):
        try:
            atomic_write(where, data)
            return where
        except (OSError, GapcacheError) as exc:
            log.debug("cannot write the member index %s: %s", where, exc)
    return None


def scan(parts: list[Path], boot: dict[str, tuple[str, int]] | None = None) -> list[Member]:
    """Read the member headers of every part (fast path, else ArchiveReader, which checks them).
    ``boot``: the lock's bootstrap files, accepted under their names before the blobs."""
    out: list[Member] = []
    for n, part in enumerate(parts):
        try:
            out += [(d, n, o, s) for d, o, s in _scan_fast(part, boot or {})]
        except _Unusual:
            with ArchiveReader(part, parse=False) as r:
                for blob in r.blobs():
                    assert blob.offset is not None
                    out.append((blob.digest, n, blob.offset, blob.size))
    return out


def iter_part(part: Path, boot: dict[str, tuple[str, int]] | None = None) -> Iterator[tuple[str, int, int]]:
    """``(digest, data offset, size)`` of each blob member of one part, as :func:`scan` reads them,
    one at a time (a load of 100,000 blobs holds no list of them). When the fast scanner meets
    anything unusual part-way, ArchiveReader reads the part from the start (checking every member)
    and the members already given are skipped — they must be the same ones."""
    given: list[str] = []
    try:
        for digest, offset, size in _scan_fast(part, boot or {}):
            yield digest, offset, size
            given.append(digest)
    except _Unusual:
        pass
    else:
        return
    with ArchiveReader(part, parse=False) as r:
        for n, blob in enumerate(r.blobs()):
            assert blob.offset is not None
            if n < len(given):
                if given[n] != blob.digest:
                    raise GapcacheError(f"{part}: member {n} read as {given[n]}, then as {blob.digest}")
                continue
            yield blob.digest, blob.offset, blob.size


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # base-256 (GNU, > 8 GiB)
        raise _Unusual("base-256 number")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _Unusual("bad number") from None


def _pax(data: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise _Unusual("bad PAX record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise _Unusual("bad PAX record") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise _Unusual("bad PAX record")
        k, _, v = record[:-1].partition(b"=")
        out[k] = v
        pos += length
    return out


_BLOCK = 64 * 1024  # read ahead: a 100,000-blob archive of small files has ~20 headers per block


def _scan_fast(part: Path, boot: dict[str, tuple[str, int]]) -> Iterator[tuple[str, int, int]]:
    """``(digest, data offset, size)`` of each blob member, reading only the headers (a block at a
    time: one ``pread`` per header was 100,000 system calls)."""
    fd = os.open(part, os.O_RDONLY)
    window, window_at = b"", 0

    def read(at: int, size: int) -> bytes:
        nonlocal window, window_at
        rel = at - window_at
        if rel < 0 or rel + size > len(window):
            window, window_at, rel = os.pread(fd, max(size, _BLOCK), at), at, 0
        return window[rel : rel + size]

    try:
        end = os.fstat(fd).st_size
        offset, pax, first = 0, {}, True  # type: int, dict[bytes, bytes], bool
        seen: set[str] = set()  # bootstrap members by name
        blobs: set[str] = set()  # blob members by digest (the strings yielded: no copy of each name kept)
        blobs_begun = False
        while True:
            buf = read(offset, 512)
            if len(buf) < 512:
                raise _Unusual("truncated")
            if buf == _ZERO_BLOCK:
                return
            chksum = _octal(buf[148:156])
            if chksum != sum(buf[:148]) + 256 + sum(buf[156:]):
                raise _Unusual("header checksum")
            size = _octal(buf[124:136])
            kind = buf[156:157]
            data_at = offset + 512
            if data_at + size > end:
                raise _Unusual("truncated")
            offset = data_at + size + (-size % 512)
            if kind == b"x":
                if pax or size > 1 << 20:
                    raise _Unusual("PAX header")
                pax = _pax(read(data_at, size))
                continue
            if kind not in (b"0", b"\0"):
                raise _Unusual(f"member type {kind!r}")
            name = buf[:100].split(b"\0", 1)[0]
            if buf[257:262] == b"ustar" and buf[345:346] != b"\0":
                name = buf[345:500].split(b"\0", 1)[0] + b"/" + name
            if b"path" in pax:
                name = pax[b"path"]
            if b"size" in pax:
                try:
                    size = int(pax[b"size"])
                except ValueError:
                    raise _Unusual("PAX size") from None
                offset = data_at + size + (-size % 512)
            unknown = set(pax) - {b"path", b"size", b"mtime", b"uid", b"gid", b"uname", b"gname"}
            pax = {}
            text = name.decode("utf-8", "replace")
            if first:
                if text != LOCK_MEMBER:
                    raise _Unusual("no lock first")
                first = False
                continue
            if text == SIG_MEMBER:
                continue
            if text == INSTALL_MEMBER or text.startswith(BOOTSTRAP_DIR):
                # the lock's own bootstrap files, before the blobs, each once, at the lock's size
                if blobs_begun or unknown or text in seen or boot.get(text, ("", -1))[1] != size:
                    raise _Unusual("a bootstrap member out of place")
                seen.add(text)
                yield boot[text][0], data_at, size
                continue
            blobs_begun = True
            m = BLOB_MEMBER.match(text)
            if m is None or unknown or data_at + size > end:
                raise _Unusual("not a blob member")
            digest = "sha256:" + m.group(1)
            if digest in blobs:
                raise _Unusual("a blob member twice")
            blobs.add(digest)
            yield digest, data_at, size
    finally:
        os.close(fd)


_ZERO_BLOCK = bytes(512)

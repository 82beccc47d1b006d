"""RPM packages: NEVRA and ``LICENSE`` from the package header, parsed in pure Python (the offline
host need not have ``rpm``).

File layout: a 96-byte lead; the signature header, padded to 8 bytes; the main header. A header is
magic ``8e ad e8 01``, 4 reserved bytes, the entry count and the data size (big-endian), then the
16-byte index entries ``(tag, type, offset, count)`` and the data store.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO

from .licenses import clean

LEAD = 96
MAGIC = b"\x8e\xad\xe8\x01"
MAX_HEADER = 64 << 20
NAME, VERSION, RELEASE, EPOCH, LICENSE, ARCH = 1000, 1001, 1002, 1003, 1014, 1022
STRING, INT32, I18NSTRING = 6, 4, 9


@dataclass
class RpmHeader:
    name: str | None
    epoch: int | None
    version: str | None
    release: str | None
    arch: str | None
    license: str | None

    @property
    def evr(self) -> str | None:
        if self.version is None:
            return None
        evr = f"{self.version}-{self.release}" if self.release else self.version
        return f"{self.epoch}:{evr}" if self.epoch else evr


def _read_header(f: IO[bytes]) -> tuple[list[tuple[int, int, int, int]], bytes] | None:
    head = f.read(16)
    if len(head) < 16 or head[:4] != MAGIC:
        return None
    count, size = struct.unpack(">II", head[8:16])
    if count * 16 + size > MAX_HEADER:
        return None
    index = f.read(count * 16)
    store = f.read(size)
    if len(index) < count * 16 or len(store) < size:
        return None
    entries = [struct.unpack(">iIiI", index[i * 16 : i * 16 + 16]) for i in range(count)]
    return [(t, ty, o, c) for t, ty, o, c in entries], store


def _string(store: bytes, offset: int) -> str | None:
    if not 0 <= offset < len(store):
        return None
    end = store.find(b"\0", offset)
    return store[offset : end if end >= 0 else len(store)].decode("utf-8", "replace")


def read_rpm_header(f: IO[bytes]) -> RpmHeader | None:
    """The main header's NEVRA and license, or None if this is not an RPM package."""
    lead = f.read(LEAD)
    if len(lead) < LEAD or lead[:4] != b"\xed\xab\xee\xdb":
        return None
    sig = _read_header(f)
    if sig is None:
        return None
    sig_size = 16 + len(sig[0]) * 16 + len(sig[1])
    f.read(-sig_size % 8)  # the signature header is padded to a multiple of 8
    main = _read_header(f)
    if main is None:
        return None
    entries, store = main
    values: dict[int, str | int] = {}
    for tag, typ, offset, _count in entries:
        if tag in (NAME, VERSION, RELEASE, LICENSE, ARCH) and typ in (STRING, I18NSTRING):
            s = _string(store, offset)
            if s is not None:
                values[tag] = s
        elif tag == EPOCH and typ == INT32 and 0 <= offset <= len(store) - 4:
            values[tag] = struct.unpack(">I", store[offset : offset + 4])[0]

    def text(tag: int) -> str | None:
        v = values.get(tag)
        return v if isinstance(v, str) else None

    epoch = values.get(EPOCH)
    return RpmHeader(
        name=text(NAME),
        epoch=epoch if isinstance(epoch, int) else None,
        version=text(VERSION),
        release=text(RELEASE),
        arch=text(ARCH),
        license=clean(text(LICENSE)),
    )

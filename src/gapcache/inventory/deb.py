"""Debian packages: name, version and architecture from ``control``; the license from the package's
machine-readable ``usr/share/doc/<package>/copyright`` (DEP-5: the ``License:`` of ``Files: *``).

A ``.deb`` is an ``ar`` archive: ``debian-binary``, ``control.tar.*``, ``data.tar.*`` (gz, xz, zst,
bz2 or none).
"""

from __future__ import annotations

import bz2
import email.parser
import gzip
import io
import lzma
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import zstandard

from .licenses import clean

MAX_CONTROL = 16 << 20
MAX_COPYRIGHT = 1 << 20


@dataclass
class DebInfo:
    name: str | None
    version: str | None
    arch: str | None
    license: str | None


def _members(f: IO[bytes]) -> Iterator[tuple[str, int, int]]:
    """``(name, data offset, size)`` of each ``ar`` member."""
    if f.read(8) != b"!<arch>\n":
        return
    pos = 8
    while True:
        f.seek(pos)
        hdr = f.read(60)
        if len(hdr) < 60 or hdr[58:60] != b"`\n":
            return
        name = hdr[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(hdr[48:58].decode("ascii").strip())
        except ValueError:
            return
        yield name, pos + 60, size
        pos += 60 + size + (size % 2)


def _decompressed(name: str, raw: IO[bytes]) -> Any:
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)
    if name.endswith(".xz"):
        return lzma.LZMAFile(raw)
    if name.endswith(".bz2"):
        return bz2.BZ2File(raw)
    if name.endswith(".zst"):
        return zstandard.ZstdDecompressor().stream_reader(raw)
    return raw


class _Window(io.RawIOBase):
    def __init__(self, f: IO[bytes], start: int, size: int) -> None:
        super().__init__()
        self.f, self.start, self.left = f, start, size
        f.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        data = self.f.read(n) if n else b""
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _tar_file(f: IO[bytes], member: tuple[str, int, int], wanted: set[str], limit: int) -> bytes | None:
    name, start, size = member
    stream = _decompressed(name, io.BufferedReader(_Window(f, start, size)))
    with tarfile.open(fileobj=stream, mode="r|") as tf:
        for ti in tf:
            if ti.name.lstrip("./") in wanted and ti.isfile() and ti.size <= limit:
                data = tf.extractfile(ti)
                return data.read() if data is not None else None
    return None


def dep5_license(text: str) -> str | None:
    """The ``License:`` short name of the ``Files: *`` paragraph of a DEP-5 copyright file."""
    if "Format:" not in text.split("\n\n", 1)[0]:
        return None
    for para in text.split("\n\n"):
        msg = email.parser.Parser().parsestr(para.strip() + "\n", headersonly=True)
        if (msg.get("Files") or "").strip() == "*" and msg.get("License"):
            return clean(str(msg["License"]).splitlines()[0])
    return None


def read_deb(f: IO[bytes]) -> DebInfo | None:
    members = list(_members(f))
    control = next((m for m in members if m[0].startswith("control.tar")), None)
    if control is None:
        return None
    try:
        raw = _tar_file(f, control, {"control"}, MAX_CONTROL)
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError):
        return None
    if raw is None:
        return None
    msg = email.parser.Parser().parsestr(raw.decode("utf-8", "replace"), headersonly=True)
    name = str(msg["Package"]) if msg.get("Package") else None
    info = DebInfo(name, msg.get("Version"), msg.get("Architecture"), None)
    data = next((m for m in members if m[0].startswith("data.tar")), None)
    if data is not None and name:
        try:
            text = _tar_file(f, data, {f"usr/share/doc/{name}/copyright"}, MAX_COPYRIGHT)
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError):
            text = None
        if text is not None:
            info.license = dep5_license(text.decode("utf-8", "replace"))
    return info

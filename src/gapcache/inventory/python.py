"""Python distributions: name, version and license from core metadata — the PEP 658 ``.metadata``
file beside a wheel, a wheel's ``*.dist-info/METADATA``, an sdist's ``PKG-INFO``."""

from __future__ import annotations

import email.parser
import tarfile
import zipfile
from dataclasses import dataclass
from typing import IO

from .licenses import clean, from_classifiers

MAX_METADATA = 4 << 20


@dataclass
class CoreMetadata:
    name: str | None
    version: str | None
    license: str | None


def parse_metadata(data: bytes) -> CoreMetadata:
    """``License-Expression`` (metadata 2.4), else a short ``License`` field, else the classifiers."""
    msg = email.parser.BytesHeaderParser().parsebytes(data)
    stated = clean(msg.get("License-Expression")) or clean(msg.get("License"))
    if stated is None:
        stated = from_classifiers([str(c) for c in msg.get_all("Classifier") or []])
    name, version = msg.get("Name"), msg.get("Version")
    return CoreMetadata(str(name) if name else None, str(version) if version else None, stated)


def wheel_metadata(f: IO[bytes]) -> bytes | None:
    try:
        with zipfile.ZipFile(f) as zf:
            names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if not names or zf.getinfo(names[0]).file_size > MAX_METADATA:
                return None
            return zf.read(names[0])
    except (zipfile.BadZipFile, OSError, KeyError):
        return None


def sdist_metadata(f: IO[bytes], filename: str) -> bytes | None:
    """``<name>-<version>/PKG-INFO`` of a ``.tar.gz`` or ``.zip`` sdist."""
    try:
        if filename.endswith(".zip"):
            with zipfile.ZipFile(f) as zf:
                names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/PKG-INFO")]
                return zf.read(names[0]) if names else None
        with tarfile.open(fileobj=f, mode="r:*") as tf:
            for ti in tf:
                if (
                    ti.isfile()
                    and ti.name.count("/") == 1
                    and ti.name.endswith("/PKG-INFO")
                    and ti.size <= MAX_METADATA
                ):
                    member = tf.extractfile(ti)
                    return member.read() if member is not None else None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, KeyError):
        return None
    return None

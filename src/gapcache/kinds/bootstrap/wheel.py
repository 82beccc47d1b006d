"""gapcache's own wheel, made from the installed package: the offline host installs it with pip.

Deterministic: the package directory ``gapcache/`` (no ``__pycache__``), then a dist-info with the
installed distribution's ``METADATA`` and ``entry_points.txt``, a ``WHEEL`` (``py3-none-any``) and the
``RECORD``; members sorted, fixed timestamps and modes, so the same installed gapcache always gives
the same bytes (and a ``build --locked`` finds the digest its lock pins).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import zipfile
from pathlib import Path

from ...errors import EnvironmentProblem

PACKAGE = Path(__file__).resolve().parents[2]  # the installed ``gapcache/`` directory
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can carry
WHEEL_TEXT = "Wheel-Version: 1.0\nGenerator: gapcache\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
SCRIPTS = "[console_scripts]\ngapcache = gapcache.cli:main\n"


def distribution() -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution("gapcache")
    except importlib.metadata.PackageNotFoundError as exc:
        raise EnvironmentProblem(
            "gapcache is not installed as a distribution (no metadata): install it with pip to build a bootstrap, "
            "or build with --no-bootstrap"
        ) from exc


def version() -> str:
    return distribution().version


def wheel_name(ver: str | None = None) -> str:
    return f"gapcache-{ver or version()}-py3-none-any.whl"


def package_files(root: Path = PACKAGE) -> list[tuple[str, bytes]]:
    """``(name in the wheel, bytes)`` of every file of the package, sorted, without bytecode."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or "__pycache__" in rel.parts or p.suffix in (".pyc", ".pyo"):
            continue
        out.append(("gapcache/" + rel.as_posix(), p.read_bytes()))
    return out


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(root: Path = PACKAGE) -> tuple[str, bytes]:
    """``(file name, wheel bytes)`` of the installed gapcache."""
    dist = distribution()
    ver = dist.version
    info = f"gapcache-{ver}.dist-info"
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")  # an .egg-info has the same fields
    if not metadata:
        raise EnvironmentProblem("gapcache's installed metadata has no METADATA file; reinstall gapcache")
    members = package_files(root)
    members += [
        (f"{info}/METADATA", metadata.encode()),
        (f"{info}/WHEEL", WHEEL_TEXT.encode()),
        (f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or SCRIPTS).encode()),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members)
    members.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zi = zipfile.ZipInfo(name, EPOCH)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3  # unix: the mode below counts
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, compresslevel=6)
    return wheel_name(ver), buf.getvalue()

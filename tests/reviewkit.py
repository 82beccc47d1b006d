"""Fixtures for the review tests (inventory, SBOM, diff, reproducible archives): packages made in
Python with the metadata a license is read from, a local PEP 503 index, OCI images with license
annotations and labels, and the SBOM schema validators (tests/data/sbom)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from registry import OCI_MANIFEST, _blob, layer

DATA = Path(__file__).parent / "data" / "sbom"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- Python distributions -------------------------------------------------------------------------------


def metadata(name: str, version: str, license_: str | None = None, classifiers: tuple[str, ...] = ()) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: test package {name}"]
    if license_ is not None:
        lines.append(f"License: {license_}")
    lines += [f"Classifier: {c}" for c in classifiers]
    return ("\n".join(lines) + "\n\n").encode()


def wheel(name: str, version: str, license_: str | None = None, classifiers: tuple[str, ...] = ()) -> bytes:
    """A pure-Python wheel (py3-none-any) with fixed zip times: the same arguments give the same bytes."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": metadata(name, version, license_, classifiers),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: gapcache-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},sha256={hashlib.sha256(d).hexdigest()},{len(d)}\n" for p, d in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, ZIP_TIME), data)
    return buf.getvalue()


def wheel_name(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def sdist(name: str, version: str, license_: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        data = metadata(name, version, license_)
        ti = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        ti.size, ti.mtime = len(data), 0
        tf.addfile(ti, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def write_index(root: Path, dists: dict[str, bytes]) -> None:
    """A PEP 503 simple index under ``root``: ``simple/<project>/index.html`` and ``files/``."""
    from packaging.utils import canonicalize_name, parse_wheel_filename

    (root / "files").mkdir(parents=True, exist_ok=True)
    links: dict[str, list[str]] = {}
    for filename, data in dists.items():
        (root / "files" / filename).write_bytes(data)
        project = str(canonicalize_name(parse_wheel_filename(filename)[0]))
        digest = hashlib.sha256(data).hexdigest()
        links.setdefault(project, []).append(f'<a href="../../files/{filename}#sha256={digest}">{filename}</a>')
    for project, anchors in links.items():
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<!DOCTYPE html><html><body>\n" + "\n".join(anchors) + "\n</body></html>\n")


# ---- RPM ------------------------------------------------------------------------------------------------


def _header(entries: list[tuple[int, int, bytes, int]]) -> bytes:
    index, store = b"", b""
    for tag, typ, data, count in entries:
        if typ == 4:  # INT32: aligned to 4
            store += b"\0" * (-len(store) % 4)
        index += struct.pack(">iIiI", tag, typ, len(store), count)
        store += data
    return b"\x8e\xad\xe8\x01\0\0\0\0" + struct.pack(">II", len(entries), len(store)) + index + store


def fake_rpm(name: str, version: str, release: str, arch: str, license_: str, epoch: int | None = None) -> bytes:
    """The lead and headers of an RPM package (enough for a header reader; no payload)."""
    lead = b"\xed\xab\xee\xdb\x03\x00\x00\x00\x00\x01" + name.encode()[:65].ljust(66, b"\0")
    lead += b"\x00\x01\x00\x05" + b"\0" * 16
    assert len(lead) == 96
    sig = _header([(1000, 7, b"\x01" * 20, 20)])  # a BIN "signature" entry, 20 bytes
    sig += b"\0" * (-len(sig) % 8)

    def s(v: str) -> bytes:
        return v.encode() + b"\0"

    entries = [(1000, 6, s(name), 1), (1001, 6, s(version), 1), (1002, 6, s(release), 1)]
    if epoch is not None:
        entries.append((1003, 4, struct.pack(">I", epoch), 1))
    entries += [(1014, 6, s(license_), 1), (1022, 6, s(arch), 1)]
    return lead + sig + _header(entries) + b"payload"


# ---- OCI images -----------------------------------------------------------------------------------------


def labelled_image(layout: Path, tag: str, licenses: str, version: str, in_config: bool = False) -> str:
    """An OCI layout with one amd64 image whose manifest annotations (or, with ``in_config``, whose
    config labels) say ``org.opencontainers.image.licenses``. Returns the manifest digest."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    lay = layer({f"{tag}.txt": f"{tag}\n".encode()})
    labels = {"org.opencontainers.image.licenses": licenses, "org.opencontainers.image.version": version}
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(lay))]},
        "config": {"Cmd": ["/hello"], **({"Labels": labels} if in_config else {})},
    }
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(layout, json.dumps(config, sort_keys=True).encode())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, lay)}],
    }  # fmt: skip
    if not in_config:
        manifest["annotations"] = labels
    data = json.dumps(manifest, sort_keys=True).encode()
    top = {"mediaType": OCI_MANIFEST, **_blob(layout, data), "annotations": {"org.opencontainers.image.ref.name": tag}}
    idx = layout / "index.json"
    existing = json.loads(idx.read_text())["manifests"] if idx.exists() else []
    idx.write_text(json.dumps({"schemaVersion": 2, "manifests": [*existing, top]}))
    return str(top["digest"])


# ---- SBOM schemas ---------------------------------------------------------------------------------------


def validate_spdx(doc: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads((DATA / "spdx-2.3.schema.json").read_text())
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)


def validate_cyclonedx(doc: dict[str, Any]) -> None:
    import jsonschema
    from referencing import Registry, Resource

    docs = [json.loads(p.read_text()) for p in sorted(DATA.glob("cyclonedx-*.schema.json"))]
    registry: Registry[Any] = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
    bom = next(d for d in docs if d["$id"].endswith("bom-1.5.schema.json"))
    jsonschema.Draft7Validator(bom, registry=registry, format_checker=jsonschema.FormatChecker()).validate(doc)


# ---- Debian ---------------------------------------------------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 0
            tf.addfile(ti, io.BytesIO(data))
    return raw.getvalue()


def fake_deb(name: str, version: str, arch: str, license_: str) -> bytes:
    """A .deb (ar: debian-binary, control.tar.gz, data.tar.xz) whose DEP-5 copyright states ``license_``."""
    import lzma

    control = f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: t <t@t>\nDescription: t\n"
    copyright_ = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: {name}\n\nFiles: *\nCopyright: 2024 Test\nLicense: {license_}\n"
    )
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", gzip.compress(_tar({"./control": control.encode()}), mtime=0)),
        ("data.tar.xz", lzma.compress(_tar({f"./usr/share/doc/{name}/copyright": copyright_.encode()}))),
    ]
    out = b"!<arch>\n"
    for member, data in members:
        out += f"{member:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out

"""Packages that are gzip'd tars with a metadata file inside: Helm charts (``<chart>/Chart.yaml``:
the license in its annotations) and Ansible Galaxy collections (``MANIFEST.json``:
``collection_info.license``)."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from typing import IO, Any

import yaml

from .licenses import clean

MAX_META = 4 << 20
CHART_LICENSE_KEYS = ("artifacthub.io/license", "licenses", "org.opencontainers.image.licenses")


@dataclass
class TarballMeta:
    name: str | None
    version: str | None
    license: str | None


def _first_member(f: IO[bytes], want: str, depth: int) -> bytes | None:
    try:
        with tarfile.open(fileobj=f, mode="r:*") as tf:
            for ti in tf:
                parts = ti.name.lstrip("./").split("/")
                if len(parts) == depth and parts[-1] == want and ti.isfile() and ti.size <= MAX_META:
                    member = tf.extractfile(ti)
                    return member.read() if member is not None else None
    except (tarfile.TarError, OSError, EOFError):
        return None
    return None


def chart_meta(f: IO[bytes]) -> TarballMeta | None:
    raw = _first_member(f, "Chart.yaml", 2)
    if raw is None:
        return None
    try:
        doc: Any = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    if not isinstance(doc, dict):
        return None
    raw_notes = doc.get("annotations")
    notes: dict[str, Any] = raw_notes if isinstance(raw_notes, dict) else {}
    license_ = next((clean(str(notes[k])) for k in CHART_LICENSE_KEYS if notes.get(k)), None)
    name, version = doc.get("name"), doc.get("version")
    return TarballMeta(str(name) if name else None, str(version) if version else None, license_)


def galaxy_meta(f: IO[bytes]) -> TarballMeta | None:
    raw = _first_member(f, "MANIFEST.json", 1)
    if raw is None:
        return None
    try:
        info = json.loads(raw).get("collection_info", {})
    except (ValueError, AttributeError):
        return None
    if not isinstance(info, dict):
        return None
    lic = info.get("license")
    stated = " OR ".join(str(x) for x in lic) if isinstance(lic, list) and lic else None
    name = f"{info.get('namespace')}.{info.get('name')}" if info.get("name") else None
    version = info.get("version")
    return TarballMeta(name, str(version) if version else None, clean(stated))

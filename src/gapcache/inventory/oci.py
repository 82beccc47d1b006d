"""Container images: the license an image states — ``org.opencontainers.image.licenses`` in the
index's or a manifest's annotations, or in the config's labels (``config.Labels``, where
``LABEL``/``--label`` put it; ``license``/``License`` labels as Red Hat images write them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .licenses import clean

LICENSES = "org.opencontainers.image.licenses"
VERSION = "org.opencontainers.image.version"
LABEL_KEYS = (LICENSES, "license", "License")


def _json(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _strings(d: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}


def image_facts(top: bytes | None, read: Callable[[str], bytes | None]) -> tuple[str | None, str | None]:
    """``(license, version)`` stated by an image: ``top`` is the index or manifest the tag names;
    ``read(digest)`` gives a child manifest or config (None when absent)."""
    docs = [_json(top)]
    first = docs[0]
    manifests = [first] if "manifests" not in first else []
    for desc in first.get("manifests", []) if isinstance(first.get("manifests"), list) else []:
        if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
            child = read(desc["digest"])
            if child is not None:
                manifests.append(_json(child))
    labels: list[dict[str, str]] = [_strings(first.get("annotations"))]
    for m in manifests:
        labels.append(_strings(m.get("annotations")))
        cfg = m.get("config")
        if isinstance(cfg, dict) and isinstance(cfg.get("digest"), str):
            conf = _json(read(cfg["digest"]))
            inner = conf.get("config")
            labels.append(_strings(inner.get("Labels") if isinstance(inner, dict) else None))
    license_ = version = None
    for found in labels:
        for key in LABEL_KEYS:
            license_ = license_ or clean(found.get(key))
        version = version or clean(found.get(VERSION))
    return license_, version

"""The review at the gap: what an archive (or a loaded root) holds — every item with its kind,
name, version, source, digest, size and the license its content states — as a table, JSON,
SPDX 2.3 or CycloneDX 1.5.

    with open_archive(Path("deepops.tar"), wanted_blobs) as src:
        inv = collect(src)
    print(table(inv)); json.dumps(to_spdx(inv))
"""

from __future__ import annotations

from pathlib import Path

from .collect import Component, Inventory, collect, wanted_blobs
from .render import table
from .sbom import to_cyclonedx, to_spdx
from .source import Source, open_archive, open_root

FORMATS = ("table", "json", "spdx", "cyclonedx")


def inventory(archive: Path | None = None, root: Path | None = None) -> Inventory:
    """The inventory of an archive (any part or its TOC) or of a loaded root."""
    if (archive is None) == (root is None):
        raise ValueError("give an archive or a root")
    src = open_archive(archive, wanted_blobs) if archive is not None else open_root(root)  # type: ignore[arg-type]
    with src:
        return collect(src)


def render(inv: Inventory, fmt: str) -> str:
    import json

    if fmt == "table":
        return table(inv)
    doc = inv.to_json() if fmt == "json" else to_spdx(inv) if fmt == "spdx" else to_cyclonedx(inv)
    return json.dumps(doc, indent=1, ensure_ascii=False)


__all__ = [
    "FORMATS",
    "Component",
    "Inventory",
    "Source",
    "collect",
    "inventory",
    "open_archive",
    "open_root",
    "render",
    "table",
    "to_cyclonedx",
    "to_spdx",
    "wanted_blobs",
]

"""The review commands: ``gapcache inventory`` (what an archive or root holds: table, JSON, SPDX,
CycloneDX) and ``gapcache diff`` (what changed between two locks or archives).

Hooked into the parser by ``cli.build_parser`` with ``cli_inventory.add_commands(sub)``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

INVENTORY_HELP = """\
List every item of an archive (or of a loaded root) with its kind, name, version, source URL,
sha256 digest, size and the license its content states (wheel/sdist metadata, RPM headers, .deb
copyright files, Chart.yaml annotations, OCI image annotations and labels; NOASSERTION where the
content states none), then a summary by kind. --format spdx / cyclonedx writes an SBOM (SPDX 2.3
JSON, CycloneDX 1.5 JSON); set SOURCE_DATE_EPOCH for a fixed creation time. Digests come from the
lock: run `gapcache verify` to re-hash the bytes.

examples:
  gapcache inventory deepops.tar
  gapcache inventory deepops.toc.json --format spdx > deepops.spdx.json
  gapcache inventory --root /opt/deepops --format cyclonedx > served.cdx.json
"""

DIFF_HELP = """\
Compare two transfers: items added, removed and changed (old -> new version or digest) with their
sizes, and the blobs a differential archive (`gapcache build --since OLD`) would carry. OLD and NEW
are lock files or archives (any part, or a .toc.json). Exit code 0 when they hold the same items,
1 when they differ.

examples:
  gapcache diff last-month.tar.lock.json deepops.tar.lock.json
  gapcache diff old.tar new.tar --json
"""


def cmd_inventory(args: argparse.Namespace) -> int:
    from .inventory import inventory, render

    inv = inventory(archive=Path(args.archive)) if args.archive else inventory(root=Path(args.root))
    print(render(inv, args.format), flush=True)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from .diff import diff_paths

    text, differ = diff_paths(Path(args.old), Path(args.new), as_json=args.json)
    print(text, flush=True)
    return 1 if differ else 0


def add_commands(sub: Any) -> None:
    """Add ``inventory`` and ``diff`` to the ``gapcache`` sub-command parsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    inv = sub.add_parser(
        "inventory",
        help="what an archive or root holds: items, versions, sources, digests, sizes, licenses; SBOM",
        description=INVENTORY_HELP,
        formatter_class=fmt,
    )
    g = inv.add_mutually_exclusive_group(required=True)
    g.add_argument("archive", nargs="?", help="archive (any part, or its .toc.json)")
    g.add_argument("--root", metavar="DIR", help="a loaded root (what is served)")
    inv.add_argument(
        "--format",
        choices=["table", "json", "spdx", "cyclonedx"],
        default="table",
        help="table (default), json, spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.5 JSON)",
    )
    inv.set_defaults(func=cmd_inventory)

    d = sub.add_parser(
        "diff",
        help="what changed between two locks or archives (added, removed, changed, with sizes)",
        description=DIFF_HELP,
        formatter_class=fmt,
    )
    d.add_argument("old", metavar="OLD", help="the earlier lock or archive")
    d.add_argument("new", metavar="NEW", help="the later lock or archive")
    d.add_argument("--json", action="store_true", help="print the diff as JSON")
    d.set_defaults(func=cmd_diff)

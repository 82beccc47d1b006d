"""The inventory as a table for a reviewer: one row per item (packages inside it indented below
it), every row with kind, name, version, size, license, digest and source; then a summary by kind."""

from __future__ import annotations

from ..errors import human_bytes
from .collect import Component, Inventory
from .licenses import NOASSERTION

HEADER = ("KIND", "NAME", "VERSION", "SIZE", "LICENSE", "DIGEST", "SOURCE")


def _row(c: Component, indent: str) -> list[str]:
    return [
        c.kind,
        indent + c.name,
        c.version or "-",
        human_bytes(c.size),
        c.license or NOASSERTION,
        c.digest or "-",
        c.source or "-",
    ]


def table(inv: Inventory) -> str:
    rows = [list(HEADER)]
    for c in inv.components:
        rows.append(_row(c, ""))
        rows += [_row(p, "  ") for p in c.packages]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
    lines = [f"{inv.title}  (lock sha256 {inv.lock_sha256})"]
    for r in rows:
        cells = [r[i].rjust(widths[i]) if i == 3 else r[i].ljust(widths[i]) for i in range(len(widths))]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    lines.append("")
    lines += summary_lines(inv)
    return "\n".join(lines)


def summary_lines(inv: Inventory) -> list[str]:
    out = ["summary by kind:"]
    summary = inv.summary()
    width = max((len(k) for k in summary), default=4)
    for kind, s in summary.items():
        inner = f", {s['packages']} package(s)" if s["packages"] else ""
        out.append(f"  {kind:<{width}}  {s['items']:>4} item(s){inner:<18}  {human_bytes(s['bytes']):>10}")
    total = f"total: {len(inv.components)} item(s), {inv.blobs} blob(s), {human_bytes(inv.bytes)}"
    if inv.differential:
        total += f" (differential: {inv.blobs_present} of the {inv.blobs} blobs are in this archive)"
    out.append(total)
    unread = sum(1 for c in inv.components for x in [c, *c.packages] if x.digest and x.license is None)
    out.append(f"licenses: stated by the content where shown; {unread} row(s) state none (NOASSERTION)")
    return out

"""What changed between two transfers: items added, removed and changed (old → new version or
digest), with sizes, and the blobs a differential archive (``build --since OLD``) would carry.

OLD and NEW are locks or archives (any part, or a TOC: the lock is read from the archive). Items
are matched by kind and identity — the project (python), the repository name (image), the chart
name, the repo id (rpm, apt), the logical path (file) — so ``requests==2.31.0`` → ``2.32.3`` is one
changed item, not a removal and an addition. Where two items of one lock share an identity (two
tags of one image), they are matched by their full names.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .archive import archive_set, read_head
from .errors import GapcacheError, human_bytes
from .lock import Item, Lock, read_lock

IDENTITY = {"python": "project", "image": "name", "chart": "name", "rpm": "id", "apt": "id"}


def read_any(path: Path) -> Lock:
    """The lock of ``path``: a lock file, an archive, a part or a TOC."""
    found = archive_set([path])
    if found.parts:
        return read_head(found.parts[0]).lock
    if found.lock_files:
        return read_lock(found.lock_files[0])
    raise GapcacheError(f"{path}: neither a lock nor an archive")


def identity(item: Item) -> str:
    key = IDENTITY.get(item.kind)
    value = item.resolved.get(key) if key else None
    return str(value) if value else item.name


def version(item: Item) -> str | None:
    r = item.resolved
    for key in ("version", "tag", "commit", "revision"):
        if r.get(key):
            return str(r[key])
    return None


def digest(item: Item) -> str | None:
    """The digest that names the item: an image's manifest, a chart's archive, a file's content."""
    if item.resolved.get("digest"):
        return str(item.resolved["digest"])
    return item.artifacts[0].digest if len(item.artifacts) == 1 else None


def size(item: Item) -> int:
    return sum({a.digest: a.size or 0 for a in item.artifacts}.values())


def _facts(item: Item) -> dict[str, Any]:
    return {"kind": item.kind, "name": item.name, "version": version(item), "digest": digest(item), "size": size(item)}


@dataclass
class Change:
    old: Item
    new: Item
    added: list[str] = field(default_factory=list)  # artifact paths
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.new.kind,
            "name": identity(self.new),
            "old": _facts(self.old),
            "new": _facts(self.new),
            "artifacts": {"added": self.added, "removed": self.removed, "changed": self.changed},
        }


@dataclass
class LockDiff:
    added: list[Item]
    removed: list[Item]
    changed: list[Change]
    unchanged: int
    new_blobs: dict[str, int]  # in NEW, not in OLD: what `build --since OLD` packs
    dropped_blobs: dict[str, int]  # in OLD, no longer in NEW

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [_facts(i) for i in self.added],
            "removed": [_facts(i) for i in self.removed],
            "changed": [c.to_json() for c in self.changed],
            "unchanged": self.unchanged,
            "new_blobs": {"count": len(self.new_blobs), "bytes": sum(self.new_blobs.values())},
            "dropped_blobs": {"count": len(self.dropped_blobs), "bytes": sum(self.dropped_blobs.values())},
        }


def _shared(items: list[Item]) -> set[tuple[str, str]]:
    ids = Counter((i.kind, identity(i)) for i in items)
    return {k for k, n in ids.items() if n > 1}


def _keyed(items: list[Item], shared: set[tuple[str, str]]) -> dict[tuple[str, str], Item]:
    return {(i.kind, i.name if (i.kind, identity(i)) in shared else identity(i)): i for i in items}


def diff_locks(old: Lock, new: Lock) -> LockDiff:
    # an identity two items share (two tags of one image), in either lock: matched by full name on both sides
    shared = _shared(old.items) | _shared(new.items)
    a, b = _keyed(old.items, shared), _keyed(new.items, shared)
    added = [b[k] for k in sorted(set(b) - set(a))]
    removed = [a[k] for k in sorted(set(a) - set(b))]
    changed, same = [], 0
    for k in sorted(set(a) & set(b)):
        o, n = a[k], b[k]
        oa = {x.path: x.digest for x in o.artifacts}
        na = {x.path: x.digest for x in n.artifacts}
        if oa == na and version(o) == version(n) and digest(o) == digest(n):
            same += 1
            continue
        changed.append(
            Change(
                o,
                n,
                added=sorted(set(na) - set(oa)),
                removed=sorted(set(oa) - set(na)),
                changed=sorted(p for p in set(oa) & set(na) if oa[p] != na[p]),
            )
        )
    ob, nb = old.blobs(), new.blobs()
    return LockDiff(
        added,
        removed,
        changed,
        same,
        {d: s for d, s in nb.items() if d not in ob},
        {d: s for d, s in ob.items() if d not in nb},
    )


def _short(d: str | None) -> str:
    return d[:19] if d else "-"


def render(diff: LockDiff, old_name: str, new_name: str) -> str:
    lines = [f"{old_name} → {new_name}"]

    def row(sign: str, item: Item) -> str:
        v = version(item) or _short(digest(item))
        return f"  {sign} {item.kind:<7} {identity(item)}  {v}  ({human_bytes(size(item))})"

    lines.append(f"added: {len(diff.added)} item(s), {human_bytes(sum(size(i) for i in diff.added))}")
    lines += [row("+", i) for i in diff.added]
    lines.append(f"removed: {len(diff.removed)} item(s), {human_bytes(sum(size(i) for i in diff.removed))}")
    lines += [row("-", i) for i in diff.removed]
    lines.append(f"changed: {len(diff.changed)} item(s)")
    for c in diff.changed:
        ov, nv = version(c.old), version(c.new)
        what = f"{ov} → {nv}" if ov != nv else f"{_short(digest(c.old))} → {_short(digest(c.new))}"
        sizes = f"{human_bytes(size(c.old))} → {human_bytes(size(c.new))}"
        lines.append(f"  ~ {c.new.kind:<7} {identity(c.new)}  {what}  ({sizes})")
        if c.new.kind in ("rpm", "apt") or (ov == nv and digest(c.old) is None):
            parts = [f"+{len(c.added)}", f"-{len(c.removed)}", f"~{len(c.changed)}"]
            lines.append(f"      artifacts: {' '.join(parts)}")
            lines += [f"      + {p}" for p in c.added if p.endswith((".rpm", ".deb", ".whl", ".tar.gz"))]
            lines += [f"      - {p}" for p in c.removed if p.endswith((".rpm", ".deb", ".whl", ".tar.gz"))]
    lines.append(f"unchanged: {diff.unchanged} item(s)")
    lines.append(
        f"blobs: {len(diff.new_blobs)} new ({human_bytes(sum(diff.new_blobs.values()))}, what "
        f"`build --since OLD` carries), {len(diff.dropped_blobs)} no longer used "
        f"({human_bytes(sum(diff.dropped_blobs.values()))})"
    )
    return "\n".join(lines)


def diff_paths(old: Path, new: Path, as_json: bool = False) -> tuple[str, bool]:
    """The rendered diff of two locks or archives, and whether they differ."""
    d = diff_locks(read_any(old), read_any(new))
    if as_json:
        doc = {"old": str(old), "new": str(new), **d.to_json()}
        return json.dumps(doc, indent=1, ensure_ascii=False), not d.empty
    return render(d, str(old), str(new)), not d.empty

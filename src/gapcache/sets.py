"""Several archives served together: the loaded *sets* of an offline root.

A set is one loaded lock with a name (the archive's file name: ``base.tar`` → ``base``, parts and
``.toc.json`` included; ``load --name`` overrides). ``current`` keeps naming one lock (DESIGN): when
more than one set is served it names a *union* lock — every item of every set, written into
``locks/`` like any other lock — so ``serve`` needs no change. ``ROOT/sets.json`` says which sets
each served lock is made of::

    {"format": 1, "served": {"<lock>.json": [{"name": "base", "lock": "<sha>.json",
                                               "loaded": "2025-01-31T12:00:00Z", "size": 123}]}}

It is keyed by the served lock, so ``rollback`` (which switches ``current``) brings back the sets
that lock was made of. A root loaded before sets existed has no entry: its ``current`` is one set
named after its lock. A set lock that was only ever loaded with ``--add`` is not a step of the
rollback history (:func:`members_only`); ``prune`` keeps the member locks of every lock it keeps.

- :func:`add` — ``load --add``: load an archive as one more set (a set of the same name is replaced);
  the same logical path with different bytes in two sets is refused, naming both, before anything
  is written.
- :func:`remove` — ``remove NAME``: stop serving one set.
- :func:`record_plain_load` — a plain ``load``: the new lock is the only set; returns what it drops.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .archive import ArchiveHead, archive_set, read_head
from .errors import GapcacheError, UsageError
from .lock import Item, Lock, LockScan, read_lock, read_lock_bytes
from .progress import Progress
from .root import LoadResult, Root
from .store import atomic_write

SETS_FILE = "sets.json"
SETS_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
_SUFFIXES = (".toc.json", ".tar.zst", ".tar")


@dataclass(frozen=True)
class LoadedSet:
    name: str
    lock: str  # <sha256>.json in ROOT/locks
    loaded: str  # ISO 8601 UTC
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "lock": self.lock, "loaded": self.loaded, "size": self.size}


def set_name(archives: list[Path]) -> str:
    """``/media/usb/base.part001.tar`` → ``base``: the archive's file name without its suffixes."""
    found = archive_set(archives)
    first = found.toc.path if found.toc is not None else (found.parts[0] if found.parts else archives[0])
    name = first.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"\.part\d+$", "", name)
    return check_name(name)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"{name!r}: a set name is letters, digits and . _ + - (give one with --name)")
    return name


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _path(root: Root) -> Path:
    return root.path / SETS_FILE


def _read(root: Root) -> dict[str, list[LoadedSet]]:
    try:
        raw: Any = json.loads(_path(root).read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise GapcacheError(f"{_path(root)}: unreadable ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("served"), dict):
        raise GapcacheError(f"{_path(root)}: not a gapcache sets file")
    if isinstance(raw.get("format"), int) and raw["format"] > SETS_FORMAT:
        raise GapcacheError(f"{_path(root)}: format {raw['format']} is newer than this gapcache reads")
    try:
        return {
            served: [LoadedSet(str(m["name"]), str(m["lock"]), str(m["loaded"]), int(m["size"])) for m in members]
            for served, members in raw["served"].items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise GapcacheError(f"{_path(root)}: invalid entry ({exc})") from exc


def _write(root: Root, served: dict[str, list[LoadedSet]]) -> None:
    doc = {"format": SETS_FORMAT, "served": {k: [m.to_json() for m in v] for k, v in sorted(served.items())}}
    atomic_write(_path(root), (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def members_of(root: Root, lock_name: str, served: dict[str, list[LoadedSet]] | None = None) -> list[LoadedSet]:
    """The sets ``lock_name`` serves (a root from before sets: one set named after the lock)."""
    served = _read(root) if served is None else served
    if lock_name in served:
        return served[lock_name]
    path = root.locks / lock_name
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    size = read_lock(path).total_size()
    loaded = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
    return [LoadedSet("lock-" + lock_name[:12], lock_name, loaded, size)]


def served_sets(root: Root) -> list[LoadedSet]:
    """The sets ``current`` serves."""
    return members_of(root, root.current_name())


def members_only(root: Root) -> set[str]:
    """Locks loaded only as a member of a union (``load --add``), never served on their own."""
    served = _read(root)
    members = {m.lock for ms in served.values() for m in ms}
    return members - set(served)


def locks_needed(root: Root, kept: list[str]) -> set[str]:
    """``kept`` and the member locks of each (prune keeps them: ``remove`` rebuilds from them)."""
    served = _read(root)
    out = set(kept)
    for name in kept:
        out |= {m.lock for m in served.get(name, [])}
    return out


def forget(root: Root, removed: list[str]) -> None:
    """Drop the entries of removed (pruned) locks from ``sets.json``."""
    served = _read(root)
    if any(r in served for r in removed):
        _write(root, {k: v for k, v in served.items() if k not in removed})


@contextmanager
def _exclusive(root: Root) -> Iterator[None]:
    """The root's lock, exclusively (a load holds it shared; prune exclusively)."""
    fd = os.open(root.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ---- union -----------------------------------------------------------------------------------------


def union(named: list[tuple[str, Lock]]) -> Lock:
    """Every item of every set; the same item in two sets once. A logical path with different bytes
    in two sets is refused, naming the path and both sets."""
    claims: dict[str, tuple[str, str]] = {}
    items: dict[str, Item] = {}
    for name, lock in named:
        for item in lock.items:
            for art in item.artifacts:
                assert art.digest is not None
                other = claims.setdefault(art.path, (art.digest, name))
                if other[0] != art.digest:
                    raise GapcacheError(
                        f"set {name!r} and set {other[1]!r} both serve {art.path} with different content "
                        f"({art.digest[:19]} vs {other[0][:19]}); nothing was changed "
                        f"(gapcache remove {other[1]} first, or load {name!r} without --add to replace everything)"
                    )
            items.setdefault(json.dumps(item.model_dump(mode="json"), sort_keys=True), item)
    return Lock.build(list(items.values()))


def _serve(root: Root, members: list[LoadedSet], locks: dict[str, Lock]) -> str:
    """Write the lock serving ``members`` (one set: its own lock) and switch ``current`` to it."""
    if len(members) == 1:
        name = members[0].lock
    else:
        lock = union([(m.name, locks[m.lock]) for m in members])
        data = lock.to_bytes()
        name = lock.sha256() + ".json"
        atomic_write(root.locks / name, data)
    served = _read(root)
    served[name] = members
    _write(root, served)
    atomic_write(root.current_file, (name + "\n").encode())
    return name


def _locks(root: Root, members: list[LoadedSet]) -> dict[str, Lock]:
    out = {}
    for m in members:
        lock = read_lock(root.locks / m.lock)
        missing = [d for d, s in lock.blobs().items() if not root.store.has(d, s)]
        if missing:
            raise GapcacheError(f"set {m.name!r} lacks {len(missing)} blob(s) in {root.path} (pruned?): {missing[0]}")
        out[m.lock] = lock
    return out


@dataclass
class AddResult:
    name: str
    load: LoadResult
    serving: str  # the lock ``current`` names now
    replaced: LoadedSet | None  # a set of the same name that this one replaced
    sets: list[LoadedSet]


def add(
    root: Root,
    archives: list[Path],
    name: str | None = None,
    progress: Progress | None = None,
    verify_keys: list[Path] | None = None,
) -> AddResult:
    """``load --add``: load the archive as one more served set (replacing a set of the same name)."""
    name = check_name(name) if name else set_name(archives)
    parts = archive_set(archives).parts
    if not parts:
        raise GapcacheError("no archive given (only lock files)")
    head = read_head(parts[0])
    before = served_sets(root) if root.current_file.exists() else []
    others = [m for m in before if m.name != name]
    # refuse a conflict before anything is written
    union([*[(m.name, read_lock(root.locks / m.lock)) for m in others], (name, head.lock)])
    result = root.load(archives, progress, verify_keys, switch=not others)
    replaced = next((m for m in before if m.name == name), None)
    entry = LoadedSet(name, result.lock_name, _now(), head.lock.total_size())
    if replaced is not None and replaced.lock == result.lock_name:
        entry = replaced  # the same archive again: nothing new
    with _exclusive(root):
        # the first (or only) set: the load itself switched `current` to it — read nothing back,
        # or the fallback name of a lock not yet in sets.json would count as a second set
        now = (served_sets(root) if root.current_file.exists() else []) if others else []
        members = [m for m in now if m.name != name] + [entry]
        serving = _serve(root, members, _locks(root, members))
    return AddResult(name, result, serving, replaced, members)


def remove(root: Root, name: str) -> tuple[LoadedSet, str]:
    """Stop serving the set ``name``; returns it and the lock ``current`` names now."""
    with _exclusive(root):
        members = served_sets(root)
        gone = next((m for m in members if m.name == name), None)
        if gone is None:
            names = ", ".join(m.name for m in members) or "none"
            raise GapcacheError(f"{root.path}: no served set named {name!r} (served: {names})")
        rest = [m for m in members if m is not gone]
        if not rest:
            raise GapcacheError(
                f"{root.path}: {name!r} is the only set served; load another archive instead of removing it"
            )
        return gone, _serve(root, rest, _locks(root, rest))


def dropped_by(root: Root, new: Lock | ArchiveHead) -> list[tuple[LoadedSet, list[str]]]:
    """What a plain load of ``new`` (a lock, or an archive's head: its lock scanned, never held as
    models) stops serving: each served set with the items (``kind name``) the new lock lacks."""
    if not root.current_file.exists():
        return []
    keep = new.scan(keys=True).keys if isinstance(new, ArchiveHead) else {f"{i.kind}\0{i.name}" for i in new.items}
    out = []
    for m in served_sets(root):
        try:
            path = root.locks / m.lock
            scan = LockScan(read_lock_bytes(path), str(path))
            lost = [f"{i.kind} {i.name}" for i in scan.items() if f"{i.kind}\0{i.name}" not in keep]
        except GapcacheError:
            continue
        if lost:
            out.append((m, lost))
    return out


def record_plain_load(root: Root, archives: list[Path], result: LoadResult, name: str | None = None) -> None:
    """After a plain ``load``: the loaded lock is the one set served."""
    if result.already_loaded and result.lock_name in _read(root):
        return
    name = check_name(name) if name else set_name(archives)
    size = result.lock_size if result.lock_size is not None else read_lock(root.locks / result.lock_name).total_size()
    served = _read(root)
    served[result.lock_name] = [LoadedSet(name, result.lock_name, _now(), size)]
    _write(root, served)

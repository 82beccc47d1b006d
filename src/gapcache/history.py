"""Older locks in the offline root: pick one to serve, roll ``current`` back, prune what none keeps.

Every lock ever loaded stays in ``ROOT/locks/<sha256>.json``; a load (re)writes its lock file, so
the files' modification times order the locks by when each was last loaded — the history.

- :func:`find_lock` — ``serve --lock SHA|PATH``: a lock of the root by (a prefix of) its sha256, or
  a lock file whose blobs are all in the root.
- :func:`rollback` — switch ``current`` to the lock loaded before it (or ``--to`` one), after
  checking that every blob it needs is still there. A running ``serve --root`` follows.
- :func:`prune` — keep the ``keep`` most recently loaded locks (always the one being served),
  remove the other lock files, then every blob no kept lock uses. It takes the root's lock
  exclusively: a load holds it shared, so the two never run together.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GapcacheError, UsageError
from .lock import Lock, parse_lock, read_lock
from .root import Root
from .sets import forget, locks_needed, members_only
from .store import atomic_write, fsync_dir

_HEX = re.compile(r"^[0-9a-f]{4,64}$")


def history(root: Root) -> list[str]:
    """Lock names (``<sha256>.json``), the most recently loaded first."""
    if not root.locks.is_dir():
        return []
    entries = [(p.stat().st_mtime_ns, p.name) for p in root.locks.glob("*.json") if _HEX.match(p.stem)]
    return [name for _, name in sorted(entries, reverse=True)]


def missing_blobs(root: Root, lock: Lock) -> list[str]:
    return [d for d, s in lock.blobs().items() if not root.store.has(d, s)]


def find_lock(root: Root, ref: str) -> tuple[str, Lock]:
    """``(name, lock)`` for ``ref``: a lock file path, or (a unique prefix of) a loaded lock's sha256.
    Every blob it needs must be in the root."""
    path = Path(ref)
    if path.is_file():
        data = path.read_bytes()
        name, lock = hashlib.sha256(data).hexdigest() + ".json", parse_lock(data, ref)
    else:
        key = ref.removeprefix("sha256:").removesuffix(".json").lower()
        if not _HEX.match(key):
            raise UsageError(f"{ref!r}: neither a lock file nor a lock's sha256 (at least 4 hex digits)")
        names = [n for n in history(root) if n.startswith(key)]
        if not names:
            raise GapcacheError(f"{root.path}: no loaded lock starts with {key} (gapcache rollback --list shows them)")
        if len(names) > 1:
            raise UsageError(f"{ref!r} names {len(names)} locks ({', '.join(n[:16] for n in names)}): give more digits")
        name, lock = names[0], read_lock(root.locks / names[0])
    missing = missing_blobs(root, lock)
    if missing:
        raise GapcacheError(
            f"{root.path}: lock {name[:16]} needs {len(missing)} blob(s) that are not in the root "
            f"(pruned?); first: {missing[0]}"
        )
    return name, lock


def rollback(root: Root, to: str | None = None) -> tuple[str, str]:
    """Switch ``current`` to the lock loaded before it (or to ``to``); returns ``(old, new)`` names."""
    old = root.current_name()
    if to is not None:
        new, _ = find_lock(root, to)
        if not (root.locks / new).is_file():
            raise GapcacheError(f"{to}: not a lock of {root.path} (load its archive instead)")
    else:
        only_members = members_only(root)  # loaded with --add, never served alone
        order = [n for n in history(root) if n not in only_members or n == old]
        older = order[order.index(old) + 1 :] if old in order else []
        if not older:
            raise GapcacheError(f"{root.path}: no lock was loaded before {old[:16]}; nothing to roll back to")
        new, _ = find_lock(root, older[0])
    atomic_write(root.current_file, (new + "\n").encode())
    return old, new


@dataclass
class PruneResult:
    kept: list[str]
    removed_locks: list[str] = field(default_factory=list)
    removed_blobs: int = 0
    freed: int = 0


def prune(root: Root, keep: int, dry_run: bool = False) -> PruneResult:
    """Keep the ``keep`` most recently loaded locks (the current one always among them); remove the
    others and every blob no kept lock uses. The member locks of a kept union (sets.py) are kept too:
    every blob of every served set stays."""
    if keep < 1:
        raise UsageError("--keep must be at least 1 (the lock being served is always kept)")
    fd = os.open(root.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise GapcacheError(f"{root.path}: a load is running; prune again when it is done") from exc
        # read what is served only under the lock: a load finishing just before must not lose blobs
        current = root.current_name()
        only_members = members_only(root)
        order = history(root)
        served = [n for n in order if n not in only_members]
        kept = [current, *[n for n in served if n != current][: keep - 1]]
        kept += sorted(locks_needed(root, kept) - set(kept))
        needed: set[str] = set()
        for name in kept:
            needed |= set(read_lock(root.locks / name).blobs())
        result = PruneResult(kept=kept, removed_locks=[n for n in order if n not in kept])
        doomed = sorted(d for d in root.store.digests() if d not in needed)
        for digest in doomed:
            result.freed += root.store.path(digest).stat().st_size
        result.removed_blobs = len(doomed)
        if dry_run:
            return result
        for name in result.removed_locks:  # first the locks: nothing then refers to the blobs
            (root.locks / name).unlink(missing_ok=True)
        if result.removed_locks:
            fsync_dir(root.locks)
            forget(root, result.removed_locks)
        for digest in doomed:
            root.store.path(digest).unlink(missing_ok=True)
        if doomed:
            fsync_dir(root.store.blobs)
        return result
    finally:
        os.close(fd)

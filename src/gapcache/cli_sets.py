"""Several archives served together: ``load --add`` / ``--name``, ``remove NAME``, and the served sets
in ``ls --root`` (the library side is sets.py).

``cli.build_parser`` adds them with ``add_load_options(ld)`` and ``add_commands(sub)``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import human_bytes

DEFAULT_ROOT = "/opt/deepops"


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--add",
        action="store_true",
        help="serve this archive beside the sets already served (a set of the same name is replaced)",
    )
    p.add_argument("--name", metavar="NAME", help="the set's name (default: the archive's file name, e.g. base)")


def load(args: argparse.Namespace) -> int:
    """``gapcache load [--add] [--name NAME] ARCHIVE…``."""
    from . import sets
    from .archive import ArchiveHead
    from .progress import make_progress
    from .root import Root

    root = Root(Path(args.root))
    archives = [Path(a) for a in args.archive]
    keys = [Path(k) for k in getattr(args, "verify_key", [])]  # --verify-key (cli_site)
    name = getattr(args, "name", None)
    progress = make_progress(args.quiet)
    if getattr(args, "add", False):
        added = sets.add(root, archives, name, progress, keys)
        result = added.load
        _repaired(args.root, result.repaired)
        what = f"replaced set {added.name!r}" if added.replaced else f"added set {added.name!r}"
        _err(
            f"{args.root}: {what}: {result.blobs_added} new blob(s), {human_bytes(result.bytes_added)}; "
            f"serving {len(added.sets)} set(s) ({', '.join(m.name for m in added.sets)}) as lock {added.serving}"
        )
        return 0
    name = sets.check_name(name) if name else sets.set_name(archives)  # a bad name fails before loading
    dropped: list[tuple[sets.LoadedSet, list[str]]] = []

    def before(head: ArchiveHead) -> None:  # the lock is checked; nothing is written yet
        dropped.extend(sets.dropped_by(root, head))

    result = root.load(archives, progress, verify_keys=keys, before=before)
    sets.record_plain_load(root, archives, result, name)
    _repaired(args.root, result.repaired)
    if result.already_loaded:
        _err(f"{args.root}: already loaded ({result.lock_name}); nothing changed")
        return 0
    _err(
        f"{args.root}: loaded {result.blobs_added} new blob(s), {human_bytes(result.bytes_added)}; "
        f"serving set {name!r} as lock {result.lock_name}"
    )
    for m, lost in dropped:
        more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
        _err(f"  no longer served: set {m.name!r}: {len(lost)} item(s): {', '.join(lost[:5])}{more}")
    if dropped:
        _err("  (gapcache load --add ARCHIVE serves archives together; gapcache rollback undoes this load)")
    return 0


def _repaired(root: str, digests: list[str]) -> None:
    for digest in digests:
        _err(f"{root}: blob {digest} was corrupt in the root; restored from the archive")


def _no_set(kind: str, name: str) -> str | None:
    return None


no_sets: Callable[[str, str], str | None] = _no_set  # ``ls ARCHIVE``: no item comes from a served set


def served_listing(root_dir: str) -> tuple[list[str], Callable[[str, str], str | None]]:
    """``ls --root``: a line per served set, and the set an item (kind, name) comes from. With one
    set that is every item, and no lock is read; with several, each set's lock is scanned once for
    its items' names (lock.LockScan: no model per item kept)."""
    from .lock import scan_lock_file
    from .root import Root
    from .sets import served_sets

    root = Root(Path(root_dir))
    members = served_sets(root)
    lines = [f"set {m.name:20} {human_bytes(m.size):>10}  loaded {m.loaded}  lock {m.lock[:16]}" for m in members]
    if len(members) == 1:
        only = members[0].name
        return lines, lambda kind, name: only
    of_item: dict[str, str] = {}
    for m in members:
        for key in scan_lock_file(root.locks / m.lock, keys=True).keys:
            of_item.setdefault(key, m.name)
    return lines, lambda kind, name: of_item.get(f"{kind}\0{name}")


def cmd_remove(args: argparse.Namespace) -> int:
    from .root import Root
    from .sets import remove

    gone, serving = remove(Root(Path(args.root)), args.name)
    _err(
        f"{args.root}: no longer serving set {gone.name!r} ({human_bytes(gone.size)}); serving lock {serving} "
        "(a running gapcache serve --root follows within a second; its blobs stay until gapcache prune)"
    )
    return 0


def add_commands(sub: Any) -> None:
    r = sub.add_parser("remove", help="stop serving one loaded set (gapcache ls --root lists them)")
    r.add_argument("name", metavar="NAME", help="the set's name")
    r.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR", help=f"default {DEFAULT_ROOT}")
    r.set_defaults(func=cmd_remove)

"""Several archives served together: ``load --add`` / ``--name``, ``remove NAME``, and the served sets
in ``ls --root`` (the library side is sets.py).

``cli.build_parser`` adds them with ``add_load_options(ld)`` and ``add_commands(sub)``."""

from __future__ import annotations

import argparse
import sys
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
    from .archive import archive_set, read_head
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
    parts = archive_set(archives).parts
    dropped = sets.dropped_by(root, read_head(parts[0]).lock) if parts and parts[0].is_file() else []
    result = root.load(archives, progress, verify_keys=keys)
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


def served_listing(root_dir: str) -> tuple[list[str], dict[tuple[str, str], str]]:
    """``ls --root``: a line per served set, and the set each item (kind, name) comes from."""
    from .lock import read_lock
    from .root import Root
    from .sets import served_sets

    root = Root(Path(root_dir))
    lines: list[str] = []
    of_item: dict[tuple[str, str], str] = {}
    for m in served_sets(root):
        lines.append(f"set {m.name:20} {human_bytes(m.size):>10}  loaded {m.loaded}  lock {m.lock[:16]}")
        for item in read_lock(root.locks / m.lock).items:
            of_item.setdefault((item.kind, item.name), m.name)
    return lines, of_item


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

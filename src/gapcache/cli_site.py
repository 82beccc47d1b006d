"""The site's commands: ``keygen``, ``rollback``, ``prune``, ``misses``; and the options they add to
existing commands (``build --sign``, ``load --verify-key``, ``serve --lock / --tls…``).

``cli.build_parser`` adds the commands with ``cli_site.add_commands(sub)``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError, human_bytes

DEFAULT_ROOT = "/opt/deepops"


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- options on existing commands -------------------------------------------------------------------


def add_sign_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sign", metavar="KEY", help="sign the lock (and TOC) with this ed25519 key (gapcache keygen)")


def add_verify_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verify-key",
        action="append",
        default=[],
        metavar="PUB",
        help="refuse the archive unless signed by this public key (also: each *.pub in ROOT/keys/)",
    )


def add_tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls", choices=["auto"], help="auto: a CA + server certificate kept in ROOT/tls/ (made once)")
    p.add_argument("--tls-cert", metavar="CERT", help="serve TLS with this certificate (chain, PEM)")
    p.add_argument("--tls-key", metavar="KEY", help="the certificate's private key (PEM)")
    p.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="NAME",
        help="--tls auto: a host name or IP address the certificate covers (repeatable)",
    )


def add_lock_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lock", metavar="SHA|PATH", help="serve this older lock of the root (not `current`; not followed)")


def site_serve_config(args: argparse.Namespace, config: Any) -> Any:
    """``ServeConfig`` with the site options of ``serve``/``mirrors`` applied (TLS made for --tls auto)."""
    from . import tls

    lock = getattr(args, "lock", None)
    if lock and not config.root:
        raise UsageError("--lock picks a lock of a root (--root); an archive serves its own")
    mode, cert, key = getattr(args, "tls", None), getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if mode and (cert or key):
        raise UsageError("--tls auto makes its own certificate: give either it or --tls-cert/--tls-key")
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert and --tls-key go together")
    keys = [Path(k) for k in getattr(args, "verify_key", None) or []]
    if keys and config.archive:  # `serve --archive`: no load checked it, so check it here
        from .archive import read_head, resolve_parts
        from .signing import check, trusted_keys

        first = resolve_parts(config.archive)[0]
        head = read_head(first)
        check(str(first), head.lock_bytes, head.signature, trusted_keys(None, keys))
    elif keys and getattr(args, "command", "") == "serve":
        raise UsageError("--verify-key on serve is for --archive; a root's archives were checked by `load`")
    changes: dict[str, Any] = {"lock": lock}
    if cert and key:
        tls.server_context(Path(cert), Path(key))  # refuse a bad pair before binding anything
        changes.update(tls_cert=Path(cert), tls_key=Path(key))
    elif mode == "auto":
        where = config.root / tls.TLS_DIR if config.root else config.archive[0].parent / tls.ARCHIVE_TLS_DIR
        names = tls.default_names(config.bind, config.public_url, list(args.tls_name))
        files, made = tls.auto(where, names)
        _err(f"TLS: {'made' if made else 'using'} {files.cert} for {', '.join(names)}; clients trust {files.ca}")
        changes.update(tls_cert=files.cert, tls_key=files.key, tls_ca=files.ca)
    elif getattr(args, "tls_name", None):
        raise UsageError("--tls-name is for --tls auto")
    return dataclasses.replace(config, **changes)


# ---- commands --------------------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    from .signing import fingerprint, keygen, load_public_key

    priv, pub = keygen(Path(args.dir))
    _err(f"wrote {priv} (secret: keep it on the connected side) and {pub}")
    _err(f"  fingerprint {fingerprint(load_public_key(pub).key)}")
    _err(f"  sign:   gapcache build ... --sign {priv}")
    _err(f"  verify: gapcache load ARCHIVE --verify-key {pub.name}   (or copy it into ROOT/keys/: then mandatory)")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from .history import history, rollback
    from .root import Root

    root = Root(Path(args.root))
    if args.list:
        current = root.current_name() if root.current_file.exists() else ""
        for name in history(root):
            print(f"{'*' if name == current else ' '} {name.removesuffix('.json')}", flush=True)
        return 0
    old, new = rollback(root, args.to)
    _err(f"{args.root}: serving lock {new} (was {old}); a running gapcache serve --root follows within a second")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from .history import prune
    from .root import Root

    result = prune(Root(Path(args.root)), args.keep, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    kept = ", ".join(n[:16] for n in result.kept)
    removed = f"{len(result.removed_locks)} lock(s) and {result.removed_blobs} blob(s), {human_bytes(result.freed)}"
    _err(f"{args.root}: kept {len(result.kept)} lock(s) ({kept}); {verb} {removed}")
    return 0


def cmd_misses(args: argparse.Namespace) -> int:
    from .errors import GapcacheError
    from .misses import delta_of, parse_since, read_misses, render
    from .root import Root
    from .store import atomic_write

    root = Root(Path(args.root))
    since = parse_since(args.since) if args.since else None
    try:
        lock = root.current_lock()
    except GapcacheError:
        lock = None
    entries = read_misses(root.misses, since)
    text, count = render(delta_of(entries, lock), lock, str(root.misses))
    if args.output:
        atomic_write(Path(args.output), text.encode())
        _err(f"wrote {args.output}: {count} entr{'y' if count == 1 else 'ies'} from {len(entries)} miss(es)")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("keep at least 1 (the lock being served)")
    return n


def add_commands(sub: Any) -> None:
    k = sub.add_parser("keygen", help="make an ed25519 key pair for signing archives (build --sign)")
    k.add_argument("dir", metavar="DIR", help="where to write gapcache-signing.key and gapcache-signing.pub")
    k.set_defaults(func=cmd_keygen)

    r = sub.add_parser("rollback", help="serve the lock loaded before the current one again (or --to one)")
    r.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR", help=f"default {DEFAULT_ROOT}")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--to", metavar="SHA|PATH", help="a loaded lock (sha256 prefix) or a lock file")
    g.add_argument("--list", action="store_true", help="list the loaded locks, newest first (* = current)")
    r.set_defaults(func=cmd_rollback)

    p = sub.add_parser("prune", help="remove older locks and the blobs no kept lock uses")
    p.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR", help=f"default {DEFAULT_ROOT}")
    p.add_argument(
        "--keep",
        type=_positive,
        default=2,
        metavar="N",
        help="locks to keep: the current one and the N-1 most recently loaded others (default 2)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    p.set_defaults(func=cmd_prune)

    m = sub.add_parser("misses", help="turn the mirrors' misses.jsonl into a manifest delta for the connected side")
    m.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR", help=f"default {DEFAULT_ROOT}")
    m.add_argument("--since", metavar="TIME", help="only misses at or after TIME (ISO: 2025-01-31T12:00:00Z)")
    m.add_argument("-o", "--output", metavar="FILE", help="write the delta here (default: stdout)")
    m.set_defaults(func=cmd_misses)

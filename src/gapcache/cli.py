"""The command line: a thin layer over the library. Exit codes (DESIGN): 0 ok; 1 some items or
verification failed; 2 usage or manifest error; 3 environment (disk space, permissions, tools)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, cli_inventory, cli_profile, cli_sets, cli_site, cli_vars
from .cli_args import _err, _print, _run, count, default_store, parse_size, positive_int
from .cli_build import _registry_auth, add_bootstrap_options, cmd_build
from .errors import GapcacheError, UsageError, human_bytes
from .names import FILES_PREFIX

DEFAULT_ROOT = Path("/opt/deepops")


def cmd_ls(args: argparse.Namespace) -> int:
    """Rows are printed as the lock is read, a batch of items at a time (lock.LockScan): no model per
    item is kept, so a 100,000-item archive lists in bounded memory. A lock found bad part-way
    fails (exit 2) after the rows read so far."""
    from .lock import LockScan, read_lock_bytes

    if args.archive:
        from .archive import ArchiveReader, resolve_parts

        with ArchiveReader(resolve_parts([Path(args.archive)])[0], parse=False) as r:
            head = r.head
        scan = LockScan(head.lock_bytes, f"{args.archive}: lock")
        title = f"{args.archive}{' (differential)' if head.since else ''}"
        set_lines: list[str] = []
        set_of = cli_sets.no_sets
    else:
        from .root import Root

        root = Root(Path(args.root))
        path = root.locks / root.current_name()
        scan = LockScan(read_lock_bytes(path), str(path))
        set_lines, set_of = cli_sets.served_listing(args.root)
        title = f"{args.root} (served: {len(set_lines)} set(s))"
    rows = ((i.kind, i.name, sum(a.size or 0 for a in i.artifacts)) for i in scan.items())
    if args.json:  # the bytes json.dumps(rows, indent=1) gives, one row at a time
        out = sys.stdout
        sep = "[\n "
        for k, n, s in rows:
            name = set_of(k, n)
            doc = {"kind": k, "name": n, "size": s} | ({"set": name} if name is not None else {})
            out.write(sep + json.dumps(doc, indent=1).replace("\n", "\n "))
            sep = ",\n "
        out.write("[]\n" if sep.startswith("[") else "\n]\n")
        out.flush()
        return 0
    _print(title)
    for line in set_lines:
        _print(line)
    for kind, name, size in rows:
        sys.stdout.write(f"{kind:6} {human_bytes(size):>10}  {name}\n")
    _print(f"{scan.count} item(s), {len(scan.blobs)} blob(s), {human_bytes(scan.total_size())}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .archive import verify_archive
    from .progress import make_progress

    progress = make_progress(args.quiet or args.json)
    if args.archive:
        report = verify_archive([Path(a) for a in args.archive], progress)
        what = " ".join(args.archive)
    else:
        from .root import Root

        report = Root(Path(args.root)).verify(progress)
        what = args.root
    if args.json:
        _print(
            json.dumps(
                {"ok": report.ok, "blobs": report.blobs, "bytes": report.bytes, "problems": report.problems},
                indent=1,
            )
        )
    else:
        for p in report.problems:
            _err(p)
        extra = f", {report.missing} blob(s) expected from a base (differential)" if report.differential else ""
        state = "OK" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
        _err(f"{what}: {report.blobs} blob(s), {human_bytes(report.bytes)} verified{extra}: {state}")
    return 0 if report.ok else 1


# ---- load / serve / mirrors ----------------------------------------------------------------------------


def cmd_load(args: argparse.Namespace) -> int:
    return cli_sets.load(args)  # plain, or --add beside the sets already served


def _parse_ports(values: list[str]) -> dict[str, int]:
    from .vars.facts import parse_ports

    return parse_ports(values)


def _serve_config(args: argparse.Namespace) -> Any:
    from .serve import ServeConfig

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.max_connections is not None and args.max_connections < 1:
        raise UsageError("--max-connections must be at least 1")
    config = ServeConfig(
        root=Path(args.root) if args.root else None,
        archive=[Path(a) for a in getattr(args, "serve_archive", None) or []],
        bind=args.bind,
        ports=_parse_ports(args.port),
        public_url=args.public_url,
        workers=args.workers,
        access_log=not args.no_access_log,
        log_format=args.log_format,
        loop=args.loop,
        header_timeout=args.header_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_connections=args.max_connections,
    )
    return cli_site.site_serve_config(args, config)  # --lock, --tls…


def client_hints(bound: dict[str, int], host: str, lock: Any) -> list[str]:
    """Commands to try against the mirrors just started, from what the lock holds."""
    from urllib.parse import quote

    lines = []
    files = [a.path[len(FILES_PREFIX) :] for a in lock.artifacts() if a.path.startswith(FILES_PREFIX)] if lock else []
    if "files" in bound:
        base = f"http://{host}:{bound['files']}"
        lines.append(f"curl -s {base}/ | head")
        if files:
            lines.append(f"curl -fO {base}/{quote(files[0])} && sha256sum {files[0].rsplit('/', 1)[-1]}")
        lines.append(f"wget -r -np -nH {base}/")
    images = [i for i in lock.items if i.kind == "image"] if lock else []
    if "registry" in bound and images:
        first = images[0]
        ref = f"{host}:{bound['registry']}/{first.resolved['name']}:{first.resolved.get('tag', 'latest')}"
        lines.append(f"skopeo inspect --tls-verify=false docker://{ref}")
        lines.append(f"podman pull --tls-verify=false {ref}")
    projects = [i for i in lock.items if i.kind == "python"] if lock else []
    if "pypi" in bound and projects:
        idx = f"http://{host}:{bound['pypi']}/simple/"
        lines.append(f"pip install --index-url {idx} --trusted-host {host} {projects[0].resolved['project']}")
        lines.append(f"uv pip install --index-url {idx} {projects[0].resolved['project']}")
        lines.append(f"pip.conf: [global] index-url = {idx}  trusted-host = {host}")
    kinds = {i.kind: i for i in lock.items} if lock else {}
    if "repos" in bound and "rpm" in kinds:
        repo = f"http://{host}:{bound['repos']}/{kinds['rpm'].resolved['id']}.repo"
        lines.append(f"curl -fo /etc/yum.repos.d/{kinds['rpm'].resolved['id']}.repo {repo} && dnf makecache")
    if "repos" in bound and "apt" in kinds:
        rid = str(kinds["apt"].resolved["id"])
        base = f"http://{host}:{bound['repos']}/{rid}"
        lines.append(f"curl -fo /etc/apt/keyrings/{rid}.gpg {base}/key.gpg && "
                     f"curl -fo /etc/apt/sources.list.d/{rid}.sources {base}.sources && apt-get update")  # fmt: skip
    if "charts" in bound and "chart" in kinds:
        lines.append(f"helm repo add gapcache http://{host}:{bound['charts']} && helm search repo gapcache")
    return lines


def _run_server(config: Any) -> int:
    import logging
    from urllib.parse import urlsplit

    from .serve import serve

    def ready(bound: dict[str, int], lock: Any) -> None:
        public = config.public_url or ""
        host = (urlsplit(public).hostname if "://" in public else public) or (
            "127.0.0.1" if config.bind in ("0.0.0.0", "::") else config.bind
        )
        # --log-format json: through the server's log, one JSON object per line like every other line
        say = logging.getLogger("gapcache.serve").info if config.log_format == "json" else _err
        say(f"gapcache {__version__}: serving ({config.workers} worker(s)); Ctrl-C to stop")
        for name, port in bound.items():
            say(f"  {name:9} {'https' if config.tls_cert else 'http'}://{host}:{port}/")
        hints = client_hints(bound, host, lock)
        for i, line in enumerate(hints):
            say(f"  {'try:' if i == 0 else '    '} {line}")

    serve(config, ready)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if not args.root and not args.serve_archive:
        args.root = str(DEFAULT_ROOT)
    return _run_server(_serve_config(args))


def cmd_mirrors(args: argparse.Namespace) -> int:
    code = cmd_load(args)
    if code:
        return code
    args.serve_archive = None
    return _run_server(_serve_config(args))


def _add_auth_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--registry-auth", action="append", default=[], metavar="HOST=USER:PASS",
                   help=f"{what} (also ~/.docker/config.json, $GAPCACHE_REGISTRY_AUTH)")  # fmt: skip


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bind", default="0.0.0.0", metavar="ADDR", help="address to listen on (default 0.0.0.0)")
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=N",
        help="listener port (registry 5000, repos 8001, charts 8002, pypi 8003, files 8004); 0 disables",
    )
    p.add_argument("--public-url", metavar="URL", help="address clients use (default: the request's Host)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes sharing the ports")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.add_argument("--log-format", choices=["clf", "json"], default="clf",
                   help="access log lines: clf (nginx's combined, default) or json (one object per line)")  # fmt: skip
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="event loop (default uvloop)")
    p.add_argument(
        "--header-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="close a connection that has sent no complete request header within S seconds (default 60)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=float,
        default=75.0,
        metavar="S",
        help="close a connection idle for S seconds between requests (default 75)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="connections per process: past N, those that sent no request yet are closed, else new ones "
        "get 503 (default: half the open-file limit)",
    )
    cli_site.add_tls_options(p)


def cmd_push(args: argparse.Namespace) -> int:
    from .progress import make_progress
    from .push import push
    from .serve import ServeConfig, open_source

    if not args.root and not args.archive:
        args.root = str(DEFAULT_ROOT)
    config = ServeConfig(root=Path(args.root) if args.root else None, archive=[Path(a) for a in args.archive])
    lock, blobs, _ = open_source(config)
    auth = _registry_auth(args.registry_auth)
    result = _run(push(lock, blobs, args.to, insecure=args.insecure, auth=auth, progress=make_progress(args.quiet)))
    _err(
        f"pushed {result.images} image(s) to {args.to}: {result.blobs_uploaded} blob(s) uploaded "
        f"({human_bytes(result.bytes_uploaded)}), {result.blobs_skipped} already there, "
        f"{result.blobs_mounted} cross-mounted, {result.manifests} manifest(s)"
    )
    for f in result.failures:
        _err(f"  FAILED {f}")
    return 1 if result.failures else 0


# ---- parser ---------------------------------------------------------------------------------------


EXAMPLES = {
    "build": """examples:
  gapcache build -f manifest.yaml -o deepops.tar
  gapcache build --profile deepops -f site.yaml -o deepops.tar --split-size 4G
  gapcache build -f manifest.yaml --plan                 # what would be fetched; -o is not needed
  gapcache build --locked deepops.tar.lock.json -o again.tar""",
    "ls": """examples:
  gapcache ls deepops.tar
  gapcache ls --root /opt/deepops --json""",
    "verify": """examples:
  gapcache verify deepops.tar
  gapcache verify parts/*                                # parts, TOC and lock recognised by content
  gapcache verify --root /opt/deepops                    # corrupt blobs are moved to ROOT/corrupt/""",
    "load": """examples:
  gapcache load deepops.tar
  gapcache load /media/usb/* --root /opt/deepops
  gapcache load --add cuda-update.tar                    # serve it beside what is served (sets)""",
    "serve": """examples:
  gapcache serve                                         # /opt/deepops, every listener with content
  gapcache serve --archive deepops.tar --port registry=5001 --port charts=0
  gapcache serve --public-url mirror.site.lan            # the address clients use (host, or URL)""",
    "mirrors": """examples:
  gapcache mirrors deepops.tar                           # load into /opt/deepops, then serve""",
    "push": """examples:
  gapcache push --to harbor.site.lan/mirror
  gapcache push --to 10.0.0.5:5000 deepops.tar --insecure""",
}


def _command(sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand with its description and examples shown by ``--help``."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=EXAMPLES.get(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gapcache",
        description="Build an offline cache for an air-gapped GPU cluster, then serve it as mirrors.",
        epilog="Exit codes: 0 ok, 1 items or verification failed, 2 usage or manifest error, 3 environment.",
    )
    p.add_argument("--version", action="version", version=f"gapcache {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    b = _command(
        sub,
        "build",
        "resolve a manifest, fetch everything, pack one archive (connected side)",
        "Resolve MANIFEST into a lock, fetch every artifact into the store (parallel, resumable,\n"
        "verified) and pack ARCHIVE. Nothing is written unless all items succeed. -o is required\n"
        "unless --plan.",
    )
    cli_profile.add_build_options(b)  # -f MANIFEST (repeatable), --profile NAME, --upstream HOST=URL
    b.add_argument("-o", "--output", metavar="ARCHIVE", help="archive to write (.tar, or .tar.zst with --compress)")
    b.add_argument("--locked", metavar="LOCK", help="fetch exactly this lock instead of resolving a manifest")
    b.add_argument("--store", metavar="DIR", help=f"build store / cache (default {default_store()})")
    b.add_argument("--concurrency", type=positive_int, default=8, metavar="N", help="parallel downloads (default 8)")
    b.add_argument("--retries", type=count, default=5, metavar="N", help="retries per transient failure (default 5)")
    b.add_argument("--plan", action="store_true", help="resolve and print what would be fetched; download nothing")
    b.add_argument("--split-size", type=parse_size, metavar="SIZE", help="split into self-contained parts (e.g. 4G)")
    b.add_argument("--since", metavar="OLD", help="differential: leave out blobs in OLD (a lock or archive)")
    b.add_argument("--compress", choices=["zstd"], help="compress the whole archive (multi-threaded zstd)")
    b.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    b.add_argument(
        "--strict-platforms", action="store_true", help="fail when an image lacks a requested platform (else a warning)"
    )
    cli_site.add_sign_option(b)
    add_bootstrap_options(b)
    _add_auth_option(b, "registry credentials")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    b.set_defaults(func=cmd_build)

    ls = _command(
        sub, "ls", "list the items of an archive or of a loaded root", "List every item with its kind and size."
    )
    g = ls.add_mutually_exclusive_group(required=True)
    g.add_argument("archive", nargs="?", help="archive (or its .toc.json)")
    g.add_argument("--root", metavar="DIR", help="a loaded root (lists what is served)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)

    v = _command(
        sub,
        "verify",
        "re-hash every blob of an archive or of a loaded root",
        "Re-hash every blob against its name and the lock; exit 1 naming each problem.",
    )
    g = v.add_mutually_exclusive_group(required=True)
    g.add_argument("archive", nargs="*", default=[], help="archive, its parts, or its .toc.json")
    g.add_argument("--root", metavar="DIR", help="a loaded root")
    v.add_argument("--json", action="store_true")
    v.add_argument("-q", "--quiet", action="store_true")
    v.set_defaults(func=cmd_verify)

    ld = _command(
        sub,
        "load",
        "verify an archive and load it into the offline root (all or nothing)",
        "Verify every blob of ARCHIVE (its parts and TOC in any order) into the root and switch\n"
        "`current` to its lock; a failed load leaves the root as it was. A running `serve`\n"
        "follows the switch without a restart.",
    )
    ld.add_argument("archive", nargs="+", help="archive, its parts, or its .toc.json")
    ld.add_argument("--root", default=str(DEFAULT_ROOT), metavar="DIR", help=f"default {DEFAULT_ROOT}")
    ld.add_argument("-q", "--quiet", action="store_true")
    cli_site.add_verify_option(ld)
    cli_sets.add_load_options(ld)  # --add, --name
    ld.set_defaults(func=cmd_load)

    sv = _command(
        sub,
        "serve",
        "serve the loaded root (or an archive in place) as mirrors",
        "Serve the mirrors from one process: registry 5000, repos 8001 (yum, apt), charts 8002,\n"
        "pypi 8003, files 8004 (and git, Galaxy). Only listeners with content open. --public-url\n"
        "takes a host name (the listener's port is added) or a full URL; without it, pages and\n"
        "repo files use the address each client used.",
    )
    g = sv.add_mutually_exclusive_group()
    g.add_argument("--root", metavar="DIR", help=f"loaded root (default {DEFAULT_ROOT})")
    g.add_argument(
        "--archive",
        dest="serve_archive",
        nargs="+",
        metavar="ARCHIVE",
        help="serve an uncompressed archive in place, without loading it",
    )
    _add_serve_options(sv)
    cli_site.add_lock_option(sv)
    cli_site.add_verify_option(sv)  # with --archive: refuse it unless signed by PUB
    sv.set_defaults(func=cmd_serve)

    mi = _command(
        sub,
        "mirrors",
        "load ARCHIVE into the root, then serve it (the offline one-step)",
        "`gapcache load` then `gapcache serve` with the same root.",
    )
    mi.add_argument("archive", nargs="+", help="archive, its parts, or its .toc.json")
    mi.add_argument("--root", default=str(DEFAULT_ROOT), metavar="DIR", help=f"default {DEFAULT_ROOT}")
    mi.add_argument("-q", "--quiet", action="store_true")
    cli_site.add_verify_option(mi)
    _add_serve_options(mi)
    mi.set_defaults(func=cmd_mirrors)

    pu = _command(
        sub,
        "push",
        "copy every image into an existing registry (digests preserved)",
        "Copy every image of the root or archive into REGISTRY[/PREFIX] (Harbor, Quay, distribution):\n"
        "blobs the target has are skipped, shared ones cross-mounted, each verified before it is sent.",
    )
    pu.add_argument("--to", required=True, metavar="REGISTRY[/PREFIX]", help="e.g. harbor.local/mirror")
    g = pu.add_mutually_exclusive_group()
    g.add_argument("--root", metavar="DIR", help=f"a loaded root (default {DEFAULT_ROOT})")
    g.add_argument("archive", nargs="*", default=[], help="or an uncompressed archive (its parts or .toc.json)")
    pu.add_argument("--insecure", action="store_true", help="plain HTTP to the target registry")
    _add_auth_option(pu, "target credentials")
    pu.add_argument("-q", "--quiet", action="store_true")
    pu.set_defaults(func=cmd_push)
    cli_inventory.add_commands(sub)
    cli_profile.add_commands(sub)
    cli_vars.add_commands(sub)
    cli_site.add_commands(sub)
    cli_sets.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "verify" and not args.archive and not args.root:
        parser.error("verify: give an archive or --root DIR")
    try:
        code: int = args.func(args)
        return code
    except GapcacheError as exc:
        if getattr(args, "json", False):  # a script reading --json gets JSON for every outcome
            _print(json.dumps({"ok": False, "error": str(exc), "exit_code": exc.exit_code}, indent=1))
        _err(f"gapcache: error: {exc}")
        return exc.exit_code
    except PermissionError as exc:
        _err(f"gapcache: error: permission denied: {exc.filename}")
        return 3
    except KeyboardInterrupt:
        _err("gapcache: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

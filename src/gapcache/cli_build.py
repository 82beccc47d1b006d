"""``gapcache build``: the connected side's command (resolve, fetch, pack; or ``--plan``)."""

from __future__ import annotations

import argparse
import gc
import json
import os
from pathlib import Path
from typing import Any

from .cli_args import _err, _print, _run, default_store
from .errors import UsageError, human_bytes


def _registry_auth(values: list[str]) -> Any:
    from .auth import RegistryAuth, parse_auth_option

    try:
        return RegistryAuth(extra=dict(parse_auth_option(v) for v in values))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


BOOTSTRAP_ENV = "GAPCACHE_BOOTSTRAP"  # "0"/"off"/"no": `gapcache build` bootstraps nothing unless asked


def add_bootstrap_options(p: argparse.ArgumentParser) -> None:
    """``--bootstrap-python``, ``--bootstrap-platform``, ``--no-bootstrap`` (kinds/bootstrap) and ``--tmpdir``
    (scratch.py): the build options that came with the self-bootstrap."""
    p.add_argument(
        "--bootstrap-python",
        metavar="LIST",
        help="Python versions of the offline hosts gapcache itself is carried for (default 3.10,3.11,3.12: "
        "Ubuntu 22.04, RHEL 9's python3.11, Ubuntu 24.04)",
    )
    p.add_argument(
        "--bootstrap-platform", metavar="LIST", help="their CPUs (default x86_64,aarch64; manylinux_2_34 wheels)"
    )
    p.add_argument(
        "--tmpdir",
        metavar="DIR",
        help="scratch space for resolvers and tools (default $TMPDIR or /tmp); the store, the archive and "
        "a load stage on their own filesystems",
    )
    p.add_argument(
        "--no-bootstrap",
        action="store_true",
        help=f"carry no gapcache wheels nor install.sh (also {BOOTSTRAP_ENV}=0 unless a --bootstrap-* option is given)",
    )


def bootstrap_options(args: argparse.Namespace) -> Any:
    """The build's BootstrapOptions, or None: on by default, off with --no-bootstrap, or with
    GAPCACHE_BOOTSTRAP=0 unless --bootstrap-python/--bootstrap-platform ask for it."""
    pythons, platforms = getattr(args, "bootstrap_python", None), getattr(args, "bootstrap_platform", None)
    if getattr(args, "no_bootstrap", False):
        if pythons or platforms:
            raise UsageError("--no-bootstrap and --bootstrap-python/--bootstrap-platform contradict each other")
        return None
    if not (pythons or platforms) and os.environ.get(BOOTSTRAP_ENV, "").lower() in ("0", "off", "no", "false"):
        return None
    from pydantic import ValidationError

    from .kinds.bootstrap import BootstrapOptions

    given: dict[str, Any] = {}
    if pythons:
        given["pythons"] = [v.strip() for v in pythons.split(",") if v.strip()]
    if platforms:
        given["platforms"] = [v.strip() for v in platforms.split(",") if v.strip()]
    try:
        return BootstrapOptions(**given)
    except ValidationError as exc:
        raise UsageError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from exc


def cmd_build(args: argparse.Namespace) -> int:
    from .archive import read_head
    from .build import BuildOptions, build, plan
    from .cli_profile import cli_upstreams, load_build_manifest
    from .lock import read_lock
    from .progress import make_progress
    from .scratch import use_tmpdir

    use_tmpdir(getattr(args, "tmpdir", None))  # scratch for resolvers and tools (TMPDIR for theirs)
    manifest = load_build_manifest(args)  # -f (repeatable) over --profile, --upstream over upstreams:
    locked = read_lock(Path(args.locked)) if args.locked else None
    since = None
    if args.since:
        sp = Path(args.since)
        since = read_head(sp).lock if sp.name.endswith((".tar", ".tar.zst")) else read_lock(sp)
    opts = BuildOptions(
        auth=_registry_auth(args.registry_auth),
        upstreams=cli_upstreams(args),
        strict_platforms=args.strict_platforms,
        store=Path(args.store) if args.store else default_store(),
        out=Path(args.output) if args.output else None,
        concurrency=args.concurrency,
        retries=args.retries,
        split_size=args.split_size,
        since=since,
        compress=args.compress,
        progress=make_progress(args.quiet or args.json),
        sign_key=Path(args.sign) if getattr(args, "sign", None) else None,
        bootstrap=None if locked is not None else bootstrap_options(args),  # --locked: the lock says
    )
    gc.freeze()  # the modules and the manifest stay: collections skip them (~150 → ~60 ms per 1,000 items)
    if args.plan:
        from .kinds.chart import discovered_images, plan_notes  # the chart kind: only for a plan's notes

        if manifest is None:
            raise UsageError("--plan needs a manifest (-f)")
        result = _run(plan(manifest, opts))
        rows = [(a.path, a.size, a.source) for i in result.items for a in i.artifacts]
        if args.json:
            _print(
                json.dumps(
                    {
                        "ok": result.ok,
                        "artifacts": [{"path": p, "size": s, "source": src} for p, s, src in rows],
                        "discovered_images": discovered_images(result.items),
                        "failed": [{"item": f.item, "reason": f.reason} for f in result.failures],
                        "warnings": result.warnings,
                    },
                    indent=1,
                )
            )
        else:
            for p, s, src in rows:
                _print(f"{human_bytes(s) if s is not None else '?':>10}  {p}  <- {src}")
            known = sum(s for _, s, _ in rows if s is not None)
            _print("\n".join([f"{len(rows)} artifact(s), {human_bytes(known)} known", *plan_notes(result.items)]))
            for f in result.failures:
                _print(f"UNRESOLVED {f.item}: {f.reason}")
            for w in result.warnings:
                _print(f"WARNING {w}")
        return 0 if result.ok else 1
    if opts.out is None:
        raise UsageError("give the archive to write with -o ARCHIVE.tar (or use --plan)")
    result = _run(build(manifest, opts, locked))
    for w in result.warnings:
        _err(f"warning: {w}")
    if args.json:
        _print(
            json.dumps(
                {
                    "ok": result.ok,
                    "failed": [{"item": f.item, "reason": f.reason} for f in result.failures],
                    "archive": [str(p) for p in result.packed.parts] if result.packed else [],
                    "toc": str(result.packed.toc) if result.packed and result.packed.toc else None,
                    "lock": str(result.lock_path) if result.lock_path else None,
                    "items": len(result.items),
                    "bytes_downloaded": result.transferred,
                    "warnings": result.warnings,
                    "bootstrap": _bootstrap_json(result.items, result.packed.installer if result.packed else None),
                },
                indent=1,
            )
        )
    elif result.ok and result.packed:
        for p in result.packed.parts:
            _err(f"wrote {p} ({human_bytes(p.stat().st_size)})")
        if result.packed.toc:
            _err(f"wrote {result.packed.toc}")
        _err(f"wrote {result.lock_path}")
        if opts.sign_key is not None:
            _err(f"signed with {opts.sign_key} ({result.signer})")
        _err(_bootstrap_line(result.items, result.packed.parts[0], result.packed.installer))
        _err(
            f"{len(result.items)} item(s), {result.packed.blobs} blob(s), "
            f"{human_bytes(result.packed.blob_bytes)}; downloaded {human_bytes(result.transferred)}"
        )
    if not result.ok:
        if not args.json:
            _err(f"build failed: {len(result.failures)} item(s) failed; no archive written")
            for f in result.failures:
                _err(f"  {f.item}: {f.reason}")
        return 1
    return 0


def _bootstrap_line(items: list[Any], first: Path, installer: Path | None) -> str:
    boot = [i for i in items if i.kind == "bootstrap"]
    if not boot:
        return "bootstrap: none (--no-bootstrap): the offline host needs gapcache installed already"
    from .kinds.bootstrap import summary

    how = f"sh {installer} {first}" if installer else f"tar -xf {first} install.sh && sh install.sh {first}"
    return f"bootstrap: {summary(boot[0])}; on the offline host: {how}"


def _bootstrap_json(items: list[Any], installer: Path | None) -> dict[str, Any] | None:
    boot = [i for i in items if i.kind == "bootstrap"]
    if not boot:
        return None
    r = boot[0].resolved
    wheels = sum(1 for a in boot[0].artifacts if a.path.endswith(".whl"))
    return {"version": r.get("version"), "targets": r.get("targets"), "wheels": wheels,
            "installer": str(installer) if installer else None}  # fmt: skip


# ---- ls / verify -------------------------------------------------------------------------------------

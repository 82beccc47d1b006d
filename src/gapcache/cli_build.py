"""``gapcache build``: the connected side's command (resolve, fetch, pack; or ``--plan``)."""

from __future__ import annotations

import argparse
import json
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


def cmd_build(args: argparse.Namespace) -> int:
    from .archive import read_head
    from .build import BuildOptions, build, plan
    from .cli_profile import cli_upstreams, load_build_manifest
    from .kinds.chart import discovered_images, plan_notes
    from .lock import read_lock
    from .progress import make_progress

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
    )
    if args.plan:
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


# ---- ls / verify -------------------------------------------------------------------------------------

"""``gapcache profile list|show|update`` and the build options that use profiles and upstreams
(``--profile NAME``, repeatable ``-f``, ``--upstream HOST=URL``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import UsageError


def _print(text: str = "") -> None:
    print(text, flush=True)


# ---- build ---------------------------------------------------------------------------------------


def add_build_options(p: argparse.ArgumentParser) -> None:
    """``-f MANIFEST`` (repeatable, applied in order), ``--profile NAME``, ``--upstream HOST=URL``."""
    p.add_argument(
        "-f",
        "--file",
        metavar="MANIFEST",
        action="append",
        default=[],
        help="manifest (YAML, format: 1); repeat to layer site manifests over the profile / earlier ones",
    )
    p.add_argument("--profile", metavar="NAME", help="start from a built-in profile (gapcache profile list)")
    p.add_argument(
        "--upstream",
        metavar="HOST=URL",
        action="append",
        default=[],
        help="fetch HOST's content from URL (a site proxy); names and the lock keep HOST (repeatable)",
    )


def cli_upstreams(args: argparse.Namespace) -> dict[str, str]:
    from .upstreams import parse_upstream_option

    try:
        return dict(parse_upstream_option(v) for v in getattr(args, "upstream", None) or [])
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def load_build_manifest(args: argparse.Namespace) -> Any:
    """The manifest ``build`` resolves: the profile (if any) with every ``-f`` layered on top, and
    the ``--upstream`` options over the manifests' ``upstreams:``. None with ``--locked``."""
    from .manifest import Manifest
    from .manifest.merge import load_layer, merge, merge_all

    files = args.file if isinstance(args.file, list) else [args.file] if args.file else []
    profile_name = getattr(args, "profile", None)
    if getattr(args, "locked", None):
        if files or profile_name:
            raise UsageError("give either -f MANIFEST / --profile NAME or --locked LOCK, not both")
        return None
    if not files and not profile_name:
        raise UsageError("give a manifest with -f MANIFEST, a profile with --profile NAME (or --locked LOCK)")
    base = Manifest(format=1)
    if profile_name:
        from . import profile

        base = merge(base, profile.load(profile_name).layer)
    manifest = merge_all(base, [load_layer(Path(f)) for f in files])
    upstreams = cli_upstreams(args)
    if upstreams:
        manifest = manifest.model_copy(update={"upstreams": {**manifest.upstreams, **upstreams}})
    return manifest


# ---- profile -------------------------------------------------------------------------------------


def cmd_profile_list(args: argparse.Namespace) -> int:
    from . import profile

    for name in profile.names():
        p = profile.load(name)
        counts = ", ".join(f"{n} {s}" for s, n in p.counts().items())
        _print(f"{name:<12} {p.description}")
        _print(f"{'':<12} {counts}; pending kinds: {', '.join(sorted(p.annotated.pending)) or 'none'}")
    return 0


def cmd_profile_show(args: argparse.Namespace) -> int:
    from . import profile

    _print(profile.show(profile.load(args.name), args.format))
    return 0


def cmd_profile_update(args: argparse.Namespace) -> int:
    from . import profile

    target = Path(args.output) if args.output else profile.path_of(args.name)
    for checkout in (args.kubespray, args.deepops):
        if checkout and not Path(checkout).is_dir():
            raise UsageError(f"{checkout}: not a directory")
    lines, warnings = profile.update(target, Path(args.kubespray), Path(args.deepops) if args.deepops else None)
    for w in warnings:
        _print(f"warning: {w}")
    _print(f"wrote {target}")
    for line in lines:
        _print(line)
    return 0


def add_commands(sub: Any) -> None:
    """The ``profile`` command and its subcommands, on the main parser's subparsers."""
    pr = sub.add_parser("profile", help="built-in profiles: list, show, regenerate from Kubespray/DeepOps")
    psub = pr.add_subparsers(dest="profile_command", metavar="SUBCOMMAND", required=True)
    ls = psub.add_parser("list", help="the built-in profiles")
    ls.set_defaults(func=cmd_profile_list)
    sh = psub.add_parser("show", help="a profile's entries and their origins (offline)")
    sh.add_argument("name", metavar="NAME")
    sh.add_argument("--format", choices=["table", "yaml"], default="table")
    sh.set_defaults(func=cmd_profile_show)
    up = psub.add_parser(
        "update",
        help="regenerate a profile's Kubespray (and DeepOps) entries from checkouts; prints the diff",
        description="Evaluate Kubespray's download defaults (and DeepOps's role defaults) with ansible-core's "
        "templating, for amd64 and arm64, write the profile and print what was added, removed and changed.",
    )
    up.add_argument("name", nargs="?", default="deepops", metavar="NAME", help="profile to update (default deepops)")
    up.add_argument("--kubespray", required=True, metavar="CHECKOUT", help="a kubernetes-sigs/kubespray checkout")
    up.add_argument("--deepops", metavar="CHECKOUT", help="an NVIDIA/deepops checkout (its roles and group vars)")
    up.add_argument("-o", "--output", metavar="FILE", help="write here instead of the built-in profile file")
    up.set_defaults(func=cmd_profile_update)

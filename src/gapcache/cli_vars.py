"""``gapcache vars`` and ``gapcache playbooks``: point the cluster at the mirrors.

``cli.build_parser`` adds them with ``cli_vars.add_commands(sub)``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError

VARS_EXAMPLES = """examples:
  gapcache vars --mirror-host 10.0.0.5 --root /opt/deepops -o config/airgap
  gapcache vars --mirror-host 10.0.0.5,10.0.0.6 --lock deepops.tar.lock.json -o config/airgap
  gapcache vars --mirror-host mirror.lan --archive deepops.tar --port files=9004 -o config/airgap
  gapcache vars --check inventory/mycluster            # the leak check: exit 1 when anything points elsewhere
  gapcache vars --check config/group_vars --mirror-host 10.0.0.5
"""
PLAYBOOKS_EXAMPLES = """examples:
  gapcache playbooks playbooks/airgap
  ansible-playbook -e tar_file_path=/media/deepops.tar playbooks/airgap/build-offline-mirrors.yml
  ansible-playbook -e @config/airgap/offline_repo_vars.yml playbooks/airgap/use-offline-yum-mirrors.yml
"""


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_vars(args: argparse.Namespace) -> int:
    from . import vars as v

    if args.check:
        if args.root or args.archive or args.lock:
            raise UsageError("--check reads an inventory; it takes no --root, --archive or --lock")
        given = list(v.parse_hosts(args.mirror_host)) if args.mirror_host else None
        return _check(Path(args.check), given)
    hosts = v.parse_hosts(args.mirror_host)
    ca = (args.ca or v.DEFAULT_CA) if args.https else None  # --ca (cli_site: TLS)
    mirrors = v.Mirrors(hosts=hosts, ports=v.parse_ports(args.port), scheme="https" if args.https else "http", ca=ca)
    lock = v.load_lock(args.root, args.archive, args.lock)
    out = Path(args.output)
    gen = v.generate(lock, mirrors, v.root_ca(args.root or (None if args.archive or args.lock else "/opt/deepops")))
    written = v.write_outputs(out, gen.files)
    _err(f"{out}: {len(gen.files)} file(s) for {', '.join(hosts)} ({len(written)} written, "
         f"{len(gen.files) - len(written)} unchanged)")  # fmt: skip
    for rel in sorted(gen.files):
        _err(f"  {rel}")
    if mirrors.placeholder:
        _err(f"warning: no --mirror-host: the files name the placeholder {v.PLACEHOLDER!r}; "
             f"{v.SHELL_FILE} refuses to be sourced and the playbooks refuse to run until it is replaced")  # fmt: skip
    return 0


def _check(path: Path, hosts: list[str] | None) -> int:
    from .vars import check_tree

    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    result = check_tree(path, hosts)
    for p in result.problems:
        _err(f"note: {p}")
    if not result.mirrors:
        raise UsageError(f"{path}: no deepops_mirror_host in these files: say which hosts are mirrors (--mirror-host)")
    for leak in result.leaks:
        print(leak, flush=True)
    skipped = f"; {len(result.skipped)} value(s) not resolvable here, skipped" if result.skipped else ""
    _err(f"{path}: {len(result.files)} file(s) read, mirror(s) {', '.join(result.mirrors)}: "
         f"{len(result.leaks)} variable(s) point elsewhere{skipped}")  # fmt: skip
    return 1 if result.leaks else 0


def cmd_playbooks(args: argparse.Namespace) -> int:
    from .vars import PLAYBOOKS, write_playbooks

    dest = Path(args.dir)
    written = write_playbooks(dest)
    _err(f"{dest}: {len(PLAYBOOKS)} playbook(s) ({len(written)} written)")
    for name in PLAYBOOKS:
        _err(f"  {dest / name}")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``vars`` and ``playbooks`` to the subparsers object of ``cli.build_parser``."""
    fmt = argparse.RawDescriptionHelpFormatter
    v = sub.add_parser(
        "vars",
        help="write DeepOps/Kubespray variables and client config for the mirrors; --check an inventory for leaks",
        description="Write, for content the lock holds only: offline_repo_vars.yml (DeepOps and Kubespray "
        "variables), offline_repo_shell_vars.sh and clients/ (yum .repo, apt .sources, pip.conf, containerd "
        "hosts.toml, Docker daemon.json, registries.conf, Helm repositories). With --check PATH, list every "
        "URL, registry, repository or image variable in an inventory that points anywhere but the mirror "
        "(exit 1 when any).",
        epilog=VARS_EXAMPLES,
        formatter_class=fmt,
    )
    v.add_argument("--mirror-host", action="append", default=[], metavar="HOST[,HOST2…]",
                   help="address(es) nodes reach the mirrors at, in the order to try them")  # fmt: skip
    g = v.add_mutually_exclusive_group()
    g.add_argument("--root", metavar="DIR", help="a loaded root (default /opt/deepops)")
    g.add_argument("--archive", metavar="ARCHIVE", help="an archive (or its .toc.json)")
    g.add_argument("--lock", metavar="LOCK", help="a lock file (ARCHIVE.lock.json)")
    g.add_argument("--check", metavar="PATH", help="leak check: an inventory, group_vars tree or vars file")
    v.add_argument("-o", "--output", default="config/airgap", metavar="DIR", help="default config/airgap")
    v.add_argument("--port", action="append", default=[], metavar="NAME=N",
                   help="a listener's port as served (registry 5000, repos 8001, charts 8002, pypi 8003, "
                        "files 8004)")  # fmt: skip
    v.add_argument("--https", action="store_true", help="the mirrors are reached over TLS (https URLs)")
    v.add_argument("--ca", metavar="PATH", help="--https: the CA's path on the nodes (default /etc/gapcache/ca.crt)")
    v.set_defaults(func=cmd_vars)

    p = sub.add_parser(
        "playbooks",
        help="write the airgap playbooks (build-offline-mirrors.yml, use-offline-*.yml) into DIR",
        description="Write the airgap playbooks shipped with gapcache into DIR: build-offline-mirrors.yml "
        "(install, load, systemd unit, wait), use-offline-yum-mirrors.yml, use-offline-apt-mirrors.yml, "
        "use-offline-container-mirrors.yml, use-offline-pip-mirror.yml.",
        epilog=PLAYBOOKS_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("dir", metavar="DIR", help="e.g. playbooks/airgap")
    p.set_defaults(func=cmd_playbooks)

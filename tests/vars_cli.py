"""Run ``gapcache vars`` / ``gapcache playbooks`` as a user does (a subprocess, exit codes and
output), whether or not ``cli.build_parser`` has added them yet (``cli_vars.add_commands``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import cli_env

_SCRIPT = """
import argparse, sys
from gapcache import cli, cli_vars
_orig = cli.build_parser
def _parser():
    p = _orig()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    if "vars" not in sub.choices:
        cli_vars.add_commands(sub)
    return p
cli.build_parser = _parser
sys.exit(cli.main(sys.argv[1:]))
"""


def run_gapcache(*args: str | Path, check: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", _SCRIPT, *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=cli_env(), **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"gapcache {args} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res

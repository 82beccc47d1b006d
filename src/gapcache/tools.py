"""System tools gapcache runs (gpg, createrepo_c, apt-get, …): one way to call them, with clear errors.

A tool that is not installed is an :class:`EnvironmentProblem` (exit 3) naming the package to
install; a tool that fails is a :class:`GapcacheError` carrying the last lines it printed.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from types import ModuleType

from .errors import EnvironmentProblem, GapcacheError

# the Debian package that provides each tool (what the message tells the user to install)
PACKAGES = {
    "gpg": "gpg",
    "gpgv": "gpgv",
    "gpgconf": "gpgconf",
    "createrepo_c": "createrepo-c",
    "modifyrepo_c": "createrepo-c",
    "apt-get": "apt",
    "apt-ftparchive": "apt-utils",
    "git": "git",
}


def require_tool(name: str, why: str = "") -> str:
    """The absolute path of ``name``, or EnvironmentProblem naming the package that provides it."""
    path = shutil.which(name)
    if path is None:
        pkg = PACKAGES.get(name, name)
        raise EnvironmentProblem(f"{name} not found{': ' + why if why else ''} (install the {pkg} package)")
    return path


def run_tool(
    cmd: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` (its first word looked up on PATH); ``what`` names the item in errors."""
    exe = require_tool(cmd[0])
    res = subprocess.run([exe, *cmd[1:]], env=dict(env) if env is not None else None, input=input,
                         capture_output=True, check=False)  # fmt: skip
    if check and res.returncode != 0:
        tail = " ".join(res.stderr.decode(errors="replace").strip().splitlines()[-3:])
        raise GapcacheError(f"{what}: {cmd[0]} failed (exit {res.returncode}){': ' + tail if tail else ''}")
    return res


def build_extra(module: str, package: str, why: str) -> ModuleType:
    """Import a build-only dependency (gapcache's ``build`` extra: uv, solv, Helm); the offline side
    installs without them, so a missing one is an environment problem (exit 3) saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EnvironmentProblem(
            f"{package} is not installed: {why} needs gapcache's build extra (pip install 'gapcache[build]')"
        ) from exc

"""gapcache installs on every Python the README promises (issue 19, item 6): each runtime dependency
has a wheel for CPython 3.10 (Ubuntu 22.04), 3.11 (RHEL 9's python3.11) and 3.12 (Ubuntu 24.04),
x86_64 and aarch64. This machine has one interpreter, so pip resolves for the others
(`--python-version`, `--platform`, `--only-binary=:all:`) against the host's configured index."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest

from gapcache.kinds.python import default_index_url


def runtime_dependencies() -> list[str]:
    """The installed gapcache's Requires-Dist without extras (what `pip install gapcache` pulls)."""
    return [r for r in requires("gapcache") or [] if "extra ==" not in r]


@pytest.mark.slow
@pytest.mark.parametrize(("python", "arch"), [("3.10", "x86_64"), ("3.12", "aarch64")])  # the ends of the range
def test_every_dependency_has_a_wheel_for(python: str, arch: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # only the index named below, none of the host's extras
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
           "--disable-pip-version-check", "--target", str(tmp_path / "t"), "--index-url", default_index_url(),
           "--python-version", python, "--implementation", "cp",
           *(x for tag in ("manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux_2_5", "manylinux1")
             for x in ("--platform", f"{tag}_{arch}")),
           "--only-binary=:all:", *runtime_dependencies()]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, f"Python {python} {arch}: {res.stderr[-2000:]}"

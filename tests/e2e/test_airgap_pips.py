"""The pips the nodes have (issue 19, item 5): pip 21.2 (RHEL 9 python3.9), 22.0 (Ubuntu 22.04),
22.3 (RHEL 9 python3.11), 23.0.1 (Debian 12: it crashes with TypeError on a JSON page carrying a
``dist-info-metadata`` object, the bug PEP 714 describes), 24.0 (Ubuntu 24.04), the current pip and
uv each install a package with a dependency from the mirror inside ``unshare -n``.

Each pip is installed from the host's index into a venv of this machine's Python (pip 21.2.4 runs
on 3.11); the venvs are shared by the module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import cli_env, gapcache
from gapcache.kinds.python import default_index_url

HERE = Path(__file__).parent
PIPS = {"pip21.2": "pip==21.2.4", "pip22.0": "pip==22.0.4", "pip22.3": "pip==22.3.1", "pip23.0.1": "pip==23.0.1",
        "pip24.0": "pip==24.0", "pip-current": "pip"}  # fmt: skip
PROJECT = "python-dateutil"  # has a dependency (six, or tzdata in 4.x)
BOOT = {"pip", "setuptools", "wheel"}


def _venv(where: Path, spec: str | None) -> Path:
    subprocess.run([sys.executable, "-m", "venv", *([] if spec else ["--without-pip"]), str(where)], check=True)
    if spec:
        env = cli_env(PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1")
        res = subprocess.run(
            [str(where / "bin/python"), "-m", "pip", "install", "-q", "--index-url", default_index_url(), spec],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
    return where


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pips")
    with ThreadPoolExecutor(len(PIPS) + 1) as pool:
        futures = {name: pool.submit(_venv, tmp / name, spec) for name, spec in [*PIPS.items(), ("uv", None)]}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pips-archive")
    m = tmp / "py.yaml"
    m.write_text(f"format: 1\npython:\n  requirements: [{PROJECT}]\n")
    res = gapcache("build", "-f", m, "-o", tmp / "py.tar", "--store", tmp / "store", "-q", timeout=300)
    assert res.returncode == 0, res.stderr
    return tmp / "py.tar"


@pytest.mark.slow
def test_the_pips_the_nodes_have_install_from_the_mirror(venvs: dict[str, Path], archive: Path, tmp_path: Path) -> None:
    versions = {}
    for name, v in venvs.items():
        if name != "uv":
            ver = subprocess.run([str(v / "bin/python"), "-m", "pip", "--version"], capture_output=True, text=True)
            versions[name] = ver.stdout.split()[1]
    assert versions["pip21.2"] == "21.2.4" and versions["pip23.0.1"] == "23.0.1", versions
    out = tmp_path / "offline"
    out.mkdir()
    uv = str(Path(sys.executable).parent / "uv")
    cmd = ["unshare", "-n", "bash", str(HERE / "airgap_pips.sh"), sys.executable, uv, str(archive),
           str(tmp_path / "root"), str(out), PROJECT, *map(str, venvs.values())]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert res.returncode == 0, res.stdout + res.stderr + (out / "serve.log").read_text()
    assert (out / "route.txt").read_text() == ""  # the namespace is closed
    lock = json.loads(archive.with_name("py.tar.lock.json").read_text())
    locked = {i["name"].replace("_", "-") for i in lock["items"] if i["name"].split("==")[0] not in BOOT}
    failed = {}
    for name in venvs:
        rc = (out / f"{name}.rc").read_text().strip()
        got = {line.replace("_", "-") for line in (out / f"{name}.import").read_text().split()}
        from_mirror = got & locked  # PROJECT and its dependency, at versions of the lock
        if rc != "0" or len(from_mirror) < 2 or not any(g.startswith(PROJECT + "==") for g in from_mirror):
            failed[name] = f"rc {rc}: {(out / f'{name}.log').read_text()[-1500:]}"
    assert not failed, json.dumps(failed, indent=1)

"""apt end to end: signed repositories built by the tests (dpkg-deb, apt-ftparchive, gpg) served on
127.0.0.1; a full mirror, a suite subset and a flat subset; load + serve inside `unshare -n` and
isolated apt clients that use the mirror's `.sources` files as written (Signed-By, no trusted=yes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aptrepo import served_apt_repos
from conftest import UpstreamHandle, gapcache

HERE = Path(__file__).parent


@pytest.mark.slow
def test_subsets_and_full_mirror_with_apt_inside_an_air_gap(tmp_path: Path, upstream_server: UpstreamHandle) -> None:
    repos = served_apt_repos(upstream_server.root)
    base = upstream_server.base
    m = tmp_path / "apt.yaml"
    m.write_text(
        "format: 1\napt:\n"
        f"  - id: suite-full\n    url: {base}/apt/suite\n    suites: [stable]\n    components: [main]\n"
        f"    architectures: [amd64, arm64]\n    keyring: {base}/apt/key.asc\n"
        f"  - id: suite-sub\n    url: {base}/apt/suite\n    suites: [stable]\n    components: [main]\n"
        f"    architectures: [amd64, arm64]\n    keyring: {repos.keyring}\n    mode: packages\n    packages: [qa]\n"
        f"  - id: flat-sub\n    url: {base}/apt/flat\n    suites: /\n    architectures: [amd64]\n"
        f"    keyring: {base}/apt/key.asc\n    mode: packages\n    packages: [qa]\n    recommends: true\n"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    res = gapcache("build", "-f", m, "-o", tmp_path / "apt.tar", "--store", tmp_path / "store", env=env)
    assert res.returncode == 0, res.stderr
    lock = json.loads((tmp_path / "apt.tar.lock.json").read_text())
    # only public keys travel: nothing of the site's GnuPG home is in the archive
    assert not any("gnupg" in a["path"] or "secring" in a["path"] for i in lock["items"] for a in i["artifacts"])
    out = tmp_path / "offline"
    out.mkdir()
    cmd = ["unshare", "-n", "-m", "bash", str(HERE / "airgap_apt.sh"), sys.executable, str(tmp_path / "apt.tar"),
           str(tmp_path / "root"), str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    logs = "".join(f"== {p.name}\n{p.read_text()}" for p in sorted(out.glob("*.log")))
    assert run.returncode == 0, run.stdout + run.stderr + logs
    assert (out / "route.txt").read_text() == ""  # no way out of the namespace
    for client in ("amd64", "arm64", "flat", "full"):
        # `apt-get update` verified every InRelease with the key named in Signed-By: no warning at all
        assert (out / f"{client}-update.err").read_text() == "", client
        assert "InRelease" in (out / f"{client}-update.log").read_text()
    closure = {"qa_2.0_amd64.deb", "qb_1.0_amd64.deb", "qc_1.0_all.deb", "qalt1_1.0_all.deb", "qprov_1.0_amd64.deb"}
    assert set((out / "amd64-debs.txt").read_text().split()) == closure
    assert "suite-sub stable/main" in (out / "amd64-install.log").read_text()
    assert set((out / "arm64-debs.txt").read_text().split()) == {
        "qa_2.0_arm64.deb", "qb_1.0_arm64.deb", "qc_1.0_all.deb", "qalt1_1.0_all.deb", "qprov_1.0_arm64.deb",
        "qarmhelper_1.0_arm64.deb"}  # fmt: skip
    assert set((out / "flat-debs.txt").read_text().split()) == closure | {"qrec_1.0_all.deb"}  # built with recommends
    assert "qunrel_1.0_amd64.deb" in (out / "full-debs.txt").read_text()  # the full mirror has everything
    # outside the subset: apt's own "Unable to locate package", exit 100
    assert (out / "outside.rc").read_text().strip() == "100"
    assert "E: Unable to locate package qunrel" in (out / "outside.log").read_text()
    # the full mirror serves the upstream's signed files byte-exact
    for name in ("InRelease", "Release", "Release.gpg"):
        assert (out / "served" / name).read_bytes() == (repos.suite / "dists/stable" / name).read_bytes(), name
    sources = (out / "served/suite-sub.sources").read_text()
    assert "Signed-By: /etc/apt/keyrings/suite-sub.gpg\n" in sources and "rusted" not in sources

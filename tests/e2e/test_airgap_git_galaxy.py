"""git repositories and Galaxy content end to end: build from real upstreams on 127.0.0.1 (git
http-backend, a Galaxy API fixture), then load + serve inside `unshare -n` and use the unchanged
clients — `git clone --recurse-submodules` (through url.insteadOf) and `ansible-galaxy collection /
role install -r` (through an ansible.cfg server_list)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import gapcache
from gitgalaxy import GalaxyUpstream, GitUpstream, galaxy_upstream, git_upstream

__all__ = ["galaxy_upstream", "git_upstream"]
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def airgap(
    git_upstream: GitUpstream, galaxy_upstream: GalaxyUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    tmp = tmp_path_factory.mktemp("git-galaxy")
    (tmp / "requirements.yml").write_text(yaml.safe_dump({
        "collections": [{"name": "testns.app"}],
        "roles": [{"src": "testowner.ntp", "version": "2.3.3"},
                  {"src": "git+" + git_upstream.url("org/gitrole"), "version": "v0.1", "name": "gitrole"}],
    }))  # fmt: skip
    m = tmp / "m.yaml"
    m.write_text(yaml.safe_dump({
        "format": 1,
        "git": [{"url": git_upstream.url("org/parent"), "ref": "main"},
                {"url": git_upstream.url("org/child"), "ref": "v1.0"},
                {"url": git_upstream.url("org/child"), "ref": "dev"}],
        "galaxy": {"requirements": "requirements.yml", "server": galaxy_upstream.server},
    }))  # fmt: skip
    res = gapcache("build", "-f", m, "-o", tmp / "gg.tar", "--store", tmp / "store")
    assert res.returncode == 0, res.stderr
    out = tmp / "out"
    out.mkdir()
    cmd = ["unshare", "-n", "bash", str(HERE / "airgap_git_galaxy.sh"), sys.executable, str(tmp / "gg.tar"),
           str(tmp / "root"), str(out), git_upstream.base, git_upstream.host]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    logs = "".join(f"--- {p.name}\n{p.read_text()}" for p in out.glob("*.log"))
    assert res.returncode == 0, res.stdout + res.stderr + logs
    assert (out / "route.txt").read_text() == ""
    return out


@pytest.mark.slow
def test_git_clone_with_submodules_gets_the_pinned_commits(airgap: Path, git_upstream: GitUpstream) -> None:
    sha = git_upstream.sha
    assert (airgap / "parent.sha").read_text().strip() == sha["p1"]
    assert (airgap / "child.sha").read_text().strip() == sha["c2"]  # what the superproject pins, not c3
    assert (airgap / "tag.sha").read_text().strip() == sha["c1"]
    assert (airgap / "dev.sha").read_text().strip() == sha["d1"]
    refs = dict(line.split("\t")[::-1] for line in (airgap / "ls-remote.txt").read_text().splitlines())
    assert refs["refs/tags/v1.0"] == sha["tag"] and refs["refs/tags/v1.0^{}"] == sha["c1"]
    assert (airgap / "missing-repo.rc").read_text().strip() != "0"


@pytest.mark.slow
def test_ansible_galaxy_installs_collections_and_roles(airgap: Path) -> None:
    def manifest(name: str) -> dict[str, str]:
        info = json.loads((airgap / "collections/ansible_collections/testns" / name / "MANIFEST.json").read_text())
        return dict(info["collection_info"])

    assert manifest("app")["version"] == "1.0.0"
    assert manifest("base")["version"] == "1.1.0"  # the dependency, as the build resolved it
    meta = (airgap / "roles/testowner.ntp/meta/main.yml").read_text()
    assert "v2.3.3" in meta
    assert "git role" in (airgap / "roles/gitrole/meta/main.yml").read_text()  # through url.insteadOf
    assert not (airgap / "roles/gitrole/README").exists()  # v0.1, before README
    assert (airgap / "missing-version.rc").read_text().strip() != "0"
    assert "9.9.9" in (airgap / "missing-version.log").read_text()

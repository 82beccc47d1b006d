"""git and Galaxy content, connected side: pins, dependencies, reproducible packs, errors that
name what is missing — against real upstreams on 127.0.0.1 (git http-backend, a Galaxy API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import gapcache
from gitgalaxy import GalaxyUpstream, GitUpstream, galaxy_upstream, git_upstream

__all__ = ["galaxy_upstream", "git_upstream"]  # fixtures used by the tests below


def git_manifest(path: Path, up: GitUpstream, **extra: Any) -> Path:
    doc = {"format": 1, "git": [
        {"url": up.url("org/parent"), "ref": "main"},
        {"url": up.url("org/child"), "ref": "v1.0"},
        {"url": up.url("org/child"), "ref": "dev", "submodules": False},
    ], **extra}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


def items(lock_path: Path) -> dict[str, dict[str, Any]]:
    lock = json.loads(lock_path.read_text())
    return {f"{i['kind']} {i['name']}": i for i in lock["items"]}


@pytest.fixture(scope="module")
def git_built(git_upstream: GitUpstream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("git-build")
    m = git_manifest(tmp / "m.yaml", git_upstream)
    res = gapcache("build", "-f", m, "-o", tmp / "git.tar", "--store", tmp / "store")
    assert res.returncode == 0, res.stderr
    return tmp


def test_git_refs_and_submodules_are_pinned(git_built: Path, git_upstream: GitUpstream) -> None:
    sha, host = git_upstream.sha, git_upstream.host
    got = items(git_built / "git.tar.lock.json")
    parent = got[f"git {host}/org/parent.git"]["resolved"]
    child = got[f"git {host}/org/child.git"]["resolved"]
    assert parent["refs"] == {"refs/heads/main": sha["p1"]} and parent["head"] == "ref: refs/heads/main"
    assert parent["submodules"] == [
        {"commit": sha["p1"], "path": "lib/child", "url": git_upstream.url("org/child"), "pins": sha["c2"]}
    ]
    # the tag (its own object and the commit), the branch, and the commit the superproject records —
    # not child's main, which moved on (c3)
    assert child["refs"] == {"refs/heads/dev": sha["d1"], "refs/tags/v1.0": sha["tag"]}
    assert child["peeled"] == {"refs/tags/v1.0": sha["c1"]}
    assert child["commits"] == sorted([sha["c1"], sha["c2"], sha["d1"]]) and sha["c3"] not in child["commits"]
    arts = got[f"git {host}/org/child.git"]["artifacts"]
    assert [a["source"] for a in arts] == ["generated", "generated"]
    assert arts[0]["path"] == f"git/{host}/org/child.git/objects/pack/pack-{child['pack']}.idx"


@pytest.mark.slow
def test_git_packs_are_reproducible_and_locked_rebuilds(
    git_built: Path, git_upstream: GitUpstream, tmp_path: Path
) -> None:
    m = git_manifest(tmp_path / "m.yaml", git_upstream)
    res = gapcache("build", "-f", m, "-o", tmp_path / "again.tar", "--store", tmp_path / "store")
    assert res.returncode == 0, res.stderr
    first = (git_built / "git.tar.lock.json").read_bytes()
    assert (tmp_path / "again.tar.lock.json").read_bytes() == first  # another fetch, the same bytes
    # --locked on a store without the packs: fetched and packed again, to the same digests
    res = gapcache("build", "--locked", git_built / "git.tar.lock.json", "-o", tmp_path / "locked.tar",
                   "--store", tmp_path / "fresh")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "locked.tar.lock.json").read_bytes() == first


def test_git_plan_writes_nothing_and_missing_ref_is_named(git_upstream: GitUpstream, tmp_path: Path) -> None:
    m = git_manifest(tmp_path / "m.yaml", git_upstream)
    res = gapcache("build", "-f", m, "--plan", "--store", tmp_path / "store")
    assert res.returncode == 0, res.stderr
    assert not list((tmp_path / "store").rglob("blobs/sha256/*"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"format": 1, "git": [{"url": git_upstream.url("org/child"), "ref": "no-such-ref"}]}))
    res = gapcache("build", "-f", bad, "-o", tmp_path / "bad.tar", "--store", tmp_path / "store")
    assert res.returncode == 1 and "no-such-ref" in res.stderr, res.stderr
    assert not (tmp_path / "bad.tar").exists()


def test_git_missing_tool_is_exit_3(git_upstream: GitUpstream, tmp_path: Path) -> None:
    m = git_manifest(tmp_path / "m.yaml", git_upstream)
    import os
    import sys

    res = gapcache("build", "-f", m, "--plan", "--store", tmp_path / "s",
                   env={"PATH": str(Path(sys.executable).parent) + os.pathsep + str(tmp_path)})  # fmt: skip
    assert res.returncode == 3 and "git" in res.stderr, res.stderr


def galaxy_manifest(path: Path, up: GalaxyUpstream, collections: list[Any], roles: list[Any]) -> Path:
    (path.parent / "requirements.yml").write_text(yaml.safe_dump({"collections": collections, "roles": roles}))
    path.write_text(yaml.safe_dump({"format": 1, "galaxy": {"requirements": "requirements.yml", "server": up.server}}))
    return path


@pytest.mark.slow
def test_galaxy_collections_with_dependencies_and_roles(galaxy_upstream: GalaxyUpstream, tmp_path: Path) -> None:
    m = galaxy_manifest(tmp_path / "m.yaml", galaxy_upstream, [{"name": "testns.app"}],
                        [{"src": "testowner.ntp", "version": "2.0.0"}, "testowner.ntp"])  # fmt: skip
    res = gapcache("build", "-f", m, "-o", tmp_path / "g.tar", "--store", tmp_path / "store")
    assert res.returncode == 0, res.stderr
    got = items(tmp_path / "g.tar.lock.json")
    app, base = got["galaxy collection testns.app"], got["galaxy collection testns.base"]
    assert app["resolved"]["version"] == "1.0.0"
    assert base["resolved"]["version"] == "1.1.0"  # the newest that app's ">=1.0.0,<2.0.0" allows
    assert base["artifacts"][0]["digest"] == "sha256:" + galaxy_upstream.sha256["testns.base:1.1.0"]
    assert got["galaxy role testowner.ntp"]["resolved"]["version"] in ("2.0.0", "2.3.3")


@pytest.mark.slow
def test_galaxy_missing_version_is_named(galaxy_upstream: GalaxyUpstream, tmp_path: Path) -> None:
    m = galaxy_manifest(tmp_path / "m.yaml", galaxy_upstream, [{"name": "testns.base", "version": "==9.9.9"}], [])
    res = gapcache("build", "-f", m, "-o", tmp_path / "g.tar", "--store", tmp_path / "store")
    assert res.returncode == 1 and "testns.base" in res.stderr and "9.9.9" in res.stderr, res.stderr
    m = galaxy_manifest(tmp_path / "m.yaml", galaxy_upstream, [], [{"src": "testowner.ntp", "version": "7.7.7"}])
    res = gapcache("build", "-f", m, "-o", tmp_path / "g.tar", "--store", tmp_path / "store")
    assert res.returncode == 1 and "testowner.ntp" in res.stderr and "7.7.7" in res.stderr, res.stderr


def test_galaxy_requirements_path_is_checked_at_parse(tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text("format: 1\ngalaxy:\n  requirements: nope/requirements.yml\n")
    res = gapcache("build", "-f", m, "--plan", "--store", tmp_path / "s")
    assert res.returncode == 2 and "galaxy.requirements" in res.stderr, res.stderr

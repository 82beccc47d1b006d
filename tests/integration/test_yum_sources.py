"""RHEL sources as sites have them (issue 19, item 2): a yum repo from ``file://`` (a mounted ISO)
builds and serves; a ``mirror: false`` base repo satisfies the closure and is not in the archive;
an empty subset is an error naming the packages."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import cli_env, free_port, gapcache, wait_port
from rpmrepo import SPEC, build_repo


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A signed repo in a plain directory (as a mounted RHEL ISO is): (repo dir, public key file)."""
    work = tmp_path_factory.mktemp("iso")
    repo, pub = build_repo(work)
    key = work / "RPM-GPG-KEY-test"
    key.write_bytes(pub)
    return repo, key


@pytest.fixture(scope="module")
def app_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vendor repo whose one package needs pb (which is on the ISO), unsigned."""
    work = tmp_path_factory.mktemp("app")
    top, repo = work / "rpmbuild", work / "repo"
    (repo / "Packages").mkdir(parents=True)
    spec = work / "pz.spec"
    spec.write_text(SPEC.format(name="pz", version="1.0", arch="x86_64", requires="Requires: pb"))
    subprocess.run(["rpmbuild", "--quiet", "--define", f"_topdir {top}", "-bb", str(spec)], check=True,
                   capture_output=True)  # fmt: skip
    for r in top.glob("RPMS/*/*.rpm"):
        (repo / "Packages" / r.name).write_bytes(r.read_bytes())
    subprocess.run(["createrepo_c", "--quiet", str(repo)], check=True, capture_output=True)
    return repo


def _build(tmp: Path, text: str, name: str = "yum") -> subprocess.CompletedProcess[str]:
    m = tmp / f"{name}.yaml"
    m.write_text("format: 1\nyum:\n" + text)
    env = {"XDG_CONFIG_HOME": str(tmp / "config")}  # the site signing key of subsets
    return gapcache("build", "-f", m, "-o", tmp / f"{name}.tar", "--store", tmp / "store", "-q", env=env)


def test_file_url_repo_builds_and_serves(tmp_path: Path, iso: tuple[Path, Path]) -> None:
    repo, key = iso
    res = _build(tmp_path, f"  - id: rhel9-baseos\n    baseurl: {repo.as_uri()}\n    gpgkey: [{key.as_uri()}]\n")
    assert res.returncode == 0, res.stderr
    lock = json.loads((tmp_path / "yum.tar.lock.json").read_text())
    (item,) = lock["items"]
    paths = {a["path"] for a in item["artifacts"]}
    assert "yum/rhel9-baseos/repodata/repomd.xml" in paths and "yum/rhel9-baseos/repodata/repomd.xml.asc" in paths
    rpms = sorted(p for p in paths if p.endswith(".rpm"))
    assert len(rpms) == 5
    gapcache("load", tmp_path / "yum.tar", "--root", tmp_path / "root", "-q", check=True)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gapcache", "serve", "--root", str(tmp_path / "root"), "--bind", "127.0.0.1",
         "--port", f"repos={port}", "--port", "registry=0", "--port", "files=0", "--port", "charts=0",
         "--port", "pypi=0", "--no-access-log"],
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        base = f"http://127.0.0.1:{port}/rhel9-baseos"
        with urllib.request.urlopen(base + "/repodata/repomd.xml") as r:
            assert r.read() == (repo / "repodata/repomd.xml").read_bytes()
        rel = rpms[0].split("rhel9-baseos/", 1)[1]
        with urllib.request.urlopen(f"{base}/{rel}") as r:
            assert hashlib.sha256(r.read()).digest() == hashlib.sha256((repo / rel).read_bytes()).digest()
        with urllib.request.urlopen(base + ".repo") as r:
            assert f"baseurl={base}" in r.read().decode()
    finally:
        proc.terminate()
        proc.wait(10)


def test_mirror_false_base_satisfies_the_closure_and_is_not_archived(
    tmp_path: Path, iso: tuple[Path, Path], app_repo: Path
) -> None:
    repo, key = iso
    text = (
        f"  - id: rhel9-baseos\n    baseurl: {repo.as_uri()}\n    gpgkey: [{key.as_uri()}]\n    mirror: false\n"
        f"  - id: vendor\n    baseurl: {app_repo.as_uri()}\n    mode: packages\n    packages: [pz]\n"
        "    base: [rhel9-baseos]\n"
    )
    res = _build(tmp_path, text)
    assert res.returncode == 0, res.stderr
    lock = json.loads((tmp_path / "yum.tar.lock.json").read_text())
    assert [i["name"] for i in lock["items"]] == ["vendor"]
    assert lock["items"][0]["resolved"]["packages"] == ["pz-1.0-1.x86_64"]  # pb, pc come from the base
    paths = [a["path"] for i in lock["items"] for a in i["artifacts"]]
    assert not [p for p in paths if "rhel9-baseos" in p]
    listing = json.loads(gapcache("ls", tmp_path / "yum.tar", "--json", check=True).stdout)
    assert [e["name"] for e in listing] == ["vendor"]
    # without the base, the closure pulls nothing from the ISO (pz's dependency is unresolvable)
    alone = _build(tmp_path, text.replace("    base: [rhel9-baseos]\n", ""), name="alone")
    assert alone.returncode == 1 and "pb" in alone.stderr


def test_empty_subset_is_an_error_naming_the_packages(tmp_path: Path, iso: tuple[Path, Path]) -> None:
    repo, key = iso
    text = (
        f"  - id: rhel9-baseos\n    baseurl: {repo.as_uri()}\n    gpgkey: [{key.as_uri()}]\n    mirror: false\n"
        f"  - id: extras\n    baseurl: {repo.as_uri()}\n    gpgkey: [{key.as_uri()}]\n    mode: packages\n"
        "    packages: [pa, pd]\n    base: [rhel9-baseos]\n"
    )
    res = _build(tmp_path, text)
    assert res.returncode == 1
    assert "extras: the subset is empty: pa, pd" in res.stderr, res.stderr
    assert "createrepo" not in res.stderr
    assert not (tmp_path / "yum.tar").exists()


def test_missing_file_url_says_which_file(tmp_path: Path) -> None:
    res = _build(tmp_path, f"  - id: gone\n    baseurl: {(tmp_path / 'nowhere').as_uri()}\n")
    assert res.returncode == 1
    assert "nowhere/repodata/repomd.xml" in res.stderr and "NonHttpUrl" not in res.stderr
    assert os.path.basename(str(tmp_path)) in res.stderr

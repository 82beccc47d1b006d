"""yum regressions from the review (issue 10): signed or not as the upstream is, `build --locked`
of a subset on a fresh store, keys with the same file name, unsafe hrefs, zstd metadata."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import UpstreamHandle, gapcache
from gapcache.blobs import BlobIndex
from gapcache.kinds.rpm.serve import YumRepos
from gapcache.lock import Item

pytestmark = pytest.mark.slow


def variant(upstream: UpstreamHandle, name: str) -> Path:
    """A copy of the fixture repo under a new name on the same upstream."""
    dest = upstream.root / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(upstream.root / "el9", dest)
    return dest


def repo_file(lock_path: Path, repo_id: str) -> str:
    items = [Item.model_validate(i) for i in json.loads(lock_path.read_text())["items"]]
    return YumRepos(items, BlobIndex({}, 0.0), None).repo_file(repo_id, "http://m:8001")


def test_unsigned_repomd_needs_an_explicit_yes_and_then_says_repo_gpgcheck_0(
    tmp_path: Path, yum_upstream: str, upstream_server: UpstreamHandle
) -> None:
    (variant(upstream_server, "unsigned") / "repodata/repomd.xml.asc").unlink()
    base = f"{upstream_server.base}/unsigned"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\nyum:\n  - id: uns\n    baseurl: {base}/\n    gpgkey: [{base}/RPM-GPG-KEY-test]\n")
    res = gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", tmp_path / "s", env=env)
    assert res.returncode == 1
    assert "rpm uns" in res.stderr and "not signed" in res.stderr and "repo_gpgcheck: false" in res.stderr
    assert not (tmp_path / "a.tar").exists()
    m.write_text(m.read_text() + "    repo_gpgcheck: false\n")
    res = gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", tmp_path / "s", env=env)
    assert res.returncode == 0, res.stderr
    text = repo_file(tmp_path / "a.tar.lock.json", "uns")
    assert "repo_gpgcheck=0" in text and "gpgcheck=1" in text
    # the signed fixture, mirrored whole, keeps repo_gpgcheck=1
    m.write_text(
        f"format: 1\nyum:\n  - id: sig\n    baseurl: {yum_upstream}/\n    gpgkey: [{yum_upstream}/RPM-GPG-KEY-test]\n"
    )
    gapcache("build", "-f", m, "-o", tmp_path / "b.tar", "--store", tmp_path / "s", env=env, check=True)
    assert "repo_gpgcheck=1" in repo_file(tmp_path / "b.tar.lock.json", "sig")


def test_locked_rebuild_of_a_subset_on_a_fresh_store(tmp_path: Path, yum_upstream: str) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    m = tmp_path / "m.yaml"
    m.write_text(
        f"format: 1\nyum:\n  - id: sub\n    baseurl: {yum_upstream}/\n    gpgkey: [{yum_upstream}/RPM-GPG-KEY-test]\n"
        "    mode: packages\n    packages: [pa]\n"
    )
    gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", tmp_path / "s1", env=env, check=True)
    lock = tmp_path / "a.tar.lock.json"
    # comps and modules are artifacts now: a fresh store rebuilds the subset from the lock alone
    res = gapcache("build", "--locked", lock, "-o", tmp_path / "b.tar", "--store", tmp_path / "s2", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "b.tar").read_bytes() == (tmp_path / "a.tar").read_bytes()
    # another site key regenerates other signatures: said plainly, not "not in the store; build first"
    other = {"XDG_CONFIG_HOME": str(tmp_path / "other-config")}
    res = gapcache("build", "--locked", lock, "-o", tmp_path / "c.tar", "--store", tmp_path / "s2", env=other)
    assert res.returncode == 1
    assert "repomd.xml.asc" in res.stderr and "the lock pins" in res.stderr
    assert "build first" not in res.stderr and not (tmp_path / "c.tar").exists()


def test_keys_sharing_a_file_name_and_an_unsafe_href(
    tmp_path: Path, yum_upstream: str, upstream_server: UpstreamHandle
) -> None:
    key = (upstream_server.root / "el9/RPM-GPG-KEY-test").read_bytes()
    upstream_server.put("keys/a/gpg", key)
    upstream_server.put("keys/b/gpg", key)
    evil = variant(upstream_server, "evil")
    (evil / "repodata/repomd.xml.asc").unlink()
    md = (evil / "repodata/repomd.xml").read_text()
    (evil / "repodata/repomd.xml").write_text(re.sub(r'(<data type="other">.*?href=")', r"\1../../", md, flags=re.S))
    k = upstream_server.base + "/keys"
    m = tmp_path / "m.yaml"
    m.write_text(
        "format: 1\nyum:\n"
        f"  - id: one\n    baseurl: {yum_upstream}/\n    gpgkey: [{k}/a/gpg]\n"
        f"  - id: two\n    baseurl: {yum_upstream}/\n    gpgkey: [{k}/b/gpg]\n"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    res = gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", tmp_path / "s", env=env)
    assert res.returncode == 0, res.stderr
    paths = {a["path"] for i in json.loads((tmp_path / "a.tar.lock.json").read_text())["items"] for a in i["artifacts"]}
    assert {"yum/gpgkeys/one/gpg", "yum/gpgkeys/two/gpg"} <= paths
    assert "gpgkey=http://m:8001/gpgkeys/one/gpg" in repo_file(tmp_path / "a.tar.lock.json", "one")
    m.write_text(f"format: 1\nyum:\n  - id: evil\n    baseurl: {upstream_server.base}/evil/\n")
    res = gapcache("build", "-f", m, "-o", tmp_path / "e.tar", "--store", tmp_path / "s", env=env)
    assert res.returncode == 1
    assert "rpm evil" in res.stderr and "unsafe location" in res.stderr and "Traceback" not in res.stderr


def test_xz_metadata_as_el10_writes_it(tmp_path: Path, yum_upstream: str, upstream_server: UpstreamHandle) -> None:
    zst = variant(upstream_server, "zst")
    shutil.rmtree(zst / "repodata")
    subprocess.run(["createrepo_c", "--quiet", "--general-compress-type", "xz", str(zst)], check=True)
    assert list((zst / "repodata").glob("*primary.xml.xz"))
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\nyum:\n  - id: z\n    baseurl: {upstream_server.base}/zst/\n    mode: packages\n"
                 "    packages: [pa]\n")  # fmt: skip
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    res = gapcache("build", "-f", m, "-o", tmp_path / "z.tar", "--store", tmp_path / "s", env=env)
    assert res.returncode == 0, res.stderr
    item = json.loads((tmp_path / "z.tar.lock.json").read_text())["items"][0]
    assert item["resolved"]["packages"] == ["pa-2.0-1.x86_64", "pb-1.0-1.x86_64", "pc-1.0-1.noarch"]

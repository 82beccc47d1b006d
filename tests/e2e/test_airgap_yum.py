"""yum/dnf end to end: a signed repo built by the tests (rpmbuild, rpmsign, createrepo_c) served on
127.0.0.1; full and dependency-closed subset mirrors; dnf with gpgcheck inside `unshare -n`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import UpstreamHandle, gapcache

HERE = Path(__file__).parent


def manifest(path: Path, base: str) -> Path:
    path.write_text(
        "format: 1\nyum:\n"
        f"  - id: test-full\n    baseurl: {base}/\n    gpgkey: [{base}/RPM-GPG-KEY-test]\n"
        f"  - id: test-sub\n    baseurl: {base}/\n    gpgkey: [{base}/RPM-GPG-KEY-test]\n"
        "    mode: packages\n    packages: [pa]\n"
    )
    return path


@pytest.mark.slow
def test_subset_and_full_mirror_with_dnf_inside_an_air_gap(tmp_path: Path, yum_upstream: str) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}  # the site signing key lives here
    m = manifest(tmp_path / "yum.yaml", yum_upstream)
    res = gapcache("build", "-f", m, "-o", tmp_path / "yum.tar", "--store", tmp_path / "store", env=env)
    assert res.returncode == 0, res.stderr
    lock = json.loads((tmp_path / "yum.tar.lock.json").read_text())
    sub = next(i for i in lock["items"] if i["name"] == "test-sub")
    assert sub["resolved"]["packages"] == ["pa-2.0-1.x86_64", "pb-1.0-1.x86_64", "pc-1.0-1.noarch"]  # closure, newest
    assert "gapcache-site.pub" in sub["resolved"]["keys"]
    # the site's private key stays on the connected side: only the public key is in the archive
    assert not any("private" in a["path"] or a["path"].endswith(".key") for i in lock["items"] for a in i["artifacts"])
    out = tmp_path / "offline"
    out.mkdir()
    cmd = ["unshare", "-n", "bash", str(HERE / "airgap_yum.sh"), sys.executable, str(tmp_path / "yum.tar"),
           str(tmp_path / "root"), str(out)]  # fmt: skip
    res2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    logs = "".join(p.read_text() for p in out.glob("*.log"))
    assert res2.returncode == 0, res2.stdout + res2.stderr + logs
    assert (out / "route.txt").read_text() == ""
    installed = [x for x in (out / "installed.txt").read_text().split() if not x.startswith("gpg-pubkey")]
    assert installed == ["pa-2.0", "pb-1.0", "pc-1.0"]  # A and its closure, nothing else
    repo_file = (out / "repos.d/test-sub.repo").read_text()
    assert "gpgcheck=1" in repo_file and "repo_gpgcheck=1" in repo_file and "gapcache-site.pub" in repo_file
    # reposync of the full mirror reproduces the upstream repository
    synced = out / "sync/test-full"
    full = next(i for i in lock["items"] if i["name"] == "test-full")
    for a in full["artifacts"]:
        if a["path"].endswith(".rpm"):
            got = synced / a["path"].split("test-full/", 1)[1]
            assert got.is_file(), a["path"]
            assert "sha256:" + hashlib.sha256(got.read_bytes()).hexdigest() == a["digest"]
    assert (synced / "repodata/repomd.xml").is_file()


@pytest.mark.slow
def test_tampered_package_or_signature_fails_the_build(
    tmp_path: Path, yum_upstream: str, upstream_server: UpstreamHandle
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    m = manifest(tmp_path / "yum.yaml", yum_upstream)
    root = upstream_server.root / "el9"
    pkg = root / "Packages/pd-1.0-1.x86_64.rpm"
    original = pkg.read_bytes()
    pkg.write_bytes(original[:-10] + b"X" * 10)
    try:
        res = gapcache("build", "-f", m, "-o", tmp_path / "t.tar", "--store", tmp_path / "s1", env=env)
        assert res.returncode == 1
        assert "pd-1.0-1.x86_64.rpm" in res.stderr and "digest mismatch" in res.stderr
        assert not (tmp_path / "t.tar").exists()
    finally:
        pkg.write_bytes(original)
    sig = root / "repodata/repomd.xml.asc"
    original_sig = sig.read_bytes()
    repomd = root / "repodata/repomd.xml"
    original_md = repomd.read_bytes()
    repomd.write_bytes(original_md.replace(b"<revision>", b"<revision>1"))
    try:
        res = gapcache("build", "-f", m, "-o", tmp_path / "u.tar", "--store", tmp_path / "s2", env=env)
        assert res.returncode == 1
        assert "bad signature" in res.stderr and "repomd.xml" in res.stderr
    finally:
        repomd.write_bytes(original_md)
        sig.write_bytes(original_sig)


@pytest.mark.slow
def test_mirrorlist_all_versions_and_filtered_groups(
    tmp_path: Path, yum_upstream: str, upstream_server: UpstreamHandle
) -> None:
    upstream_server.put("el9-mirrors.txt", f"# mirrors\nhttp://127.0.0.1:1/dead/\n{yum_upstream}/\n".encode())
    m = tmp_path / "m.yaml"
    m.write_text(
        "format: 1\nyum:\n"
        f"  - id: all-a\n    mirrorlist: {upstream_server.base}/el9-mirrors.txt\n"
        f"    gpgkey: [{yum_upstream}/RPM-GPG-KEY-test]\n"
        "    mode: packages\n    packages: [pa]\n    newest_only: false\n"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    res = gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", tmp_path / "store", "--retries", "0", env=env)
    assert res.returncode == 0, res.stderr
    lock = json.loads((tmp_path / "a.tar.lock.json").read_text())
    item = lock["items"][0]
    assert item["resolved"]["packages"] == ["pa-1.0-1.x86_64", "pa-2.0-1.x86_64", "pb-1.0-1.x86_64", "pc-1.0-1.noarch"]
    assert all(a["source"].startswith(yum_upstream) for a in item["artifacts"] if a["path"].endswith(".rpm"))
    groups = [a for a in item["artifacts"] if a["path"].endswith("comps.xml")]
    assert len(groups) == 1 and groups[0]["source"] == "generated"
    comps = (tmp_path / "store/blobs/sha256" / groups[0]["digest"][7:]).read_text()
    assert "<id>gapcache-test</id>" in comps and ">pa<" in comps
    assert ">pd<" not in comps and "only-d" not in comps  # pd is not in the subset: its group is gone
    repomd = next(a for a in item["artifacts"] if a["path"].endswith("repodata/repomd.xml"))
    repomd_bytes = (tmp_path / "store/blobs/sha256" / repomd["digest"][7:]).read_bytes()
    assert b'type="group"' in repomd_bytes and b'type="modules"' in repomd_bytes
    mods = next(a for a in item["artifacts"] if "modules.yaml" in a["path"])
    import gzip as gz

    raw = (tmp_path / "store/blobs/sha256" / mods["digest"][7:]).read_bytes()
    text = (gz.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    assert "name: ma" in text and "pa-0:2.0-1.x86_64" in text
    assert "name: md" not in text and "pd-0:1.0-1.x86_64" not in text  # pd is not in the subset
    # generated repodata, groups, modules and the signature are reproducible: same inputs, same archive
    again = gapcache(
        "build", "-f", m, "-o", tmp_path / "b.tar", "--store", tmp_path / "store2", "--retries", "0", env=env
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "b.tar").read_bytes() == (tmp_path / "a.tar").read_bytes()

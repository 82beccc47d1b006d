"""The real upstream: the Debian archive this machine's apt is configured with (read from
/etc/apt/sources.list.d/*.sources, never hard-coded), `packages: [jq]` for amd64 and arm64, verified
with the system's Debian archive keyring. The subset holds jq, libjq1 and libonig5 for each
architecture (libc6 counted as installed with `base:`) and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aptrepo import host_debian_source
from conftest import gapcache
from gapcache.kinds.apt.packages import parse_packages
from gapcache.kinds.apt.release import verify_inrelease

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@pytest.mark.slow
def test_jq_subset_from_the_hosts_debian_archive(tmp_path: Path) -> None:
    source = host_debian_source()
    if source is None:
        pytest.skip("the host has no deb822 apt sources (/etc/apt/sources.list.d/*.sources) with a main component")
    if not KEYRING.exists():
        pytest.skip(f"{KEYRING} is not installed (debian-archive-keyring)")
    uri, suite = source
    m = tmp_path / "debian.yaml"
    m.write_text(
        f"format: 1\napt:\n  - id: debian-jq\n    url: {uri}\n    suites: [{suite}]\n    components: [main]\n"
        f"    architectures: [amd64, arm64]\n    keyring: {KEYRING}\n    mode: packages\n    packages: [jq]\n"
        "    base: [libc6]\n"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    res = gapcache("build", "-f", m, "-o", tmp_path / "d.tar", "--store", tmp_path / "store", timeout=900, env=env)
    assert res.returncode == 0, res.stderr
    item = json.loads((tmp_path / "d.tar.lock.json").read_text())["items"][0]
    assert item["resolved"]["verified"] is True  # InRelease checked with the Debian archive keyring
    names = {(n.split("_")[0], n.rsplit("_", 1)[1]) for n in item["resolved"]["packages"]}
    assert names == {(p, a) for p in ("jq", "libjq1", "libonig5") for a in ("amd64", "arm64")}, names
    arts = {a["path"]: a for a in item["artifacts"]}
    debs = [p for p in arts if p.endswith(".deb")]
    assert len(debs) == 6 and all(p.startswith("apt/debian-jq/pool/main/") for p in debs), debs

    def blob(path: str) -> bytes:
        digest: str = arts[path]["digest"]
        return (tmp_path / "store/blobs/sha256" / digest[7:]).read_bytes()

    top = f"apt/debian-jq/dists/{suite}/"
    release = verify_inrelease(blob(top + "InRelease"), blob("apt/debian-jq/key.gpg"), "published")
    assert release.suite is not None and "Acquire-By-Hash" not in release.raw.decode()
    for arch in ("amd64", "arm64"):
        records = parse_packages(blob(f"{top}main/binary-{arch}/Packages"))
        assert sorted(r.package for r in records) == ["jq", "libjq1", "libonig5"]
        assert {r.architecture for r in records} == {arch}

"""The apt kind against signed repositories built by tests/aptrepo.py and served on 127.0.0.1:
full mirrors byte-exact, dependency-closed subsets re-signed with the site key (reproducibly),
verification failures that name the repo or the file, the plan, and what :8001 serves."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from aptrepo import AptRepos, served_apt_repos
from conftest import UpstreamHandle, gapcache, serving
from gapcache.kinds.apt.release import verify_inrelease, verify_release

Lock = dict[str, object]


@pytest.fixture(scope="module")
def apt_repos(upstream_server: UpstreamHandle) -> AptRepos:
    return served_apt_repos(upstream_server.root)


@pytest.fixture(scope="module")
def site_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One site key for the module (its creation takes a second or two)."""
    return {"XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("aptconfig"))}


def manifest(path: Path, base: str, extra: str = "") -> Path:
    path.write_text(
        "format: 1\napt:\n"
        f"  - id: suite-full\n    url: {base}/apt/suite\n    suites: [stable]\n    components: [main]\n"
        f"    architectures: [amd64, arm64]\n    keyring: {base}/apt/key.asc\n"
        f"  - id: suite-sub\n    url: {base}/apt/suite\n    suites: [stable]\n    components: [main]\n"
        f"    architectures: [amd64, arm64]\n    keyring: {base}/apt/key.gpg\n    mode: packages\n    packages: [qa]\n"
        f"  - id: flat-sub\n    url: {base}/apt/flat/\n    suites: /\n    architectures: [amd64]\n"
        f"    keyring: {base}/apt/key.asc\n    mode: packages\n    packages: [qa]\n    recommends: true\n" + extra
    )
    return path


@pytest.fixture(scope="module")
def built(
    apt_repos: AptRepos,
    upstream_server: UpstreamHandle,
    site_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, dict[str, object]]]:
    tmp = tmp_path_factory.mktemp("aptbuild")
    m = manifest(tmp / "apt.yaml", upstream_server.base)
    res = gapcache("build", "-f", m, "-o", tmp / "apt.tar", "--store", tmp / "store", env=site_env)
    assert res.returncode == 0, res.stderr
    lock = json.loads((tmp / "apt.tar.lock.json").read_text())
    return tmp, {i["name"]: i for i in lock["items"]}


def blob(store: Path, art: dict[str, str]) -> bytes:
    return (store / "blobs/sha256" / art["digest"][7:]).read_bytes()


def arts(item: dict[str, object]) -> dict[str, dict[str, str]]:
    return {a["path"]: a for a in item["artifacts"]}  # type: ignore[attr-defined]


def test_full_mirror_keeps_upstream_metadata_byte_exact(
    built: tuple[Path, dict[str, dict[str, object]]], apt_repos: AptRepos
) -> None:
    tmp, items = built
    full = arts(items["suite-full"])
    for name in ("InRelease", "Release", "Release.gpg"):
        a = full[f"apt/suite-full/dists/stable/{name}"]
        assert blob(tmp / "store", a) == (apt_repos.suite / "dists/stable" / name).read_bytes()
    for arch in ("amd64", "arm64"):
        for c in ("", ".gz", ".xz"):
            a = full[f"apt/suite-full/dists/stable/main/binary-{arch}/Packages{c}"]
            upstream = (apt_repos.suite / f"dists/stable/main/binary-{arch}/Packages{c}").read_bytes()
            assert a["digest"] == "sha256:" + hashlib.sha256(upstream).hexdigest()
    debs = sorted(p.rsplit("/", 1)[1] for p in full if p.endswith(".deb"))
    assert debs == sorted(p.name for p in apt_repos.suite.rglob("*.deb"))  # every package, every version
    assert blob(tmp / "store", full["apt/suite-full/key.gpg"]) == apt_repos.keyring.read_bytes()  # dearmored
    assert full["apt/suite-full/key.gpg"]["source"] == "generated"


def test_subset_is_the_closure_signed_by_the_site_key(
    built: tuple[Path, dict[str, dict[str, object]]], apt_repos: AptRepos
) -> None:
    tmp, items = built
    sub = items["suite-sub"]
    assert sub["resolved"]["packages"] == [  # type: ignore[index]
        "qa_2.0_amd64", "qa_2.0_arm64", "qalt1_1.0_all", "qarmhelper_1.0_arm64", "qb_1.0_amd64", "qb_1.0_arm64",
        "qc_1.0_all", "qprov_1.0_amd64", "qprov_1.0_arm64"]  # fmt: skip
    a = arts(sub)
    key = blob(tmp / "store", a["apt/suite-sub/key.gpg"])
    inrelease = blob(tmp / "store", a["apt/suite-sub/dists/stable/InRelease"])
    rel = verify_inrelease(inrelease, key, "published")  # signed by the site key, not upstream's
    verify_release(blob(tmp / "store", a["apt/suite-sub/dists/stable/Release"]),
                   blob(tmp / "store", a["apt/suite-sub/dists/stable/Release.gpg"]), key, "published")  # fmt: skip
    assert key != apt_repos.keyring.read_bytes()
    assert "Acquire-By-Hash" not in rel.raw.decode() and rel.suite == "stable"
    for path in rel.sha256:  # every index the Release lists is served, with those bytes
        data = blob(tmp / "store", a[f"apt/suite-sub/dists/stable/{path}"])
        assert rel.sha256[path] == (hashlib.sha256(data).hexdigest(), len(data))
    packages = blob(tmp / "store", a["apt/suite-sub/dists/stable/main/binary-amd64/Packages"]).decode()
    upstream = (apt_repos.suite / "dists/stable/main/binary-amd64/Packages").read_text()
    stanzas = [s for s in packages.split("\n\n") if s.strip()]
    assert {s.split("\n", 1)[0] for s in stanzas} == {"Package: " + n for n in ("qa", "qb", "qc", "qalt1", "qprov")}
    assert all(s + "\n" in upstream for s in stanzas)  # upstream stanzas byte-exact
    assert all(x["source"] == "generated" for p, x in a.items() if not p.endswith(".deb"))
    flat = items["flat-sub"]
    assert "qrec_1.0_all" in flat["resolved"]["packages"]  # type: ignore[index]
    assert {p for p in arts(flat) if not p.endswith(".deb")} == {
        f"apt/flat-sub/{n}" for n in ("InRelease", "Release", "Release.gpg", "Packages", "Packages.gz", "Packages.xz",
                                      "key.gpg")}  # fmt: skip


@pytest.mark.slow
def test_subset_metadata_is_reproducible(
    built: tuple[Path, dict[str, dict[str, object]]], upstream_server: UpstreamHandle, site_env: dict[str, str]
) -> None:
    tmp, _ = built
    res = gapcache("build", "-f", tmp / "apt.yaml", "-o", tmp / "again.tar", "--store", tmp / "store2", env=site_env)
    assert res.returncode == 0, res.stderr
    assert (tmp / "again.tar").read_bytes() == (tmp / "apt.tar").read_bytes()


def test_plan_resolves_without_touching_the_store(
    apt_repos: AptRepos, upstream_server: UpstreamHandle, site_env: dict[str, str], tmp_path: Path
) -> None:
    m = manifest(tmp_path / "m.yaml", upstream_server.base)
    res = gapcache("build", "-f", m, "--plan", "--store", tmp_path / "store", env=site_env)
    assert res.returncode == 0, res.stderr
    assert "suite-sub" in res.stdout + res.stderr
    blobs = tmp_path / "store/blobs"
    assert not blobs.exists() or not any(blobs.rglob("*"))


@pytest.mark.slow
def test_tampered_packages_or_deb_fails_naming_the_file(
    apt_repos: AptRepos, upstream: UpstreamHandle, site_env: dict[str, str], tmp_path: Path
) -> None:
    m = manifest(tmp_path / "m.yaml", upstream.base)
    upstream.rule("apt/suite/dists/stable/main/binary-arm64/Packages.xz", wrong=True)  # replayed, other bytes
    res = gapcache("build", "-f", m, "-o", tmp_path / "t.tar", "--store", tmp_path / "s1", "--retries", "0",
                   env=site_env)  # fmt: skip
    assert res.returncode == 1 and not (tmp_path / "t.tar").exists()
    assert "main/binary-arm64/Packages.xz does not match its size/SHA256" in res.stderr, res.stderr
    failed = [line for line in res.stderr.splitlines() if "does not match" in line]
    assert len(failed) == 2 and "suite-full" in failed[0] + failed[1] and "suite-sub" in failed[0] + failed[1]
    upstream.reset()
    upstream.rule("apt/suite/pool/main/q/qunrel/qunrel_1.0_amd64.deb", wrong=True)  # only suite-full has it
    res = gapcache("build", "-f", m, "-o", tmp_path / "u.tar", "--store", tmp_path / "s2", "--retries", "0",
                   env=site_env)  # fmt: skip
    assert res.returncode == 1 and not (tmp_path / "u.tar").exists()
    assert "qunrel_1.0_amd64.deb" in res.stderr and "digest mismatch" in res.stderr, res.stderr


@pytest.mark.slow
def test_bad_or_wrong_signature_fails_unless_trusted(
    apt_repos: AptRepos, upstream_server: UpstreamHandle, site_env: dict[str, str], tmp_path: Path
) -> None:
    bad = upstream_server.root / "apt-badsig"
    if not bad.exists():
        shutil.copytree(apt_repos.suite, bad)
        inrelease = bad / "dists/stable/InRelease"
        inrelease.write_bytes(inrelease.read_bytes().replace(b"Label: gapcache test", b"Label: gapcache evil"))
        (bad / "dists/stable/Release.gpg").unlink()
    entry = (f"format: 1\napt:\n  - id: badsig\n    url: {upstream_server.base}/apt-badsig\n    suites: [stable]\n"
             f"    components: [main]\n    keyring: {upstream_server.base}/apt/key.gpg\n    mode: packages\n"
             "    packages: [qa]\n")  # fmt: skip
    m = tmp_path / "bad.yaml"
    m.write_text(entry)
    res = gapcache("build", "-f", m, "-o", tmp_path / "b.tar", "--store", tmp_path / "s", env=site_env)
    assert res.returncode == 1 and "badsig" in res.stderr and "bad signature" in res.stderr, res.stderr
    # the right repository, checked against another key
    (tmp_path / "other.yaml").write_text(
        entry.replace("/apt-badsig", "/apt/suite").replace("/apt/key.gpg", "/apt-other.gpg")
    )
    upstream_server.put("apt-other.gpg", Path("/usr/share/keyrings/debian-archive-keyring.gpg").read_bytes())
    res = gapcache("build", "-f", tmp_path / "other.yaml", "--plan", "--store", tmp_path / "s", env=site_env)
    out = res.stdout + res.stderr  # a plan reports on stdout
    assert res.returncode == 1 and "none of which is in the keyring" in out and "badsig" in out, out
    m.write_text(entry + "    trusted: true\n")  # said explicitly: mirrored, and re-signed by the site key
    res = gapcache("build", "-f", m, "-o", tmp_path / "t.tar", "--store", tmp_path / "s", env=site_env)
    assert res.returncode == 0, res.stderr
    item = json.loads((tmp_path / "t.tar.lock.json").read_text())["items"][0]
    assert item["resolved"]["verified"] is False and "qa_2.0_amd64" in item["resolved"]["packages"]


def test_mirror_serves_tree_key_and_sources(
    built: tuple[Path, dict[str, dict[str, object]]], apt_repos: AptRepos
) -> None:
    tmp, _ = built
    root = tmp / "root"
    if not root.exists():
        gapcache("load", tmp / "apt.tar", "--root", root, "-q", check=True)

    def get(port: int, path: str, host: str | None = None) -> bytes:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host} if host else {})
        with urllib.request.urlopen(req) as r:
            data: bytes = r.read()
            return data

    with serving(root, listener="repos") as (_, port):
        assert (
            get(port, "/suite-full/dists/stable/InRelease") == (apt_repos.suite / "dists/stable/InRelease").read_bytes()
        )
        assert get(port, "/suite-full/key.gpg") == apt_repos.keyring.read_bytes()
        assert get(port, "/flat-sub/./qa_2.0_amd64.deb") == (apt_repos.flat / "qa_2.0_amd64.deb").read_bytes()
        text = get(port, "/suite-sub.sources", host="mirror.lan:8001").decode()
        assert text.endswith(
            "Types: deb\nURIs: http://mirror.lan:8001/suite-sub/\nSuites: stable\nComponents: main\n"
            "Architectures: amd64 arm64\nSigned-By: /etc/apt/keyrings/suite-sub.gpg\n"
        ), text
        assert "curl -fsSLo /etc/apt/keyrings/suite-sub.gpg http://mirror.lan:8001/suite-sub/key.gpg" in text
        flat = get(port, "/flat-sub.sources").decode()
        assert f"URIs: http://127.0.0.1:{port}/flat-sub/\nSuites: /\nArchitectures: amd64\n" in flat
        assert "Components" not in flat and "Trusted" not in flat
    with serving(root, "--public-url", "http://apt.example:9000", listener="repos") as (_, port):
        assert "URIs: http://apt.example:9000/suite-full/\n" in get(port, "/suite-full.sources").decode()


@pytest.mark.slow
def test_an_architecture_from_another_archive(
    apt_repos: AptRepos, upstream_server: UpstreamHandle, site_env: dict[str, str], tmp_path: Path
) -> None:
    """Ubuntu's arm64 lives in a separate "ports" archive: `urls: {arm64: …}`."""
    ports = upstream_server.root / "apt-ports/suite"
    if not ports.exists():
        shutil.copytree(apt_repos.suite, ports)
    base = upstream_server.base
    entry = (f"    url: {base}/apt/suite\n    urls: {{arm64: '{base}/apt-ports/suite'}}\n    suites: [stable]\n"
             f"    components: [main]\n    architectures: [amd64, arm64]\n"
             f"    keyring: {base}/apt/key.gpg\n")  # fmt: skip
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\napt:\n  - id: multi-full\n{entry}  - id: multi-sub\n{entry}    mode: packages\n"
                 "    packages: [qa]\n")  # fmt: skip
    res = gapcache("build", "-f", m, "-o", tmp_path / "m.tar", "--store", tmp_path / "s", env=site_env)
    assert res.returncode == 0, res.stderr
    items = {i["name"]: i for i in json.loads((tmp_path / "m.tar.lock.json").read_text())["items"]}
    full = arts(items["multi-full"])
    assert items["multi-full"]["resolved"]["trees"] == {"": ["amd64"], "arm64/": ["arm64"]}
    assert (
        full["apt/multi-full/arm64/dists/stable/InRelease"]["source"]
        == f"{base}/apt-ports/suite/dists/stable/InRelease"
    )
    assert "apt/multi-full/dists/stable/main/binary-amd64/Packages.xz" in full
    assert "apt/multi-full/dists/stable/main/binary-arm64/Packages.xz" not in full
    assert full["apt/multi-full/arm64/pool/main/q/qa/qa_2.0_arm64.deb"]["source"].startswith(f"{base}/apt-ports/")
    sub = arts(items["multi-sub"])
    assert sub["apt/multi-sub/pool/main/q/qa/qa_2.0_arm64.deb"]["source"].startswith(f"{base}/apt-ports/")
    assert sub["apt/multi-sub/pool/main/q/qa/qa_2.0_amd64.deb"]["source"].startswith(f"{base}/apt/suite/")
    assert "apt/multi-sub/dists/stable/main/binary-arm64/Packages" in sub  # one new tree for both

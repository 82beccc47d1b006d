"""The apt building blocks (kinds/apt) against real repositories built by tests/aptrepo.py:
signature checks with gpgv, Packages parsing, closure with apt's own solver (isolated), and a
published subset that a real, isolated apt-get accepts with ``signed-by`` (no ``trusted=yes``)."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import re
import shutil
from pathlib import Path

import pytest
import zstandard

from aptrepo import AptRepos, build_apt_repos, make_key
from gapcache.errors import EnvironmentProblem, GapcacheError
from gapcache.kinds.apt.closure import AptSandbox, Chosen, resolve_closure, status_file
from gapcache.kinds.apt.errors import AptError, ResolveError, SignatureError
from gapcache.kinds.apt.packages import PackageRecord, parse_packages, write_packages
from gapcache.kinds.apt.publish import IndexKey, ReleaseMeta, Signer, public_key, publish_repo
from gapcache.kinds.apt.release import (
    Release,
    check_index,
    decompress,
    packages_indexes,
    release_dir,
    release_paths,
    verify_inrelease,
    verify_release,
)
from gapcache.kinds.apt.sources import render_list, render_sources

DEBIAN_LISTS = Path("/var/lib/apt/lists")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@pytest.fixture(scope="session")
def repos(tmp_path_factory: pytest.TempPathFactory) -> AptRepos:
    return build_apt_repos(tmp_path_factory.mktemp("aptrepos"))


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """The mirror's own signing key (also serves as 'the wrong key' for upstream checks)."""
    home = tmp_path_factory.mktemp("aptsite") / "gnupg"
    _, fpr = make_key(home, "gapcache site <site@test>")
    return Signer(home, fpr)


def suite_release(repos: AptRepos) -> Release:
    d = repos.suite / "dists/stable"
    return verify_inrelease((d / "InRelease").read_bytes(), repos.keyring, "test suite repo")


def index_records(repos: AptRepos, arch: str) -> tuple[bytes, list[PackageRecord]]:
    rel = suite_release(repos)
    ref = packages_indexes(rel, "main", arch)[0]
    data = check_index(ref, (repos.suite / "dists/stable" / ref.path).read_bytes(), "test")
    return data, parse_packages(data)


# --- release -------------------------------------------------------------------------------------


def test_inrelease_verifies_with_the_right_key_armored_or_binary(repos: AptRepos) -> None:
    d = repos.suite / "dists/stable"
    keys: list[Path | bytes | list[Path | bytes]] = [repos.keyring, repos.public_key, [repos.public_key, repos.keyring]]
    for key in keys:
        rel = verify_inrelease((d / "InRelease").read_bytes(), key, "suite")
        assert rel.signer == repos.fingerprint
        assert rel.raw == (d / "Release").read_bytes()  # only the signed text, byte-exact
        assert (rel.suite, rel.codename, rel.architectures, rel.components) == (
            "stable", "gapcache-test", ("amd64", "arm64"), ("main",))  # fmt: skip
        assert not rel.acquire_by_hash and rel.date_epoch and rel.date_epoch > 1_600_000_000
        sha, size = rel.sha256["main/binary-amd64/Packages"]
        data = (d / "main/binary-amd64/Packages").read_bytes()
        assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    flat = verify_inrelease((repos.flat / "InRelease").read_bytes(), repos.public_key, "flat")
    assert flat.components == () and "Packages.xz" in flat.sha256
    detached = verify_release((d / "Release").read_bytes(), (d / "Release.gpg").read_bytes(), repos.keyring, "x")
    assert detached.sha256 == suite_release(repos).sha256


def test_wrong_key_tampered_or_missing_signature_fails(repos: AptRepos, site: Signer) -> None:
    d = repos.suite / "dists/stable"
    inrelease, release, sig = ((d / n).read_bytes() for n in ("InRelease", "Release", "Release.gpg"))
    wrong = public_key(site)
    with pytest.raises(SignatureError, match=r"http://up\.example/debian.*none of which is in the keyring"):
        verify_inrelease(inrelease, wrong, "http://up.example/debian")
    with pytest.raises(SignatureError, match="bad signature"):
        verify_inrelease(inrelease.replace(b"Suite: stable", b"Suite: stablf"), repos.keyring, "suite")
    with pytest.raises(SignatureError, match="bad signature"):
        verify_release(release.replace(b"amd64 arm64", b"amd64 arm65"), sig, repos.keyring, "suite")
    with pytest.raises(SignatureError, match="not a clearsigned"):
        verify_inrelease(release, repos.keyring, "suite")
    with pytest.raises(SignatureError, match="empty"):
        verify_release(release, b"", repos.keyring, "suite")
    with pytest.raises(SignatureError, match="more than one message"):
        verify_inrelease(inrelease + b"Suite: evil\n", repos.keyring, "suite")
    assert issubclass(SignatureError, GapcacheError)


@pytest.mark.skipif(not DEBIAN_KEYRING.exists() or not list(DEBIAN_LISTS.glob("*_InRelease")),
                    reason="no Debian InRelease in the host's apt lists")  # fmt: skip
def test_real_debian_inrelease_with_several_signatures() -> None:
    path = sorted(DEBIAN_LISTS.glob("*debian_dists_*_InRelease"))[0]
    rel = verify_inrelease(path.read_bytes(), DEBIAN_KEYRING, str(path))
    assert rel.signer and rel.acquire_by_hash and "main" in rel.components
    refs = packages_indexes(rel, "main", "amd64")
    assert refs[0].path == "main/binary-amd64/Packages.xz"
    assert refs[0].by_hash == f"main/binary-amd64/by-hash/SHA256/{refs[0].sha256}"


def test_index_choice_paths_and_decompression(repos: AptRepos) -> None:
    rel = suite_release(repos)
    assert [r.path for r in packages_indexes(rel, "main", "arm64")] == [
        "main/binary-arm64/Packages.xz", "main/binary-arm64/Packages.gz", "main/binary-arm64/Packages"]  # fmt: skip
    assert packages_indexes(rel, "contrib", "amd64") == []
    assert release_paths("stable") == ("dists/stable/InRelease", "dists/stable/Release", "dists/stable/Release.gpg")
    assert release_dir("./") == release_dir("/") == "" and release_dir("sub/dir/") == "sub/dir/"
    ref = packages_indexes(rel, "main", "amd64")[0]
    good = (repos.suite / "dists/stable" / ref.path).read_bytes()
    with pytest.raises(AptError, match="does not match"):
        check_index(ref, good[:-1] + b"\0", "suite")
    plain = b"Package: x\n"
    for name, packed in (("P.gz", gzip.compress(plain)), ("P.xz", lzma.compress(plain)),
                         ("P.zst", zstandard.ZstdCompressor().compress(plain)), ("P", plain)):  # fmt: skip
        assert decompress(packed, name) == plain
    with pytest.raises(AptError, match="cannot decompress"):
        decompress(b"not xz", "Packages.xz")


# --- packages ------------------------------------------------------------------------------------


def test_packages_parse_fields_relations_and_raw_roundtrip(repos: AptRepos) -> None:
    data = (repos.flat / "Packages").read_bytes()
    recs = parse_packages(data, "flat")
    assert write_packages(recs) == data  # byte-exact for re-publishing
    assert len(recs) == 14
    qa = {r.version: r for r in recs if r.package == "qa" and r.architecture == "amd64"}
    assert set(qa) == {"1.0", "2.0"}
    a = qa["2.0"]
    assert (a.filename, a.depends, a.recommends) == ("./qa_2.0_amd64.deb", "qb (>= 1.0), qalt1 | qalt2, qvirt", "qrec")
    deb = (repos.flat / "qa_2.0_amd64.deb").read_bytes()
    assert (a.size, a.sha256) == (len(deb), hashlib.sha256(deb).hexdigest())
    assert [[alt["name"] for alt in g] for g in a.relations("Depends")] == [["qb"], ["qalt1", "qalt2"], ["qvirt"]]
    assert a.relations("Depends")[0][0]["version"] == (">=", "1.0")
    qb = next(r for r in recs if r.package == "qb")
    assert qb.pre_depends == "qc"
    assert next(r for r in recs if r.package == "qprov").provided_names() == ["qvirt"]
    assert a.raw.startswith(b"Package: qa\n") and a.raw.endswith(b"\n") and b"\n\n" not in a.raw
    with pytest.raises(AptError, match="lacks Filename"):
        parse_packages(b"Package: x\nVersion: 1\nArchitecture: all\n", "bad")


# --- closure -------------------------------------------------------------------------------------


def names(chosen: list[Chosen]) -> set[str]:
    return {c.record.package for c in chosen}


def test_closure_per_arch_with_and_without_recommends(repos: AptRepos, tmp_path: Path) -> None:
    amd64, _ = index_records(repos, "amd64")
    arm64, _ = index_records(repos, "arm64")
    want = {"qa", "qb", "qc", "qalt1", "qprov"}  # qvirt → its only provider; qalt1 first alternative
    got = resolve_closure([amd64], ["qa"], "amd64", workdir=tmp_path)
    assert names(got) == want
    assert {(c.record.package, c.record.version, c.record.architecture) for c in got} >= {
        ("qa", "2.0", "amd64"), ("qc", "1.0", "all")}  # fmt: skip
    assert names(resolve_closure([amd64], ["qa"], "amd64", recommends=True)) == want | {"qrec"}
    arm = resolve_closure([arm64], ["qa"], "arm64")
    assert names(arm) == want | {"qarmhelper"}
    assert {c.record.architecture for c in arm} == {"arm64", "all"}
    pinned = resolve_closure([repos.flat / "Packages.gz"], ["qa=1.0"], "amd64")
    assert {c.record.filename for c in pinned if c.record.package == "qa"} == {"./qa_1.0_amd64.deb"}
    both = resolve_closure([amd64, repos.flat / "Packages.xz"], ["qa", "qb"], "amd64")
    assert names(both) == want and all(c.index in (0, 1) for c in both)
    assert list(tmp_path.iterdir()) == []  # the sandbox is cleaned up


def test_closure_base_counts_as_installed(repos: AptRepos) -> None:
    amd64, recs = index_records(repos, "amd64")
    got = resolve_closure([amd64], ["qa"], "amd64", base=["qc", "qalt2"])
    assert names(got) == {"qa", "qb", "qprov"}  # qc installed; qalt2 installed satisfies qalt1 | qalt2
    status = status_file(["qc", "zlib1g=1:1.2"], recs, "amd64").decode()
    assert "Package: qc\nVersion: 1.0\nArchitecture: all\nStatus: install ok installed\n" in status
    assert "Package: zlib1g\nVersion: 1:1.2\nArchitecture: amd64\n" in status
    with pytest.raises(ResolveError, match="base package 'nosuch'"):
        resolve_closure([amd64], ["qa"], "amd64", base=["nosuch"])


def test_closure_errors_name_the_package(repos: AptRepos) -> None:
    amd64, _ = index_records(repos, "amd64")
    with pytest.raises(ResolveError, match=r"myrepo: no package named nosuch for amd64"):
        resolve_closure([amd64], ["qa", "nosuch"], "amd64", what="myrepo")
    with pytest.raises(ResolveError, match=r"qa has no version 9\.9"):
        resolve_closure([amd64], ["qa=9.9"], "amd64")
    with pytest.raises(ResolveError, match="qarmhelper"):  # qb on arm64 needs it; not in the amd64 index
        arm64, _ = index_records(repos, "arm64")
        resolve_closure([arm64.replace(b"Package: qarmhelper", b"Package: qgone")], ["qa"], "arm64")
    with pytest.raises(ResolveError, match="not a package name"):
        resolve_closure([amd64], ["-oDir=/"], "amd64")


def test_sandbox_sees_nothing_of_the_host(tmp_path: Path) -> None:
    sandbox = AptSandbox(tmp_path / "sb", "arm64")
    dump = sandbox.config_dump()
    outside = [ln for ln in dump.splitlines() if re.search(r'"/(?!' + re.escape(str(tmp_path).lstrip("/")) + ")", ln)]
    # only the tools' own paths remain; nothing from /etc/apt, /var/lib/apt, /var/lib/dpkg, /var/cache
    assert all(ln.startswith(("Dir::Bin::", "DPkg::Path ", "CommandLine::AsString ")) for ln in outside), outside
    assert 'APT::Architectures:: "arm64";' in dump and 'APT::Install-Recommends "false";' in dump
    assert "GzipIndexes" not in dump and "NeverAutoRemove" not in dump  # typical host apt.conf.d settings


def test_missing_tools_are_environment_problems(repos: AptRepos, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:  # fmt: skip
    inrelease = (repos.suite / "dists/stable/InRelease").read_bytes()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="gpgv not found"):
        verify_inrelease(inrelease, repos.keyring, "suite")
    with pytest.raises(EnvironmentProblem, match=r"apt-get not found.*connected host"):
        resolve_closure([b"Package: xy\n"], ["xy"], "amd64")


# --- publish + sources ---------------------------------------------------------------------------


def publish_subset(repos: AptRepos, site: Signer, flat: bool) -> tuple[dict[str, bytes], list[PackageRecord]]:
    """The closure of qa (amd64 + arm64) published with the site key, as the kind glue would do it."""
    indexes: dict[IndexKey, list[PackageRecord]] = {}
    if flat:
        rel = verify_inrelease((repos.flat / "InRelease").read_bytes(), repos.keyring, "flat")
        ref = packages_indexes(rel, None, "amd64")[0]
        data = check_index(ref, (repos.flat / ref.path).read_bytes(), "flat")
        for a in ("amd64", "arm64"):
            indexes[None, a] = [c.record for c in resolve_closure([data], ["qa"], a, recommends=True)]
    else:
        rel = suite_release(repos)
        for a in ("amd64", "arm64"):
            indexes["main", a] = [c.record for c in resolve_closure([index_records(repos, a)[0]], ["qa"], a)]
    meta = ReleaseMeta.from_upstream(rel, label="gapcache mirror")
    files = publish_repo(indexes, "./" if flat else "stable", meta, site)
    return files, [r for recs in indexes.values() for r in recs]


def test_publish_is_reproducible_and_well_formed(repos: AptRepos, site: Signer) -> None:
    first, _ = publish_subset(repos, site, flat=False)
    second, _ = publish_subset(repos, site, flat=False)
    assert first == second  # same inputs + same key → identical bytes, signatures included
    release = first["dists/stable/Release"].decode()
    upstream = suite_release(repos)
    assert f"Date: {upstream.date}\n" in release and "Acquire-By-Hash" not in release
    assert "Label: gapcache mirror\n" in release and "\nMD5Sum:\n" in release and "\nSHA256:\n" in release
    packages = {f"main/binary-{a}/Packages{c}" for a in ("amd64", "arm64") for c in ("", ".gz", ".xz")}
    assert set(first) == {f"dists/stable/{p}" for p in ("Release", "InRelease", "Release.gpg", *packages)}
    plain = first["dists/stable/main/binary-amd64/Packages"]
    assert gzip.decompress(first["dists/stable/main/binary-amd64/Packages.gz"]) == plain
    assert lzma.decompress(first["dists/stable/main/binary-amd64/Packages.xz"]) == plain
    verified = verify_inrelease(first["dists/stable/InRelease"], public_key(site), "published")
    assert verified.raw == first["dists/stable/Release"] and verified.signer == site.key_id
    verify_release(first["dists/stable/Release"], first["dists/stable/Release.gpg"], public_key(site, armor=True), "p")
    flat, _ = publish_subset(repos, site, flat=True)
    assert {"Packages", "Packages.gz", "Packages.xz", "Release", "InRelease", "Release.gpg"} == set(flat)
    assert flat == publish_subset(repos, site, flat=True)[0]


@pytest.mark.parametrize("flat", [False, True], ids=["suite", "flat"])
def test_published_repo_is_accepted_by_isolated_apt(repos: AptRepos, site: Signer, tmp_path: Path, flat: bool) -> None:
    files, records = publish_subset(repos, site, flat)
    served = tmp_path / "mirror"
    upstream_root = repos.flat if flat else repos.suite
    for path, data in files.items():
        (served / path).parent.mkdir(parents=True, exist_ok=True)
        (served / path).write_bytes(data)
    for r in records:
        (served / r.filename).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(upstream_root / r.filename, served / r.filename)
    key = served.parent / "site.gpg"
    key.write_bytes(public_key(site))
    sandbox = AptSandbox(served.parent / "apt", "amd64")
    # copy: is file: that also copies the debs into the cache, so the download is visible
    scheme = "copy" if flat else "file"
    uri = f"{scheme}:{served}"
    text = render_sources(uri, "./", signed_by=str(key)) if flat else render_sources(
        uri, "stable", ["main"], architectures=["amd64"], signed_by=str(key))  # fmt: skip
    assert "trusted" not in text.lower()
    sandbox.add_source(text)
    update = sandbox.apt_get("update")
    assert "NO_PUBKEY" not in update.stderr and "not signed" not in update.stderr, update.stderr
    res = sandbox.apt_get("install", "--download-only", "-y", "qa")
    want = {"qa", "qb", "qc", "qalt1", "qprov"}  # the sandbox has recommends off: no qrec
    # "Get:1 URI stable/main amd64 qc all 1.0 [636 B]" (suite), "Get:1 URI ./ qc 1.0 [636 B]" (flat)
    got = {line.split()[3 if flat else 4] for line in res.stdout.splitlines() if line.startswith("Get:")}
    assert got == want and "Download complete" in res.stdout, res.stdout
    if flat:
        debs = {p.name.split("_")[0] for p in (sandbox.root / "cache/archives").glob("*.deb")}
        assert debs == want
    # the wrong key is refused
    key.write_bytes(repos.keyring.read_bytes())
    shutil.rmtree(sandbox.root / "lists")
    (sandbox.root / "lists/partial").mkdir(parents=True)
    refused = sandbox.apt_get("update", check=False)
    assert "NO_PUBKEY" in refused.stdout + refused.stderr or "not signed" in refused.stdout + refused.stderr


def test_sources_rendering() -> None:
    assert render_sources("http://m:8001/cuda", "bookworm", ["main", "contrib"], architectures=["amd64"],
                          signed_by="/etc/apt/keyrings/cuda.gpg") == (
        "Types: deb\nURIs: http://m:8001/cuda\nSuites: bookworm\nComponents: main contrib\n"
        "Architectures: amd64\nSigned-By: /etc/apt/keyrings/cuda.gpg\n")  # fmt: skip
    assert render_sources("http://m:8001/nv", "./") == "Types: deb\nURIs: http://m:8001/nv\nSuites: ./\n"
    assert render_list("http://m/x", "./", signed_by="/k.gpg") == "deb [signed-by=/k.gpg] http://m/x ./\n"
    assert render_list("http://m/x", "jammy", ["main"], architectures=["amd64", "arm64"]) == (
        "deb [arch=amd64,arm64] http://m/x jammy main\n")  # fmt: skip
    with pytest.raises(AptError):
        render_sources("http://m/x", "./", ["main"])
    with pytest.raises(AptError):
        render_sources("http://m/x", "jammy")
    with pytest.raises(AptError):
        render_sources("http://m/x y", "jammy", ["main"])

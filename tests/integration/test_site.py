"""Site features on 127.0.0.1: signed archives (and the refusals), rollback / prune / serve --lock,
and the loop back (misses.jsonl → a manifest delta that validates and, built, closes the misses)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import UpstreamHandle, gapcache, serving
from gapcache.archive import ArchiveReader, pack
from gapcache.history import find_lock, history, prune, rollback
from gapcache.lock import read_lock
from gapcache.manifest import parse_manifest
from gapcache.root import Root
from gapcache.signing import SignatureRefused, load_private_key, sign
from gapcache.store import Store
from helpers import build_local
from sitekit import build_signed, get, make_keys, request_misses, root_snapshot, tamper_lock

V1 = {"dl/kubeadm": b"kubeadm v1\n" * 1000, "dl/shared": b"shared by both\n"}
V2 = {"dl/kubeadm": b"kubeadm v2\n" * 1000, "dl/shared": b"shared by both\n", "dl/new": b"new in v2\n"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("keys")
    return {"site": make_keys(tmp / "site"), "other": make_keys(tmp / "other")}


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, tuple[Path, Path]]) -> Path:
    tmp = tmp_path_factory.mktemp("signed")
    res = build_signed(tmp, V1, keys["site"][0])
    assert res.signer and res.lock_path and Path(str(res.lock_path) + ".sig").is_file()
    return tmp / "out.tar"


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("unsigned")
    build_local(tmp, V1)
    return tmp / "out.tar"


# ---- signing ------------------------------------------------------------------------------------------


def test_signature_is_the_member_after_the_lock_and_reproducible(
    signed: Path, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    with ArchiveReader(signed) as r:
        assert r.head.signature is not None
        assert json.loads(r.head.signature)["algorithm"] == "ed25519"
        assert len(list(r.blobs())) == 2  # the signature is not a blob
    lock = read_lock(signed.with_name("out.tar.lock.json"))
    signature = sign(load_private_key(keys["site"][0]), lock.to_bytes())  # ed25519 is deterministic
    again = pack(lock, Store(signed.parent / "store"), tmp_path / "again.tar", signature=signature)
    assert again.parts[0].read_bytes() == signed.read_bytes()


def test_good_signature_loads(tmp_path: Path, signed: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    res = gapcache("load", signed, "--root", tmp_path / "root", "--verify-key", keys["site"][1], "-q")
    assert res.returncode == 0, res.stderr
    assert Root(tmp_path / "root").current_lock().blobs()


@pytest.mark.parametrize("case", ["tampered", "wrong key", "missing signature"])
def test_refused_naming_why_and_nothing_written(
    case: str, tmp_path: Path, signed: Path, unsigned: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    archive, key, why = {
        "tampered": (tamper_lock(signed, tmp_path / "t.tar"), keys["site"][1], "changed after it was signed"),
        "wrong key": (signed, keys["other"][1], "not trusted here"),
        "missing signature": (unsigned, keys["site"][1], "not signed"),
    }[case]
    root = tmp_path / "root"
    res = gapcache("load", archive, "--root", root, "--verify-key", key, "-q")
    assert res.returncode == 1, res.stderr
    assert why in res.stderr and "nothing was loaded" in res.stderr, res.stderr
    assert not root.exists()


def test_tampered_lock_loads_without_keys_but_not_with_a_trusted_one(
    tmp_path: Path, signed: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """Without any trusted key nothing is checked (the tampered lock is self-consistent); the check
    is what refuses it."""
    bad = tamper_lock(signed, tmp_path / "t.tar")
    Root(tmp_path / "open").load([bad])
    with pytest.raises(SignatureRefused, match="changed after it was signed"):
        Root(tmp_path / "strict").load([bad], verify_keys=[keys["site"][1]])


def test_a_key_in_root_keys_makes_signatures_mandatory(
    tmp_path: Path, signed: Path, unsigned: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    root = tmp_path / "root"
    (root / "keys").mkdir(parents=True)
    shutil.copy(keys["site"][1], root / "keys" / "site.pub")
    before = root_snapshot(root)
    res = gapcache("load", unsigned, "--root", root, "-q")
    assert res.returncode == 1 and "not signed" in res.stderr and "site.pub" in res.stderr, res.stderr
    assert root_snapshot(root) == before
    res = gapcache("load", signed, "--root", root, "-q")
    assert res.returncode == 0, res.stderr


def test_split_archive_signs_every_part_and_the_toc(tmp_path: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    big = {f"dl/f{i}": bytes([i]) * 700_000 for i in range(3)}
    res = build_signed(tmp_path, big, keys["site"][0], split_size=1 << 20)
    assert res.packed and res.packed.toc and len(res.packed.parts) >= 2
    toc_sig = res.packed.toc.with_name(res.packed.toc.name + ".sig")
    assert toc_sig.is_file()
    for part in res.packed.parts:
        with ArchiveReader(part) as r:
            assert r.head.signature is not None
    Root(tmp_path / "root").load([res.packed.toc], verify_keys=[keys["site"][1]])
    doc = json.loads(res.packed.toc.read_text())  # a TOC changed after signing is refused
    doc["parts"][0]["size"] += 0
    res.packed.toc.write_text(json.dumps(doc, indent=2))
    with pytest.raises(SignatureRefused, match="changed after it was signed"):
        Root(tmp_path / "root2").load([res.packed.toc], verify_keys=[keys["site"][1]])


def test_bad_signing_key_fails_before_fetching(tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text("format: 1\nfiles:\n  - url: http://127.0.0.1:9/never\n")
    (tmp_path / "k").write_text("not a key\n")
    res = gapcache("build", "-f", m, "-o", tmp_path / "x.tar", "--store", tmp_path / "s", "--sign", tmp_path / "k")
    assert res.returncode == 2 and "not an unencrypted PEM private key" in res.stderr, res.stderr


# ---- rollback, prune, serve --lock -----------------------------------------------------------------------


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[Path, str, str]:
    b1, b2 = build_local(tmp_path / "v1", V1), build_local(tmp_path / "v2", V2)
    assert b1.lock and b2.lock
    root = tmp_path / "root"
    Root(root).load([tmp_path / "v1/out.tar"])
    time.sleep(0.01)  # the history is ordered by when each lock was loaded
    Root(root).load([tmp_path / "v2/out.tar"])
    return root, b1.lock.sha256(), b2.lock.sha256()


def test_rollback_serves_v1_then_prune_keeps_exactly_v2(two_versions: tuple[Path, str, str]) -> None:
    root, v1, v2 = two_versions
    assert history(Root(root)) == [f"{v2}.json", f"{v1}.json"]
    with serving(root) as (_, port):
        url = f"http://127.0.0.1:{port}/dl/kubeadm"
        assert get(url)[1] == V2["dl/kubeadm"]
        res = gapcache("rollback", "--root", root)
        assert res.returncode == 0 and v1 in res.stderr, res.stderr
        deadline = time.monotonic() + 10
        while get(url)[1] != V1["dl/kubeadm"] and time.monotonic() < deadline:  # serve follows `current`
            time.sleep(0.1)
        assert get(url)[1] == V1["dl/kubeadm"]
        assert get(f"http://127.0.0.1:{port}/dl/new")[0] == 404
    res = gapcache("rollback", "--root", root)  # nothing older than v1
    assert res.returncode == 1 and "nothing to roll back to" in res.stderr
    assert gapcache("rollback", "--root", root, "--to", v2[:12]).returncode == 0
    res = gapcache("prune", "--root", root, "--keep", "1")
    assert res.returncode == 0, res.stderr
    v2_blobs = {d.removeprefix("sha256:") for d in Root(root).current_lock().blobs()}
    assert {p.name for p in (root / "blobs/sha256").iterdir()} == v2_blobs
    assert [p.name for p in (root / "locks").iterdir()] == [f"{v2}.json"]
    assert Root(root).verify().ok
    res = gapcache("serve", "--root", root, "--lock", v1[:12], "--port", "files=0")
    assert res.returncode == 1 and "no loaded lock starts with" in res.stderr, res.stderr


def test_serve_lock_serves_an_older_lock_without_following(two_versions: tuple[Path, str, str]) -> None:
    root, v1, _ = two_versions
    with serving(root, "--lock", v1[:10]) as (_, port):
        assert get(f"http://127.0.0.1:{port}/dl/kubeadm")[1] == V1["dl/kubeadm"]
        assert get(f"http://127.0.0.1:{port}/dl/new")[0] == 404


def test_prune_never_removes_what_current_needs(two_versions: tuple[Path, str, str]) -> None:
    root, v1, v2 = two_versions
    r = Root(root)
    rollback(r)  # v1 is served now: keep 1 keeps v1, even though v2 was loaded later
    dry = prune(r, 1, dry_run=True)
    assert dry.kept == [f"{v1}.json"] and dry.removed_locks == [f"{v2}.json"] and dry.removed_blobs == 2
    assert len(list(r.store.digests())) == 4  # dry run: nothing removed
    prune(r, 1)
    assert set(r.store.digests()) == set(r.current_lock().blobs())
    with pytest.raises(Exception, match="no loaded lock"):
        find_lock(r, v2)


def test_prune_refuses_while_a_load_holds_the_root(two_versions: tuple[Path, str, str]) -> None:
    import fcntl
    import os

    root = two_versions[0]
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        res = gapcache("prune", "--root", root, "--keep", "1")
        assert res.returncode == 1 and "a load is running" in res.stderr
    finally:
        os.close(fd)


# ---- the loop back: misses → manifest delta ---------------------------------------------------------------


def test_misses_become_a_delta_that_validates_and_closes_them(tmp_path: Path, upstream: UpstreamHandle) -> None:
    kubeadm = upstream.put("misses/kubeadm", b"kubeadm\n")
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\nfiles:\n  - url: {kubeadm}\n")
    assert gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", tmp_path / "s", "-q").returncode == 0
    root = tmp_path / "root"
    assert gapcache("load", tmp_path / "a.tar", "--root", root, "-q").returncode == 0
    host = f"127.0.0.1_{upstream.port}"
    asked = {
        "files": [f"/{host}/misses/kubectl", f"/{host}/misses/kubeadm", "/favicon.ico"],
        "registry": ["/v2/", "/v2/nvcr.io/nvidia/cuda/manifests/12.4.1-base", "/v2/library/busybox/manifests/1.36",
                     "/v2/coredns/coredns/manifests/v1.11.1?ns=registry.k8s.io"],
        "pypi": ["/simple/Flask_SQLAlchemy/", "/simple/"],
    }  # fmt: skip
    request_misses(root, asked)
    res = gapcache("misses", "--root", root)
    assert res.returncode == 0, res.stderr
    delta = parse_manifest(res.stdout, "delta.yaml")  # validates
    assert [f.url for f in delta.files] == [f"http://127.0.0.1:{upstream.port}/misses/kubectl"]  # kubeadm is there
    assert sorted(i.ref for i in delta.images) == [
        "docker.io/library/busybox:1.36",
        "nvcr.io/nvidia/cuda:12.4.1-base",
        "registry.k8s.io/coredns/coredns:v1.11.1",
    ]
    assert delta.python is not None and delta.python.requirements == ["flask-sqlalchemy"]
    future = gapcache("misses", "--root", root, "--since", "2999-01-01T00:00:00Z")
    assert future.returncode == 0 and parse_manifest(future.stdout, "empty.yaml").files == []
    # the connected side builds the old manifest plus the delta's files; loaded, the miss is closed
    upstream.put("misses/kubectl", b"kubectl\n")
    (tmp_path / "delta.yaml").write_text("format: 1\nfiles:\n" + "".join(f"  - url: {f.url}\n" for f in delta.files))
    res = gapcache("build", "-f", m, "-f", tmp_path / "delta.yaml", "-o", tmp_path / "b.tar",
                   "--store", tmp_path / "s", "-q")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert gapcache("load", tmp_path / "b.tar", "--root", root, "-q").returncode == 0
    with serving(root) as (_, port):
        assert get(f"http://127.0.0.1:{port}/{host}/misses/kubectl") == (200, b"kubectl\n")
    later = parse_manifest(gapcache("misses", "--root", root).stdout, "later.yaml")
    assert later.files == []  # what the new lock holds is no longer a miss


def test_serve_archive_in_place_checks_the_signature(
    tmp_path: Path, signed: Path, unsigned: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """`serve --archive` loads nothing, so `--verify-key` is checked when it starts."""
    common = ["--bind", "127.0.0.1", "--port", "registry=0", "--port", "repos=0", "--port", "charts=0",
              "--port", "pypi=0", "--port", "files=0"]  # fmt: skip
    for archive, key, why in ((unsigned, "site", "not signed"), (signed, "other", "not trusted here")):
        res = gapcache("serve", "--archive", archive, "--verify-key", keys[key][1], *common, timeout=60)
        assert res.returncode == 1 and why in res.stderr, res.stderr
    with serving(signed, "--verify-key", str(keys["site"][1])) as (_, port):
        status, body = get(f"http://127.0.0.1:{port}/dl/shared")
        assert status == 200 and body == V1["dl/shared"]

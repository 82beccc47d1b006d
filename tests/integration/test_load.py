"""Loading archives into the offline root: verified, all or nothing, hostile members refused."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from conftest import gapcache
from gapcache.archive import LOCK_MEMBER, ArchiveReader
from gapcache.errors import ArchiveError, GapcacheError, UnsafeMember
from gapcache.root import Root
from helpers import build_local, random_bytes

CONTENT = {"dl/kubeadm": random_bytes(300_000), "dl/kubectl": random_bytes(200_000), "x/conf.yaml": b"a: 1\n"}


def snapshot(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("built")
    build_local(tmp, CONTENT)
    return tmp / "out.tar"


def test_load_then_load_again_is_a_noop(tmp_path: Path, built: Path) -> None:
    root = Root(tmp_path / "root")
    res = root.load([built])
    assert res.blobs_added == 3 and not res.already_loaded
    lock = root.current_lock()
    assert {a.path for a in lock.artifacts()} == {f"files/{k}" for k in CONTENT}
    for digest in lock.blobs():
        assert root.store.verify(digest)
    before = snapshot(tmp_path / "root")
    again = root.load([built])
    assert again.already_loaded
    assert snapshot(tmp_path / "root") == before
    assert not (tmp_path / "root/tmp").exists()
    assert root.verify().ok


def test_flipped_byte_fails_naming_the_blob_and_changes_nothing(tmp_path: Path, built: Path) -> None:
    bad = tmp_path / "bad.tar"
    data = bytearray(built.read_bytes())
    with ArchiveReader(built) as r:
        victim = next(b for b in r.blobs() if b.size == 200_000)
    assert victim.offset is not None
    data[victim.offset + 99_999] ^= 0x40
    bad.write_bytes(bytes(data))
    # a root that already serves something: it must be left exactly as it was
    old = build_local(tmp_path / "old", {"other": b"other\n"})
    root_dir = tmp_path / "root"
    Root(root_dir).load([tmp_path / "old/out.tar"])
    before = snapshot(root_dir)
    with pytest.raises(ArchiveError, match=f"blob {victim.digest} is corrupt"):
        Root(root_dir).load([bad])
    assert snapshot(root_dir) == before
    assert old.lock is not None
    # and from the command line: exit 1, one clear line
    res = gapcache("load", bad, "--root", tmp_path / "fresh", "-q")
    assert res.returncode == 1
    assert victim.digest in res.stderr and "corrupt" in res.stderr
    assert not (tmp_path / "fresh").exists()


def _lock_bytes(built: Path) -> bytes:
    with ArchiveReader(built) as r:
        return r.head.lock_bytes


def _crafted(path: Path, lock: bytes, evil: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(LOCK_MEMBER)
        ti.size = len(lock)
        tf.addfile(ti, io.BytesIO(lock))
        evil.size = len(data) if evil.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
        tf.addfile(evil, io.BytesIO(data) if data else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    return ti


OUTSIDE = "/tmp/gapcache-load-test-outside"  # noqa: S108 - must never be created


@pytest.mark.parametrize(
    ("label", "member", "why"),
    [
        ("dotdot", _member("../x"), "path traversal"),
        ("dotdot-deep", _member("blobs/sha256/../../../x"), "path traversal"),
        ("absolute", _member(OUTSIDE), "absolute path"),
        ("symlink", _member("blobs/sha256/" + "a" * 64, tarfile.SYMTYPE, OUTSIDE), "link to"),
        ("hardlink", _member("blobs/sha256/" + "b" * 64, tarfile.LNKTYPE, "/etc/passwd"), "link to"),
        ("chardev", _member("blobs/sha256/" + "c" * 64, tarfile.CHRTYPE), "device"),
        ("fifo", _member("blobs/sha256/" + "d" * 64, tarfile.FIFOTYPE), "device or fifo"),
        ("directory", _member("blobs/sha256/", tarfile.DIRTYPE), "directory"),
        ("unlisted-name", _member("install-me.sh"), "not a member of a gapcache archive"),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, built: Path, label: str, member: tarfile.TarInfo, why: str) -> None:
    evil = _crafted(tmp_path / f"{label}.tar", _lock_bytes(built), member, b"#!/bin/sh\necho owned\n")
    root_dir = tmp_path / "sub" / "root"
    with pytest.raises(UnsafeMember, match=why):
        Root(root_dir).load([evil])
    assert not Path(OUTSIDE).exists()
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "sub").exists()  # not even the root directory was left behind


def test_blob_not_in_the_lock_is_refused(tmp_path: Path, built: Path) -> None:
    extra = b"smuggled"
    member = _member("blobs/sha256/" + hashlib.sha256(extra).hexdigest())
    evil = _crafted(tmp_path / "extra.tar", _lock_bytes(built), member, extra)
    root_dir = tmp_path / "root"
    root_dir.mkdir()
    with pytest.raises(ArchiveError, match="not listed in the lock"):
        Root(root_dir).load([evil])
    assert snapshot(root_dir) == {}


def test_incomplete_archive_is_refused_naming_a_missing_blob(tmp_path: Path, built: Path) -> None:
    lock = _lock_bytes(built)
    path = tmp_path / "lockonly.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(LOCK_MEMBER)
        ti.size = len(lock)
        tf.addfile(ti, io.BytesIO(lock))
    with pytest.raises(ArchiveError, match=r"neither in the archive nor in .*first missing: sha256:"):
        Root(tmp_path / "root").load([path])
    assert not (tmp_path / "root").exists()


def test_differential_needs_its_base(tmp_path: Path) -> None:
    base = build_local(tmp_path / "base", {"a": b"a" * 100, "b": b"b" * 100})
    assert base.lock is not None
    build_local(tmp_path / "delta", {"a": b"a" * 100, "b": b"b" * 100, "c": b"c" * 100}, since=base.lock)
    with pytest.raises(ArchiveError, match="differential archive whose base is not loaded"):
        Root(tmp_path / "empty").load([tmp_path / "delta/out.tar"])
    root = Root(tmp_path / "root")
    root.load([tmp_path / "base/out.tar"])
    res = root.load([tmp_path / "delta/out.tar"])
    assert res.blobs_added == 1
    assert len(root.current_lock().blobs()) == 3 and root.verify().ok
    assert len(list((tmp_path / "root/locks").iterdir())) == 2  # every lock ever loaded is kept


def test_split_and_compressed_archives_load(tmp_path: Path) -> None:
    content = {f"f{i}": random_bytes(300_000) for i in range(5)}
    res = build_local(tmp_path, content, "split.tar", split_size=1 << 20)
    assert res.packed is not None and res.packed.toc is not None
    root = Root(tmp_path / "r1")
    assert root.load([res.packed.toc]).blobs_added == 5
    build_local(tmp_path, content, "o.tar.zst", store="s2", compress="zstd")
    root2 = Root(tmp_path / "r2")
    assert root2.load([tmp_path / "o.tar.zst"]).blobs_added == 5
    assert root.current_name() == root2.current_name()  # same lock, same name


def test_missing_part_is_named(tmp_path: Path) -> None:
    res = build_local(tmp_path, {f"f{i}": random_bytes(400_000) for i in range(4)}, split_size=1 << 20)
    assert res.packed is not None and res.packed.toc is not None
    res.packed.parts[1].unlink()
    with pytest.raises(GapcacheError, match=res.packed.parts[1].name):
        Root(tmp_path / "root").load([res.packed.toc])

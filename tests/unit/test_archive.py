from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from gapcache.archive import LOCK_MEMBER, ArchiveReader, read_head, verify_archive
from gapcache.lock import Lock
from helpers import build_local, random_bytes

CONTENT = {
    "b/one.bin": random_bytes(700_000),
    "a/two.txt": b"two\n",
    "c/three.bin": random_bytes(1500),
    "d/same-as-two.txt": b"two\n",  # shared content: stored and packed once
}


def test_members_lock_first_then_sorted_blobs_with_fixed_headers(tmp_path: Path) -> None:
    res = build_local(tmp_path, CONTENT)
    archive = tmp_path / "out.tar"
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names[0] == LOCK_MEMBER
    blobs = names[1:]
    assert blobs == sorted(blobs)
    digests = {hashlib.sha256(d).hexdigest() for d in CONTENT.values()}
    assert blobs == [f"blobs/sha256/{h}" for h in sorted(digests)]  # 4 files, 3 distinct blobs
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mode, m.mtime) == (0, 0, "", "", 0o644, 0)
        assert m.type == tarfile.REGTYPE
    assert members[0].pax_headers.get("GAPCACHE.format") == "1"
    assert archive.stat().st_size % 10240 == 0
    # the lock beside the archive is the same bytes as the first member
    assert res.lock_path is not None
    with tarfile.open(archive) as tf:
        f = tf.extractfile(LOCK_MEMBER)
        assert f is not None
        assert f.read() == res.lock_path.read_bytes()


def test_archive_bytes_are_reproducible(tmp_path: Path) -> None:
    build_local(tmp_path, CONTENT, "one.tar", store="s1")
    build_local(tmp_path, CONTENT, "two.tar", store="s2")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()


def test_verify_detects_a_flipped_byte(tmp_path: Path) -> None:
    build_local(tmp_path, CONTENT)
    archive = tmp_path / "out.tar"
    assert verify_archive([archive]).ok
    with ArchiveReader(archive) as r:
        blob = next(b for b in r.blobs() if b.size == 700_000)
        offset = blob.offset
    assert offset is not None
    data = bytearray(archive.read_bytes())
    data[offset + 1234] ^= 0x01
    archive.write_bytes(bytes(data))
    report = verify_archive([archive])
    assert not report.ok
    assert any(blob.digest in p and "corrupt" in p for p in report.problems)


def test_split_parts_are_self_contained_with_toc(tmp_path: Path) -> None:
    content = {f"f{i}.bin": random_bytes(400_000) for i in range(6)}
    res = build_local(tmp_path, content, split_size=1 << 20)
    assert res.packed is not None and res.packed.toc is not None
    parts = res.packed.parts
    assert len(parts) >= 3
    toc = json.loads(res.packed.toc.read_text())
    assert [p["name"] for p in toc["parts"]] == [p.name for p in parts]
    seen = []
    for part, entry in zip(parts, toc["parts"], strict=True):
        assert part.stat().st_size == entry["size"] <= 1 << 20
        assert hashlib.sha256(part.read_bytes()).hexdigest() == entry["sha256"]
        with tarfile.open(part) as tf:
            names = tf.getnames()
        assert names[0] == LOCK_MEMBER
        seen += names[1:]
    assert len(seen) == len(set(seen)) == 6
    assert verify_archive([res.packed.toc]).ok


def test_differential_archive_holds_only_new_blobs(tmp_path: Path) -> None:
    old = build_local(tmp_path / "old", {"a": b"a" * 1000, "b": b"b" * 1000})
    assert old.lock is not None
    new = build_local(tmp_path / "new", {"a": b"a" * 1000, "b": b"b" * 1000, "c": b"c" * 1000}, since=old.lock)
    with tarfile.open(tmp_path / "new" / "out.tar") as tf:
        names = tf.getnames()
    assert names == [LOCK_MEMBER, "blobs/sha256/" + hashlib.sha256(b"c" * 1000).hexdigest()]
    head = read_head(tmp_path / "new" / "out.tar")
    assert head.since == old.lock.sha256()
    assert new.lock is not None and len(head.lock.blobs()) == 3
    report = verify_archive([tmp_path / "new" / "out.tar"])
    assert report.ok and report.differential and report.missing == 2


def test_zstd_archive_round_trips(tmp_path: Path) -> None:
    res = build_local(tmp_path, CONTENT, out_name="out.tar.zst", compress="zstd")
    archive = tmp_path / "out.tar.zst"
    assert archive.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert res.lock is not None
    report = verify_archive([archive])
    assert report.ok and report.blobs == 3


def test_lock_is_deterministic_whatever_the_manifest_order(tmp_path: Path) -> None:
    one = build_local(tmp_path / "1", CONTENT)
    two = build_local(tmp_path / "2", dict(reversed(list(CONTENT.items()))))
    assert one.lock_path is not None and two.lock_path is not None
    a, b = one.lock_path.read_bytes(), two.lock_path.read_bytes()
    # sources differ (different temp dirs); everything else must be identical
    norm = [x.replace(str(tmp_path / "1"), "T").replace(str(tmp_path / "2"), "T") for x in (a.decode(), b.decode())]
    assert norm[0] == norm[1]
    assert b"time" not in a


def test_corrupt_or_foreign_archive_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.tar"
    bad.write_bytes(b"this is not a tar file" * 100)
    with pytest.raises(Exception, match="not a"):
        read_head(bad)
    other = tmp_path / "other.tar"
    (tmp_path / "hello.txt").write_text("hi")
    with tarfile.open(other, "w") as tf:
        tf.add(tmp_path / "hello.txt", arcname="hello.txt")
    with pytest.raises(Exception, match="not a gapcache archive"):
        read_head(other)


def test_lock_roundtrip_validates() -> None:
    with pytest.raises(ValueError):
        Lock.model_validate(
            {
                "format": 1,
                "items": [
                    {
                        "kind": "file",
                        "name": "x",
                        "request": {},
                        "artifacts": [
                            {
                                "path": "files/../x",
                                "source": "http://h/x",
                                "digest": "sha256:" + "0" * 64,
                                "size": 1,
                            }
                        ],
                    }
                ],
            }
        )

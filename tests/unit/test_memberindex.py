"""The cached member index of an archive served in place (archive/memberindex.py), and the compact
lock it is keyed by (lock.py: batch parsing, to_bytes, shared parses)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from gapcache.archive import ArchiveReader, memberindex
from gapcache.blobs import BlobIndex
from gapcache.lock import Artifact, Item, Lock, parse_lock
from helpers import build_local, random_bytes

CONTENT = {f"f{i:03d}.bin": random_bytes(1000 + i * 37) for i in range(40)}


def _archive(tmp_path: Path) -> tuple[list[Path], Lock]:
    res = build_local(tmp_path, CONTENT)
    assert res.packed is not None and res.lock is not None
    return list(res.packed.parts), res.lock


def _slow(part: Path, n: int = 0) -> list[memberindex.Member]:
    with ArchiveReader(part) as r:
        return [(b.digest, n, b.offset or 0, b.size) for b in r.blobs()]


def _lock_sha(part: Path) -> str:
    with ArchiveReader(part) as r:
        return hashlib.sha256(r.head.lock_bytes).hexdigest()


def test_fast_scan_matches_the_archive_reader(tmp_path: Path) -> None:
    parts, _ = _archive(tmp_path)
    assert memberindex.scan(parts) == _slow(parts[0])


def test_fast_scan_hands_unusual_archives_to_the_reader(tmp_path: Path) -> None:
    """A tar written by tar (GNU headers, a directory) is not gapcache's layout: ArchiveReader reads
    it and refuses it, naming the member."""
    parts, _ = _archive(tmp_path)
    odd = tmp_path / "odd.tar"
    with tarfile.open(parts[0]) as src, tarfile.open(odd, "w", format=tarfile.GNU_FORMAT) as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        d = tarfile.TarInfo("blobs/dir")
        d.type = tarfile.DIRTYPE
        dst.addfile(d)
    with pytest.raises(Exception, match="blobs/dir"):
        memberindex.scan([odd])


def test_index_is_written_beside_the_archive_and_reused(tmp_path: Path) -> None:
    parts, lock = _archive(tmp_path)
    expected = lock.blobs()
    first = memberindex.members(parts, _lock_sha(parts[0]), expected)
    index = memberindex.index_path(parts)
    assert index == parts[0].with_name(parts[0].name + ".index") and index.is_file()
    key = memberindex._key(parts, _lock_sha(parts[0]))
    assert memberindex.read_index(index, key, expected) == first
    assert sorted(first) == sorted(_slow(parts[0]))


@pytest.mark.parametrize(
    "damage",
    ["flip a record byte", "truncate", "other lock", "archive touched", "garbage", "drop a record"],
)
def test_stale_or_damaged_index_is_ignored(tmp_path: Path, damage: str) -> None:
    parts, lock = _archive(tmp_path)
    expected = lock.blobs()
    sha = _lock_sha(parts[0])
    good = memberindex.members(parts, sha, expected)
    index = memberindex.index_path(parts)
    data = bytearray(index.read_bytes())
    key = memberindex._key(parts, sha)
    if damage == "flip a record byte":
        data[-40] ^= 0xFF
        index.write_bytes(data)
    elif damage == "truncate":
        index.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        index.write_bytes(os.urandom(300))
    elif damage == "other lock":
        key = memberindex._key(parts, "0" * 64)
    elif damage == "archive touched":
        st = parts[0].stat()
        os.utime(parts[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        key = memberindex._key(parts, sha)
    elif damage == "drop a record":  # a well-formed index that does not name every blob of the lock
        found = good[1:]
        memberindex.write_index(parts, key, found)
    assert memberindex.read_index(index, key, expected) is None
    # members() rebuilds it from the headers, and the rebuilt index is sound again
    assert sorted(memberindex.members(parts, key["lock_sha256"], expected)) == sorted(good)  # type: ignore[arg-type]
    assert memberindex.read_index(index, key, expected) is not None


def test_unwritable_directory_uses_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, lock = _archive(tmp_path / "ro")
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    if os.geteuid() == 0:  # root writes anywhere: make the directory refuse by being a file's place
        monkeypatch.setattr(memberindex, "index_path", lambda p: tmp_path / "not-a-dir" / "x.index")
        (tmp_path / "not-a-dir").write_text("a file, not a directory")
    else:
        parts[0].parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        BlobIndex.from_archive(parts)
        cached = memberindex.cache_path(parts)
        assert cached.is_file() and str(cached).startswith(str(cache))
        index, _ = BlobIndex.from_archive(parts)
        assert set(index.locs) == set(lock.blobs())
    finally:
        parts[0].parent.chmod(0o755)


def test_split_archive_index_names_each_part(tmp_path: Path) -> None:
    content = {f"f{i}.bin": random_bytes(300_000) for i in range(5)}
    res = build_local(tmp_path, content, split_size=1 << 20)
    assert res.packed is not None and res.lock is not None
    parts = list(res.packed.parts)
    index, _ = BlobIndex.from_archive(parts)
    again, _ = BlobIndex.from_archive(parts)
    assert index.locs == again.locs
    for d, loc in index.locs.items():
        data = loc.path.read_bytes()[loc.offset : loc.offset + loc.size]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d
    assert {loc.path for loc in index.locs.values()} == {p.resolve() for p in parts}


# ---- the lock, compact -------------------------------------------------------------------------


def _varied() -> Lock:
    items = [
        Item(
            kind="x",
            name="n\u00e9",
            request={"a": [1, 2.5, {"z": None, "b": True}], "u": 'q"\\\n'},
            resolved={"k": {}, "l": []},
            artifacts=[Artifact(path="files/a", source="generated", digest="sha256:" + "a" * 64, size=3)],
        ),
        Item(kind="file", name="files/b", request={}, artifacts=[]),
        Item(
            kind="file",
            name="files/c",
            request={"url": "http://h/c"},
            artifacts=[Artifact(path="files/c", source="http://h/c", digest="sha256:" + "c" * 64, size=0)],
        ),
    ]
    return Lock.build(items)


def test_lock_bytes_are_those_of_one_json_dump() -> None:
    for lock in (_varied(), Lock(items=[])):
        reference = json.dumps(lock.model_dump(mode="json"), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        assert lock.to_bytes() == reference.encode()


def test_lock_parsed_in_batches_equals_the_whole_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    import gapcache.lock as lockmod

    monkeypatch.setattr(lockmod, "_BATCH", 1)
    lock = _varied()
    data = lock.to_bytes()
    parsed = lockmod._parse_batches(data)
    assert parsed == lock == Lock.model_validate_json(data)
    assert parse_lock(data, "x") is parse_lock(bytes(data), "y")  # one object while it lives


def test_lock_in_another_layout_and_bad_locks_still_explained() -> None:
    lock = _varied()
    compact = json.dumps(lock.model_dump(mode="json")).encode()
    assert parse_lock(compact, "compact") == lock
    bad = lock.to_bytes().replace(b'"size": 3', b'"size": -3')
    with pytest.raises(Exception, match=r"bad\.json: invalid lock: .*size"):
        parse_lock(bad, "bad.json")
    newer = lock.to_bytes().replace(b'"format": 1', b'"format": 2')
    with pytest.raises(Exception, match="newer than this gapcache"):
        parse_lock(newer, "newer.json")
    traversal = lock.to_bytes().replace(b'"path": "files/c"', b'"path": "files/../c"')
    with pytest.raises(Exception, match=r"\.\."):
        parse_lock(traversal, "t.json")


def test_shared_field_sets_do_not_leak_between_copies() -> None:
    a = Artifact(path="files/a", source="s", digest="sha256:" + "a" * 64, size=1)
    b = Artifact(path="files/b", source="s", digest="sha256:" + "b" * 64, size=2)
    assert a.model_fields_set is b.model_fields_set
    c = a.model_copy(update={"media_type": "text/plain"})
    assert "media_type" in c.model_fields_set and "media_type" not in a.model_fields_set
    assert a.model_dump(exclude_unset=True) == {"path": "files/a", "source": "s", "digest": a.digest, "size": 1}

"""What ``serve`` does before its first answer, kept cheap at 100,000 blobs (issue 16, goal 5):
the archive's lock is named by the sha256 of its bytes (never serialised again), the member headers
are read a block at a time, the files tree is built in one pass, the cyclic collector is paused
while the lock's models are made — and nothing of what is checked changes."""

from __future__ import annotations

import gc
import hashlib
import random
import tarfile
from pathlib import Path

import pytest

from gapcache.archive import ArchiveReader, memberindex
from gapcache.blobs import BlobIndex, BlobLoc
from gapcache.errors import GapcacheError
from gapcache.filetree import FilesTree
from gapcache.lock import Artifact, Item, Lock, gc_paused, parse_lock
from gapcache.serve import ServeConfig, make_apps
from helpers import build_local, random_bytes

# small blobs around a large one (more than a read-ahead block) and a name long enough for a PAX header
CONTENT = {f"d{i % 3}/f{i:03d}.bin": random_bytes(700 + i * 53) for i in range(60)}
CONTENT["big/large.bin"] = random_bytes(200_000)
CONTENT["long/" + "n" * 120 + ".bin"] = random_bytes(3000)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    res = build_local(tmp_path_factory.mktemp("startup"), CONTENT)
    assert res.packed is not None
    return next(iter(res.packed.parts))


def _reader(part: Path) -> list[memberindex.Member]:
    with ArchiveReader(part) as r:
        return [(b.digest, 0, b.offset or 0, b.size) for b in r.blobs()]


@pytest.mark.parametrize("block", [512, 1000, 4096, 64 * 1024])
def test_block_scan_gives_the_readers_members(archive: Path, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the read-ahead block (headers across its end, a blob larger than it, PAX records),
    the offsets are the ones ArchiveReader finds, member by member, and the fast path was taken."""
    monkeypatch.setattr(memberindex, "_BLOCK", block)
    fast = [(d, 0, o, s) for d, o, s in memberindex._scan_fast(archive, {})]
    assert fast == _reader(archive)
    assert len(fast) == len(CONTENT)


def test_a_blob_member_twice_is_not_the_fast_layout(archive: Path, tmp_path: Path) -> None:
    twice = tmp_path / "twice.tar"
    with tarfile.open(archive) as src, tarfile.open(twice, "w", format=tarfile.PAX_FORMAT) as dst:
        members = src.getmembers()
        for m in [*members, members[-1]]:
            dst.addfile(m, src.extractfile(m))
    with pytest.raises(memberindex._Unusual, match="twice"):
        list(memberindex._scan_fast(twice, {}))


def test_archive_lock_is_named_by_its_bytes_without_serialising_it(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ArchiveReader(archive) as r:
        lock_bytes, lock = r.head.lock_bytes, r.head.lock
    assert hashlib.sha256(lock_bytes).hexdigest() == lock.sha256()  # gapcache's archives: the same name as before

    def refuse(self: Lock) -> bytes:
        raise AssertionError("the lock was serialised again")

    monkeypatch.setattr(Lock, "to_bytes", refuse)
    index, _ = BlobIndex.from_archive([archive])
    assert index.lock_sha256 == hashlib.sha256(lock_bytes).hexdigest()
    mirror = make_apps(ServeConfig(archive=[archive], ports={"files": 1}))
    try:
        (served,) = mirror.listeners["files"].sets()
        assert served.lock == index.lock_sha256 + ".json"
        assert served.bytes == sum(len(v) for v in CONTENT.values())
    finally:
        mirror.misses.close()


def _tree_of(
    items: list[Item], blobs: BlobIndex
) -> tuple[dict[str, object], dict[str, tuple[list[str], dict[str, int]]]]:
    tree = FilesTree(items, blobs)
    return dict(tree.files), {p: (sorted(d.dirs), dict(sorted(d.files.items()))) for p, d in tree.dirs.items()}


def test_files_tree_does_not_depend_on_the_order_of_items() -> None:
    """Built in one pass that reuses the directory of the previous file: items in any order (a lock
    is sorted, a hand-made list need not be) give the same files and directories."""
    rng = random.Random(7)
    paths = [f"files/h/{a}/{b}/f{n}" for a in "xyz" for b in "pq" for n in range(5)] + ["files/top", "files/h/x/g"]
    items, locs = [], {}
    for n, path in enumerate(paths):
        digest = "sha256:" + hashlib.sha256(path.encode()).hexdigest()
        locs[digest] = BlobLoc(digest, Path("/nowhere"), 0, n)
        art = Artifact(path=path, source="file:///x", digest=digest, size=n)
        items.append(Item(kind="file", name=path, request={}, artifacts=[art]))
    blobs = BlobIndex(locs, 0.0)
    expected = _tree_of(sorted(items, key=lambda i: i.name), blobs)
    for _ in range(5):
        rng.shuffle(items)
        assert _tree_of(items, blobs) == expected
    files, dirs = expected
    assert len(files) == len(paths)
    assert dirs["/"] == (["h"], {"top": len(paths) - 2})
    assert dirs["/h/x/"] == (["p", "q"], {"g": len(paths) - 1})
    assert dirs["/h/z/q/"][1] == {f"f{n}": paths.index(f"files/h/z/q/f{n}") for n in range(5)}


@pytest.mark.parametrize("enabled", [True, False])
def test_parsing_a_lock_puts_the_collector_back_as_it_was(enabled: bool) -> None:
    lock = Lock.build([Item(kind="file", name="a", request={}, artifacts=[
        Artifact(path="files/a", source="file:///a", digest="sha256:" + "a" * 64, size=1)])])  # fmt: skip
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        assert parse_lock(lock.to_bytes() + b" ", "ok.json") == lock
        assert gc.isenabled() is enabled
        with pytest.raises(GapcacheError, match="invalid lock"):
            parse_lock(b'{"format": 1, "items": [{"kind": 1}]}', "bad.json")
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()

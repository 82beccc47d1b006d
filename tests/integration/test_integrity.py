"""Nothing lost, nothing trusted (issue 10, items 2, 3, 15, 17, 18): the lock's own integrity, split
TOCs checked on load, corrupt root blobs moved aside and restored, readable files, no leftovers,
and messages that say what is true."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import gapcache
from gapcache.archive import LOCK_MEMBER, ArchiveReader, pack, read_head
from gapcache.errors import ArchiveError, DiskFull, FormatError, GapcacheError
from gapcache.root import Root
from gapcache.store import Store, check_space
from helpers import build_local, random_bytes

CONTENT = {"dl/kubeadm": random_bytes(300_000, 3), "dl/kubectl": random_bytes(200_000, 5), "x/conf.yaml": b"a: 1\n"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("integrity")
    build_local(tmp, CONTENT)
    return tmp / "out.tar"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _lock_member_span(archive: Path) -> tuple[int, int, int]:
    """(start of the lock member's headers, start of its data, its size) in an uncompressed archive."""
    with tarfile.open(archive) as tf:
        ti = tf.next()
        assert ti is not None and ti.name == LOCK_MEMBER
        return ti.offset, ti.offset_data, ti.size


# ---- item 2: the lock inside an archive is checked -------------------------------------------------


def test_200_bit_flips_in_the_lock_member_load_nothing(tmp_path: Path, built: Path) -> None:
    data = built.read_bytes()
    _, start, size = _lock_member_span(built)
    rng = random.Random(10)
    bad = tmp_path / "flipped.tar"
    loaded, refused = 0, []
    for _ in range(200):
        pos = start + rng.randrange(size)
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        bad.write_bytes(bytes(flipped))
        root = tmp_path / "root"
        try:
            Root(root).load([bad])
            loaded += 1
            shutil.rmtree(root)
        except GapcacheError as exc:
            refused.append(str(exc))
            assert not root.exists()  # a refused load leaves nothing behind
    assert loaded == 0, f"{loaded} of 200 archives with a damaged lock were loaded"
    assert all("lock" in msg for msg in refused), [m for m in refused if "lock" not in m][:3]
    # from the command line: a non-zero exit and one clear line
    res = gapcache("load", bad, "--root", tmp_path / "cli-root", "-q")
    assert res.returncode == 1 and "lock member is damaged" in res.stderr and "Traceback" not in res.stderr


def test_bit_flips_in_the_lock_header_never_change_what_is_loaded(tmp_path: Path, built: Path) -> None:
    data = built.read_bytes()
    hstart, dstart, _ = _lock_member_span(built)
    original = read_head(built).lock_bytes
    rng = random.Random(11)
    bad = tmp_path / "flipped.tar"
    for _ in range(150):
        flipped = bytearray(data)
        flipped[hstart + rng.randrange(dstart - hstart)] ^= 1 << rng.randrange(8)
        bad.write_bytes(bytes(flipped))
        root = Root(tmp_path / "root")
        try:
            root.load([bad])
        except GapcacheError:
            assert not root.path.exists()
            continue
        # only a flip in unused bytes (padding) may load, and then the lock is the packed one
        assert (root.locks / root.current_name()).read_bytes() == original
        shutil.rmtree(root.path)


def test_the_lock_digest_is_in_the_pax_header_and_archives_stay_reproducible(tmp_path: Path) -> None:
    one = build_local(tmp_path, CONTENT, "one.tar", store="s1")
    build_local(tmp_path, CONTENT, "two.tar", store="s2")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    with tarfile.open(tmp_path / "one.tar") as tf:
        first = tf.next()
    assert first is not None and one.lock is not None
    assert first.pax_headers["GAPCACHE.lock_sha256"] == one.lock.sha256()


def _split(tmp_path: Path) -> tuple[list[Path], Path]:
    res = build_local(
        tmp_path, {f"f{i}": random_bytes(300_000, i + 2) for i in range(5)}, "split.tar", split_size=1 << 20
    )
    assert res.packed is not None and res.packed.toc is not None
    return res.packed.parts, res.packed.toc


def _edit_toc(toc: Path, **changes: object) -> None:
    doc = json.loads(toc.read_text())
    doc.update(changes)
    toc.write_text(json.dumps(doc))


def test_split_toc_fields_are_checked_on_load(tmp_path: Path) -> None:
    parts, toc = _split(tmp_path)
    good = toc.read_text()
    # damage outside any blob (the end-of-archive padding): only the part's sha256 can tell
    data = bytearray(parts[1].read_bytes())
    data[-5] ^= 0x10
    parts[1].write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=rf"{parts[1].name}: sha256 does not match the table of contents"):
        Root(tmp_path / "r1").load([toc])
    assert not (tmp_path / "r1").exists()
    data[-5] ^= 0x10
    parts[1].write_bytes(bytes(data))
    _edit_toc(toc, lock_sha256="0" * 64)
    with pytest.raises(ArchiveError, match=r"is not the one .* names"):
        Root(tmp_path / "r2").load([toc])
    toc.write_text(good)
    _edit_toc(toc, format=2)
    with pytest.raises(FormatError, match="format 2 is newer"):
        Root(tmp_path / "r3").load([toc])
    toc.write_text(good)
    _edit_toc(toc, format="1")
    with pytest.raises(ArchiveError, match="damaged table of contents"):
        Root(tmp_path / "r4").load([toc])
    toc.write_text(good)
    assert Root(tmp_path / "r5").load([toc]).blobs_added == 5


# ---- item 18: what a user types, and messages that say what is true --------------------------------


def test_load_dir_star_recognises_toc_and_lock_files_by_content(tmp_path: Path) -> None:
    _, toc = _split(tmp_path / "a")
    everything = sorted((tmp_path / "a").glob("split*"))  # what the shell gives for DIR/split*
    assert toc in everything and (tmp_path / "a/split.tar.lock.json") in everything
    res = gapcache("load", *everything, "--root", tmp_path / "root", "-q")
    assert res.returncode == 0, res.stderr
    assert Root(tmp_path / "root").verify().ok
    assert gapcache("verify", *everything, "-q").returncode == 0
    # a single archive with its lock beside it, named in any order
    build_local(tmp_path / "b", CONTENT)
    b = tmp_path / "b"
    res = gapcache("load", b / "out.tar.lock.json", b / "out.tar", "--root", tmp_path / "root2", "-q")
    assert res.returncode == 0, res.stderr
    # a part that the TOC does not list is refused, by name
    stray = tmp_path / "b/out.tar"
    with pytest.raises(ArchiveError, match="not a part listed in"):
        Root(tmp_path / "root3").load([toc, stray])


def test_damaged_tar_header_is_named_by_member_and_offset(tmp_path: Path, built: Path) -> None:
    with ArchiveReader(built) as r:
        blobs = [(b.digest, b.offset) for b in r.blobs()]
    digest, offset = blobs[1]
    assert offset is not None
    data = bytearray(built.read_bytes())
    data[offset - 512 + 103] ^= 0x04  # inside the member's tar header (its mode field)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArchiveError) as info:
        Root(tmp_path / "root").load([bad])
    msg = str(info.value)
    assert f"damaged tar header at offset {offset - 512}" in msg
    assert f"blobs/sha256/{digest[7:]}" in msg and "neither in the archive" not in msg
    # the same for a truncated archive
    bad.write_bytes(bytes(built.read_bytes()[: offset - 300]))
    with pytest.raises(ArchiveError, match=f"truncated at offset {offset - 512}"):
        Root(tmp_path / "root").load([bad])
    assert not (tmp_path / "root").exists()


def test_disk_space_message_shows_two_different_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needed = 1_150_000  # + 1 MiB margin = 2.14 MiB, against 2.13 MiB free: both "2.1 MiB"
    monkeypatch.setattr("gapcache.store.free_space", lambda path: needed + (1 << 20) - 5_000)
    with pytest.raises(DiskFull) as info:
        check_space(tmp_path, needed)
    msg = str(info.value)
    assert msg.startswith(f"not enough disk space in {tmp_path}: need ")
    need, free = msg.split(": need ", 1)[1].split(", ")
    assert need.split(" (")[0] != free.removesuffix(" free"), msg


# ---- item 15: readable by a non-root serve ---------------------------------------------------------


def test_loaded_files_are_world_readable_whatever_the_umask(tmp_path: Path, built: Path) -> None:
    old = os.umask(0o077)
    try:
        root = Root(tmp_path / "deepops")
        root.load([built])
    finally:
        os.umask(old)
    files = [root.current_file, *root.locks.iterdir(), *root.store.blobs.iterdir()]
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o644"}, {f.name: oct(f.stat().st_mode) for f in files}
    dirs = [root.path, root.locks, root.store.blobs.parent, root.store.blobs]
    assert {oct(d.stat().st_mode & 0o777) for d in dirs} == {"0o755"}
    # and the build side: the lock beside the archive, and the blobs of the store
    res = build_local(tmp_path / "b", CONTENT)
    assert res.lock_path is not None and res.lock_path.stat().st_mode & 0o777 == 0o644
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "b/store/blobs/sha256").iterdir()} == {0o644}


# ---- item 3: a corrupt blob in the root is moved aside, and restored -------------------------------


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # same size: trusted by size, wrong by content


def test_verify_root_moves_corrupt_blobs_aside_and_load_restores_them(tmp_path: Path, built: Path) -> None:
    root = Root(tmp_path / "root")
    root.load([built])
    victim = next(d for d, s in root.current_lock().blobs().items() if s == 200_000)
    _corrupt(root.store.path(victim))
    res = gapcache("verify", "--root", root.path, "-q")
    assert res.returncode == 1
    assert victim in res.stderr and "moved to" in res.stderr
    assert not root.store.path(victim).exists()
    assert (root.path / "corrupt" / victim[7:]).exists()
    res = gapcache("load", built, "--root", root.path, "-q")
    assert res.returncode == 0, res.stderr
    assert root.store.verify(victim) and root.verify().ok


def test_load_replaces_a_corrupt_blob_it_carries(tmp_path: Path, built: Path) -> None:
    root = Root(tmp_path / "root")
    build_local(tmp_path / "small", {"dl/kubectl": CONTENT["dl/kubectl"]})
    root.load([tmp_path / "small/out.tar"])
    only = next(iter(root.current_lock().blobs()))
    _corrupt(root.store.path(only))
    res = root.load([built])
    assert root.verify().ok
    assert res.repaired == [only]


def test_verify_of_a_build_store_checks_every_blob(tmp_path: Path) -> None:
    build_local(tmp_path, CONTENT)
    store = Store(tmp_path / "store")
    victim = next(d for d in store.digests() if store.path(d).stat().st_size == 300_000)
    _corrupt(store.path(victim))
    report = Root(store.root).verify()
    assert not report.ok and victim in report.problems[0]
    assert not store.has(victim)  # nothing trusts it by its size any more: the next build fetches it


# ---- item 17: leftovers ----------------------------------------------------------------------------


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path: Path, built: Path) -> None:
    res = build_local(tmp_path, CONTENT)
    assert res.lock is not None
    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".out.tar.tmp-{dead}", tmp_path / f".out.part002.tar.tmp-{dead}"]
    live = tmp_path / f".out.tar.tmp-{alive}"
    for p in [*stale, live]:
        p.write_bytes(b"x" * 1000)
    pack(res.lock, Store(tmp_path / "store"), tmp_path / "out.tar")
    assert not any(p.exists() for p in stale) and live.exists()
    # the store's temp files, and a load's staging
    store = Store(tmp_path / "store")
    (store.tmp / f"put-{dead}-abc").write_bytes(b"x")
    (store.tmp / f"local-{dead}-abc").write_bytes(b"x")
    build_local(tmp_path, CONTENT)
    assert not (store.tmp / f"put-{dead}-abc").exists() and not (store.tmp / f"local-{dead}-abc").exists()
    root = Root(tmp_path / "root")
    (root.store.tmp / f"load-{dead}-xyz").mkdir(parents=True)
    (root.store.tmp / f"load-{dead}-xyz" / "blob").write_bytes(b"x")
    (root.path / f".current.tmp-{dead}-q").write_bytes(b"x")
    root.load([built])
    assert not (root.store.tmp).exists() and not (root.path / f".current.tmp-{dead}-q").exists()


def test_refused_load_leaves_no_tmp_and_no_root(tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(path: Path, needed: int, margin: int = 1 << 20) -> None:
        raise DiskFull(str(path), needed + margin, 0)

    monkeypatch.setattr("gapcache.root.check_space", no_space)
    for root_dir in (tmp_path / "new" / "root", tmp_path / "existing"):
        if root_dir.name == "existing":
            root_dir.mkdir()
        with pytest.raises(DiskFull):
            Root(root_dir).load([built])
        assert not (root_dir / "tmp").exists()
    assert not (tmp_path / "new").exists()
    assert list((tmp_path / "existing").iterdir()) == []


def _fail_lock_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing a lock file into the root fails (an I/O error after the blobs were published)."""
    import gapcache.root as root_mod
    from gapcache.store import atomic_write as real

    def failing(path: Path, data: bytes, mode: int = 0o644) -> None:
        if path.parent.name == "locks":
            raise OSError(5, "Input/output error")
        real(path, data, mode)

    monkeypatch.setattr(root_mod, "atomic_write", failing)


def test_load_failing_to_write_the_lock_leaves_no_blob(
    tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root_dir = tmp_path / "root"
    root_dir.mkdir()
    _fail_lock_writes(monkeypatch)
    with pytest.raises(OSError):
        Root(root_dir).load([built])
    assert [str(p.relative_to(root_dir)) for p in root_dir.rglob("*")] == []  # exactly as it was: empty


def test_a_failed_load_keeps_blobs_another_lock_in_the_root_needs(
    tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two loads at once: if one fails after publishing its blobs, it must not take away a blob the
    other (already written) lock needs."""
    import json as _json

    from gapcache.archive import read_head

    root_dir = tmp_path / "root"
    (root_dir / "locks").mkdir(parents=True)
    lock = read_head(built).lock
    shared = next(iter(lock.blobs()))
    other = {"format": 1, "items": [{"kind": "file", "name": "x", "request": {}, "resolved": {}, "artifacts": [
        {"path": "files/x", "source": "y", "digest": shared, "size": lock.blobs()[shared],
         "media_type": "application/octet-stream"}]}]}  # fmt: skip
    (root_dir / "locks" / ("0" * 64 + ".json")).write_text(_json.dumps(other))  # the other load's lock

    _fail_lock_writes(monkeypatch)
    with pytest.raises(OSError):
        Root(root_dir).load([built])
    left = {p.name for p in (root_dir / "blobs" / "sha256").iterdir()}
    assert left == {shared[7:]}  # the shared blob stays; the others this load brought are gone

"""Crash resume (kill -9 mid-download) and a full disk, against the real upstream."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import UpstreamHandle, cli_env, gapcache, sha256, write_manifest
from helpers import small_tmpfs

MB = 1 << 20


def _store_is_clean(store: Path) -> None:
    """Every blob in the store hashes to its name: no partial or unverified blob is visible."""
    for blob in (store / "blobs/sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def _wait_partial(store: Path, at_least: int, proc: subprocess.Popen[str], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "build finished before it could be killed"
        sizes = []
        for p in (store / "tmp").glob("partial-*") if (store / "tmp").exists() else []:
            if p.suffix in (".lock", ".validator"):
                continue
            with contextlib.suppress(FileNotFoundError):  # completed and renamed meanwhile
                sizes.append(p.stat().st_size)
        if sizes and max(sizes) >= at_least:
            return max(sizes)
        time.sleep(0.01)
    raise TimeoutError("partial download did not grow")


def _build_killed_at(manifest: Path, out: Path, store: Path, mark: int) -> None:
    """Start `gapcache build` and kill -9 it once a partial download holds at least ``mark`` bytes."""
    cmd = [sys.executable, "-m", "gapcache", "build", "-f", str(manifest), "-o", str(out), "--store", str(store)]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_partial(store, mark, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_kill_9_at_several_points_then_resume(tmp_path: Path, upstream: UpstreamHandle) -> None:
    big = os.urandom(24 * MB)
    smalls = {f"k/small{i}.bin": os.urandom(10_000 + i) for i in range(5)}
    files = [{"url": upstream.put("k/big.bin", big), "sha256": sha256(big)}]
    files += [{"url": upstream.put(p, d)} for p, d in smalls.items()]  # unpinned: digest learnt on fetch
    upstream.rule("k/big.bin", rate=8 * MB)
    m = write_manifest(tmp_path / "m.yaml", files)
    store = tmp_path / "store"
    kills = 0
    for mark in (2 * MB, 9 * MB, 16 * MB):
        _build_killed_at(m, tmp_path / "o.tar", store, mark)
        kills += 1
        upstream.rule("k/big.bin", rate=8 * MB)  # rules survive; re-arm for clarity
        assert not (store / "blobs/sha256" / sha256(big)).exists()
        _store_is_clean(store)
        assert not (tmp_path / "o.tar").exists()
    res = gapcache("build", "-f", m, "-o", tmp_path / "o.tar", "--store", store)
    assert res.returncode == 0, res.stderr
    _store_is_clean(store)
    assert (store / "blobs/sha256" / sha256(big)).read_bytes() == big
    assert not list((store / "tmp").glob("partial-*"))
    stats = upstream.stats()
    for path, data in smalls.items():  # finished before the first kill: fetched exactly once
        assert stats["/" + path]["bytes"] == len(data), path
    st = stats["/k/big.bin"]
    offsets = [int(r[6:].rstrip("-")) for r in st["ranges"] if r]
    assert len(offsets) == kills and offsets == sorted(offsets) and offsets[0] >= 2 * MB
    # each kill can lose what was in flight (socket buffers), never what was written
    assert st["bytes"] <= len(big) + kills * 4 * MB


@pytest.mark.slow
def test_unpinned_resume_after_the_upstream_changed_starts_over(tmp_path: Path, upstream: UpstreamHandle) -> None:
    old, new = os.urandom(12 * MB), os.urandom(12 * MB)
    url = upstream.put("k/changing.bin", old)
    upstream.rule("k/changing.bin", rate=8 * MB)
    m = write_manifest(tmp_path / "m.yaml", [{"url": url}])  # no sha256: only the validator protects a resume
    store = tmp_path / "store"
    _build_killed_at(m, tmp_path / "o.tar", store, 3 * MB)
    upstream.put("k/changing.bin", new)  # a new release under the same URL
    res = gapcache("build", "-f", m, "-o", tmp_path / "o.tar", "--store", store)
    assert res.returncode == 0, res.stderr
    lock = (tmp_path / "o.tar.lock.json").read_text()
    assert sha256(new) in lock and sha256(old) not in lock  # never a splice of the two
    assert (store / "blobs/sha256" / sha256(new)).read_bytes() == new
    st = upstream.stats()["/k/changing.bin"]
    assert st["ranges"][-1].startswith("bytes=")  # it did ask to resume, and got the whole new file


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "tiny") as mnt:
        yield mnt


def _nothing_partial(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.is_file()]
    for p in leftovers:  # only complete, verified blobs (and their HTTP validators) may remain: the cache
        if p.name == "sources.jsonl":  # HTTP validators of fetched URLs: only for blobs that exist
            for line in p.read_text().splitlines():
                assert (root / "store/blobs/sha256" / json.loads(line)["digest"][7:]).exists(), line
            continue
        assert p.parent.name == "sha256" and hashlib.sha256(p.read_bytes()).hexdigest() == p.name, p


@pytest.mark.slow
def test_full_disk_known_size_fails_before_writing(tiny_disk: Path, upstream: UpstreamHandle) -> None:
    data = os.urandom(6 * MB)
    m = write_manifest(tiny_disk.parent / "m.yaml", [{"url": upstream.put("disk/big.bin", data)}])
    res = gapcache("build", "-f", m, "-o", tiny_disk / "o.tar", "--store", tiny_disk / "store")
    assert res.returncode == 3, res.stderr
    assert "not enough disk space" in res.stderr
    assert not (tiny_disk / "o.tar").exists()
    _nothing_partial(tiny_disk)


@pytest.mark.slow
def test_full_disk_unknown_size_fails_cleanly(tiny_disk: Path, upstream: UpstreamHandle) -> None:
    data = os.urandom(6 * MB)
    small = b"fits\n"
    m = write_manifest(
        tiny_disk.parent / "m.yaml",
        [{"url": upstream.put("disk/chunked.bin", data)}, {"url": upstream.put("disk/small.txt", small)}],
    )
    upstream.rule("disk/chunked.bin", chunked=True)  # no Content-Length: ENOSPC is the first sign
    res = gapcache("build", "-f", m, "-o", tiny_disk / "o.tar", "--store", tiny_disk / "store")
    assert res.returncode == 3, res.stderr
    assert "disk full" in res.stderr
    assert not (tiny_disk / "o.tar").exists()
    _nothing_partial(tiny_disk)


@pytest.mark.slow
def test_full_disk_when_packing(tmp_path: Path, tiny_disk: Path, upstream: UpstreamHandle) -> None:
    data = os.urandom(6 * MB)
    m = write_manifest(tmp_path / "m.yaml", [{"url": upstream.put("disk/pack.bin", data), "sha256": sha256(data)}])
    res = gapcache("build", "-f", m, "-o", tiny_disk / "o.tar", "--store", tmp_path / "store")
    assert res.returncode == 3, res.stderr
    assert "not enough disk space in " + str(tiny_disk) in res.stderr
    assert list(tiny_disk.iterdir()) == []

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from gapcache.errors import DigestMismatch
from gapcache.fetch import Downloader, FetchJob
from gapcache.store import Store, atomic_write


def test_put_and_commit_are_content_addressed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.put_bytes(b"hello")
    assert digest == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.path(digest).read_bytes() == b"hello"
    assert store.verify(digest)
    assert list(store.digests()) == [digest]
    assert list(store.tmp.iterdir()) == []


def test_mismatched_download_leaves_no_blob_and_no_temp(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"actual content")
    store = Store(tmp_path / "store")
    wrong = "sha256:" + "0" * 64

    async def go() -> None:
        async with Downloader(store) as dl:
            await dl.fetch(FetchJob(src.as_uri(), wrong))

    with pytest.raises(DigestMismatch) as info:
        asyncio.run(go())
    assert info.value.expected == wrong
    assert info.value.actual == "sha256:" + hashlib.sha256(b"actual content").hexdigest()
    assert list(store.blobs.iterdir()) == []
    assert list(store.tmp.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")

    with pytest.raises(TypeError):
        atomic_write(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]

"""Downloader.fetch_many (one item's artifacts in parallel) and the per-request costs it avoids
(a validator file for one-read bodies, aiohttp's trust_env lookups when nothing is configured),
against the real upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from conftest import UpstreamHandle, sha256
from gapcache.errors import HTTPStatusError
from gapcache.fetch import Downloader, FetchJob, FetchResult
from gapcache.httpmeta import env_matters, one_read
from gapcache.store import Store

KIB = 1024


def _run(store: Path, jobs: list[FetchJob], concurrency: int = 8) -> list[FetchResult]:
    async def go() -> list[FetchResult]:
        async with Downloader(Store(store), concurrency=concurrency, retries=0, auth=None) as dl:
            return await dl.fetch_many(jobs)

    return asyncio.run(go())


def _slow_files(upstream: UpstreamHandle, n: int, size: int, rate: int) -> tuple[list[FetchJob], list[bytes]]:
    jobs, datas = [], []
    for i in range(n):
        data = os.urandom(size + i)
        url = upstream.put(f"many/{i}.bin", data)
        upstream.rule(f"many/{i}.bin", rate=rate)
        jobs.append(FetchJob(url, f"sha256:{sha256(data)}", len(data), label=f"many/{i}.bin"))
        datas.append(data)
    return jobs, datas


def test_fetch_many_fetches_in_parallel_and_answers_in_order(tmp_path: Path, upstream: UpstreamHandle) -> None:
    # 8 files of 64 KiB at 64 KiB/s: about 1 s each, 8 s one after the other
    jobs, datas = _slow_files(upstream, 8, 64 * KIB, 64 * KIB)
    t0 = time.monotonic()
    results = _run(tmp_path / "store", jobs)
    elapsed = time.monotonic() - t0
    assert [r.digest for r in results] == [j.digest for j in jobs]
    assert [r.size for r in results] == [len(d) for d in datas]
    for d in datas:
        assert (tmp_path / "store/blobs/sha256" / sha256(d)).read_bytes() == d
    assert elapsed < 5, f"{elapsed:.1f} s: not in parallel"
    assert not list((tmp_path / "store/tmp").iterdir())  # no partial, lock nor validator left


def test_fetch_many_keeps_to_the_concurrency(tmp_path: Path, upstream: UpstreamHandle) -> None:
    jobs, _ = _slow_files(upstream, 4, 32 * KIB, 64 * KIB)  # 0.5 s each
    t0 = time.monotonic()
    _run(tmp_path / "store", jobs, concurrency=2)
    assert time.monotonic() - t0 >= 0.9  # two rounds of two, never all four at once


def test_fetch_many_first_failure_is_raised_and_stops_the_rest(tmp_path: Path, upstream: UpstreamHandle) -> None:
    jobs, _ = _slow_files(upstream, 6, 256 * KIB, 64 * KIB)  # 4 s each
    missing = FetchJob(f"{upstream.base}/many/missing.bin", "sha256:" + "0" * 64, 10, label="missing")
    t0 = time.monotonic()
    with pytest.raises(HTTPStatusError) as err:
        _run(tmp_path / "store", [missing, *jobs], concurrency=4)
    assert err.value.status == 404 and "many/missing.bin" in str(err.value)
    assert time.monotonic() - t0 < 3  # the slow ones were cancelled, not waited for
    assert not list((tmp_path / "store/blobs/sha256").iterdir())


def test_fetch_many_of_nothing(tmp_path: Path) -> None:
    assert _run(tmp_path / "store", []) == []


def _cut_unpinned(store: Path, url: str) -> list[str]:
    """Fetch ``url`` (no digest: only a validator makes a resume safe) cut short by the upstream:
    what is left in the store's tmp/ for the resume."""

    async def go() -> None:
        async with Downloader(Store(store), retries=0, auth=None) as dl:
            await dl.fetch(FetchJob(url))

    with pytest.raises(Exception):  # noqa: B017 - the cut, whatever aiohttp calls it
        asyncio.run(go())
    return sorted(p.name.split(".", 1)[1] if "." in p.name else "partial" for p in (store / "tmp").glob("partial-*"))


def test_one_read_bodies_keep_no_validator_big_ones_do(tmp_path: Path, upstream: UpstreamHandle) -> None:
    """A body of one read (≤ 256 KiB, length known) is never resumed: no validator file is written
    for it; a bigger one cut short keeps its validator beside the partial (If-Range on resume)."""
    assert one_read(200, 100, 256 * KIB) and not one_read(200, None, 256 * KIB)
    assert not one_read(206, 100, 256 * KIB) and not one_read(200, 256 * KIB + 1, 256 * KIB)
    big = upstream.put("v/big.bin", os.urandom(2 << 20))
    upstream.rule("v/big.bin", drop_after=[1 << 20])
    assert _cut_unpinned(tmp_path / "a", big) == ["partial", "validator"]
    small = upstream.put("v/small.bin", os.urandom(200 * KIB))
    upstream.rule("v/small.bin", drop_after=[100 * KIB])
    assert _cut_unpinned(tmp_path / "b", small) == ["partial"]
    # and the next build starts it over (nothing proves the rest belongs to those bytes), completes it
    data = (upstream.root / "v/small.bin").read_bytes()
    [res] = _run(tmp_path / "b", [FetchJob(small)])
    assert res.digest == f"sha256:{sha256(data)}" and res.transferred == len(data)
    assert upstream.stats()["/v/small.bin"]["ranges"][-1] == ""


def test_env_matters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.lower().endswith("_proxy") or k == "NETRC":
            monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not env_matters()
    (tmp_path / ".netrc").write_text("machine example login a password b\n")
    assert env_matters()
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    assert env_matters()
    monkeypatch.delenv("https_proxy")
    monkeypatch.setenv("NETRC", str(tmp_path / "elsewhere"))
    assert env_matters()


def test_small_pinned_blobs_take_no_lock_file_big_ones_do(tmp_path: Path, upstream: UpstreamHandle) -> None:
    """While a pinned blob of one read (≤ 256 KiB) downloads, tmp/ holds only this build's private
    file (no lock file to create and remove); a bigger one is written under partial-<key>.lock, its
    validator beside it."""
    small, big = os.urandom(64 * KIB), os.urandom(512 * KIB)
    jobs = []
    for name, data in (("s.bin", small), ("b.bin", big)):
        url = upstream.put(f"lk/{name}", data)
        upstream.rule(f"lk/{name}", rate=128 * KIB)  # 0.5 s and 4 s
        jobs.append(FetchJob(url, f"sha256:{sha256(data)}", len(data)))
    store = tmp_path / "store"

    async def go(job: FetchJob) -> list[str]:
        async with Downloader(Store(store), auth=None) as dl:
            task = asyncio.ensure_future(dl.fetch(job))
            await asyncio.sleep(0.25)
            seen = sorted(p.name.split("-")[0] + "".join(x for x in (".lock", ".validator") if p.name.endswith(x))
                          for p in (store / "tmp").iterdir())  # fmt: skip
            await task
            return seen

    assert asyncio.run(go(jobs[0])) == ["local"]
    assert asyncio.run(go(jobs[1])) == ["partial", "partial.lock", "partial.validator"]
    assert (store / "blobs/sha256" / sha256(small)).read_bytes() == small
    assert (store / "blobs/sha256" / sha256(big)).read_bytes() == big
    assert not list((store / "tmp").iterdir())

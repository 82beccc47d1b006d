"""The shared downloader against a real upstream on 127.0.0.1 that fails on demand."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import UpstreamHandle, gapcache, sha256, write_manifest

MB = 1 << 20


def _build(tmp: Path, files: list[dict[str, str]], *extra: str) -> tuple[int, str, str]:
    m = write_manifest(tmp / "m.yaml", files)
    res = gapcache("build", "-f", m, "-o", tmp / "out.tar", "--store", tmp / "store", *extra)
    return res.returncode, res.stdout, res.stderr


def test_500_twice_then_success_is_retried(tmp_path: Path, upstream: UpstreamHandle) -> None:
    data = b"retry me\n" * 1000
    url = upstream.put("flaky/a.txt", data)
    upstream.rule("flaky/a.txt", fail=[500, 503])
    code, _, err = _build(tmp_path, [{"url": url, "sha256": sha256(data)}])
    assert code == 0, err
    assert upstream.stats()["/flaky/a.txt"]["requests"] == 3
    assert (tmp_path / "store/blobs/sha256" / sha256(data)).read_bytes() == data


def test_connection_dropped_mid_body_resumes_with_range(tmp_path: Path, upstream: UpstreamHandle) -> None:
    data = bytes(range(256)) * (8 * MB // 256)
    url = upstream.put("big/drop.bin", data)
    upstream.rule("big/drop.bin", drop_after=[3 * MB, 2 * MB])
    code, _, err = _build(tmp_path, [{"url": url, "sha256": sha256(data)}])
    assert code == 0, err
    st = upstream.stats()["/big/drop.bin"]
    assert st["requests"] == 3
    assert st["ranges"][0] == ""
    assert st["ranges"][1].startswith("bytes=") and st["ranges"][2].startswith("bytes=")
    assert int(st["ranges"][1][6:].rstrip("-")) > 0
    assert st["bytes"] <= len(data) + 256 * 1024  # file size + one read chunk
    assert not list((tmp_path / "store/tmp").glob("partial-*"))


def test_wrong_content_fails_with_digests_and_no_archive(tmp_path: Path, upstream: UpstreamHandle) -> None:
    good = b"the real content\n" * 100
    ok_data = b"fine\n"
    bad_url = upstream.put("wrong/a.txt", good)
    ok_url = upstream.put("wrong/ok.txt", ok_data)
    upstream.rule("wrong/a.txt", wrong=True)
    code, _out, err = _build(
        tmp_path, [{"url": bad_url, "sha256": sha256(good)}, {"url": ok_url, "sha256": sha256(ok_data)}]
    )
    assert code == 1
    assert f"expected sha256:{sha256(good)}" in err
    assert "got sha256:" + sha256(b"X" + good[1:]) in err
    assert "files/127.0.0.1_" in err and "wrong/a.txt" in err
    assert not (tmp_path / "out.tar").exists()
    assert not (tmp_path / "out.tar.lock.json").exists()
    # the other item was still fetched (one failure does not stop the rest) and is cached
    assert (tmp_path / "store/blobs/sha256" / sha256(ok_data)).exists()
    assert not (tmp_path / "store/blobs/sha256" / sha256(good)).exists()
    assert list((tmp_path / "store/blobs/sha256").iterdir()) == [tmp_path / "store/blobs/sha256" / sha256(ok_data)]


def test_404_is_reported_with_its_url_and_json(tmp_path: Path, upstream: UpstreamHandle) -> None:
    url = f"{upstream.base}/missing/nothing.bin"
    other = upstream.put("present.txt", b"present\n")
    code, out, _err = _build(tmp_path, [{"url": url}, {"url": other}], "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert len(report["failed"]) == 1
    failed = report["failed"][0]
    assert failed["item"].endswith("missing/nothing.bin")
    assert url in failed["reason"] and "HTTP 404" in failed["reason"]
    assert upstream.stats()["/missing/nothing.bin"]["requests"] == 1  # a 404 is not retried
    assert report["archive"] == []


def test_429_retry_after_is_honoured(tmp_path: Path, upstream: UpstreamHandle) -> None:
    data = b"rate limited\n"
    url = upstream.put("rl/a.txt", data)
    upstream.rule("rl/a.txt", fail=[429], retry_after="2")
    t0 = time.monotonic()
    code, _, err = _build(tmp_path, [{"url": url, "sha256": sha256(data)}])
    elapsed = time.monotonic() - t0
    assert code == 0, err
    assert upstream.stats()["/rl/a.txt"]["requests"] == 2
    assert elapsed >= 2.0


def test_persistent_5xx_gives_up_after_retries(tmp_path: Path, upstream: UpstreamHandle) -> None:
    url = upstream.put("down/a.txt", b"x")
    upstream.rule("down/a.txt", fail=[502] * 10)
    code, _, err = _build(tmp_path, [{"url": url}], "--retries", "2")
    assert code == 1
    assert "HTTP 502" in err and "gave up after 2 retries" in err
    assert upstream.stats()["/down/a.txt"]["requests"] == 3


def test_store_is_the_cache_nothing_downloaded_twice(tmp_path: Path, upstream: UpstreamHandle) -> None:
    pinned = b"pinned\n" * 5000
    unpinned = b"unpinned\n" * 5000
    files = [
        {"url": upstream.put("cache/pinned.bin", pinned), "sha256": sha256(pinned)},
        {"url": upstream.put("cache/unpinned.bin", unpinned)},
    ]
    assert _build(tmp_path, files)[0] == 0
    first = (tmp_path / "out.tar").read_bytes()
    before = upstream.stats()
    assert _build(tmp_path, files)[0] == 0
    after = upstream.stats()
    assert after["/cache/pinned.bin"] == before["/cache/pinned.bin"]  # not even asked
    assert after["/cache/unpinned.bin"]["bytes"] == before["/cache/unpinned.bin"]["bytes"]  # 304
    assert (tmp_path / "out.tar").read_bytes() == first


def test_plan_downloads_no_content(tmp_path: Path, upstream: UpstreamHandle) -> None:
    data = b"p" * 12345
    url = upstream.put("plan/a.bin", data)
    m = write_manifest(tmp_path / "m.yaml", [{"url": url}, {"url": f"{upstream.base}/plan/missing"}])
    res = gapcache("build", "-f", m, "--plan", "--json", "--store", tmp_path / "store")
    assert res.returncode == 1, res.stderr
    plan = json.loads(res.stdout)
    assert [a["size"] for a in plan["artifacts"]] == [12345]
    assert "plan/missing" in plan["failed"][0]["item"]
    assert upstream.stats()["/plan/a.bin"]["bytes"] == 0
    blobs = tmp_path / "store/blobs/sha256"
    assert not blobs.exists() or not list(blobs.iterdir())


def test_locked_build_fetches_exactly_the_lock(tmp_path: Path, upstream: UpstreamHandle) -> None:
    data = b"locked\n" * 100
    url = upstream.put("lock/a.txt", data)
    assert _build(tmp_path, [{"url": url}])[0] == 0
    lock = tmp_path / "out.tar.lock.json"
    # the upstream changes: a locked build must refuse the new bytes
    upstream.put("lock/a.txt", b"changed\n")
    res = gapcache("build", "--locked", lock, "-o", tmp_path / "again.tar", "--store", tmp_path / "fresh")
    assert res.returncode == 1
    assert "digest mismatch" in res.stderr
    upstream.put("lock/a.txt", data)
    res = gapcache("build", "--locked", lock, "-o", tmp_path / "again.tar", "--store", tmp_path / "fresh")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "again.tar").read_bytes() == (tmp_path / "out.tar").read_bytes()


def test_manifest_error_exits_2_and_downloads_nothing(tmp_path: Path, upstream: UpstreamHandle) -> None:
    url = upstream.put("m/a.txt", b"a")
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\nfiles:\n  - url: {url}\n  - url: {url}x\n    sha256: nope\n")
    res = gapcache("build", "-f", m, "-o", tmp_path / "o.tar", "--store", tmp_path / "store")
    assert res.returncode == 2
    assert "m.yaml:5: files[1].sha256: not 64 hex digits" in res.stderr
    assert upstream.stats() == {}

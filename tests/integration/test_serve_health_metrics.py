"""Health and metrics (issue 19, item 3): ``/-/healthy`` and ``/healthz`` on every listener, from
memory and never misses; Prometheus ``/metrics`` on the files listener (parsed with
``prometheus_client.parser``) counting requests, bytes and misses; access log lines in the Combined
Log Format with a timestamp; misses record the client address; the served sets
(``gapcache_served_set_info`` and ``_bytes``) follow ``load --add`` and ``remove``."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from conftest import gapcache, serving
from gapcache.blobs import MissLog
from gapcache.root import Root
from gapcache.serve import Listener
from helpers import build_local, random_bytes

CONTENT = {"example.org/a.bin": random_bytes(5000, seed=3)}


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def samples(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, s.labels.get("listener", ""))] = s.value
    return out


@pytest.mark.slow
def test_health_metrics_misses_and_access_log(tmp_path: Path) -> None:
    build_local(tmp_path, CONTENT)
    root = tmp_path / "root"
    Root(root).load([tmp_path / "out.tar"])
    log = tmp_path / "serve.log"
    with serving(root) as (_, port):
        base = f"http://127.0.0.1:{port}"
        status, body = fetch(f"{base}/metrics")
        before = samples(body.decode())
        assert status == 200
        for path in ("/-/healthy", "/healthz", "/-/healthy", "/healthz"):  # the second of each: from the parser
            assert fetch(base + path) == (200, b"ok\n")
        assert fetch(f"{base}/example.org/a.bin") == (200, CONTENT["example.org/a.bin"])
        assert fetch(f"{base}/not/here")[0] == 404
        status, body = fetch(f"{base}/metrics")
    assert status == 200
    after = samples(body.decode())
    requests = after[("gapcache_http_requests_total", "files")] - before[("gapcache_http_requests_total", "files")]
    assert requests == 7  # the first /metrics, four probes, the file, the miss
    sent = (
        after[("gapcache_http_response_bytes_total", "files")] - before[("gapcache_http_response_bytes_total", "files")]
    )
    assert sent > 5000
    assert after[("gapcache_misses_total", "files")] - before.get(("gapcache_misses_total", "files"), 0) == 1
    assert after[("gapcache_http_errors_total", "files")] == 0
    assert after[("gapcache_blobs_verified_total", "")] >= 1 and after[("gapcache_blobs_corrupt_total", "")] == 0
    misses = [json.loads(line) for line in (root / "misses.jsonl").read_text().splitlines()]
    assert [m["path"] for m in misses] == ["/not/here"]  # the probes and /metrics are not misses
    assert misses[0]["client"] == "127.0.0.1"
    lines = [x for x in log.read_text().splitlines() if '"GET /example.org/a.bin HTTP/1.1"' in x]
    assert lines, log.read_text()
    # Combined Log Format: ADDR - - [10/Oct/2026:13:55:36 +0000] "REQUEST" STATUS BYTES "REFERER" "AGENT"
    clf = re.compile(
        r'^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET [^"]+" 200 \d+ "-" "[^"]*"'
    )
    assert clf.match(lines[0]), lines[0]
    probes = [x for x in log.read_text().splitlines() if "/-/healthy" in x]
    assert len(probes) == 2 and all(clf.match(x) for x in probes)  # the one from the parser too


def served_sets(port: int) -> dict[str, tuple[str, float]]:
    """name → (lock, bytes) from /metrics."""
    info: dict[str, str] = {}
    size: dict[str, float] = {}
    count = -1.0
    for family in text_string_to_metric_families(fetch(f"http://127.0.0.1:{port}/metrics")[1].decode()):
        for s in family.samples:
            if s.name == "gapcache_served_set_info":
                assert s.value == 1
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s.labels["loaded"]), s.labels
                info[s.labels["name"]] = s.labels["lock"]
            elif s.name == "gapcache_served_set_bytes":
                size[s.labels["name"]] = s.value
            elif s.name == "gapcache_served_sets":
                count = s.value
    assert info.keys() == size.keys() and count == len(info)
    return {name: (info[name], size[name]) for name in info}


def wait_for(check: object, port: int, timeout: float = 15.0) -> dict[str, tuple[str, float]]:
    deadline = time.monotonic() + timeout
    while (now := served_sets(port)).keys() != check and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


@pytest.mark.slow
def test_metrics_name_the_served_sets(tmp_path: Path) -> None:
    base = {"base/a.bin": random_bytes(3000, seed=5)}
    extra = {"extra/b.bin": random_bytes(7000, seed=7), "extra/c.bin": b"c\n"}
    build_local(tmp_path / "b", base, out_name="base.tar")
    build_local(tmp_path / "e", extra, out_name="extra.tar")
    root = tmp_path / "root"
    gapcache("load", tmp_path / "b/base.tar", "--root", root, "-q", check=True)
    with serving(root) as (_, port):
        sets = served_sets(port)
        assert list(sets) == ["base"] and sets["base"][1] == 3000
        assert (root / "locks" / sets["base"][0]).is_file()
        gapcache("load", "--add", tmp_path / "e/extra.tar", "--root", root, "-q", check=True)
        sets = wait_for({"base", "extra"}, port)  # followed without a restart
        assert {n: b for n, (_, b) in sets.items()} == {"base": 3000, "extra": 7002}
        gapcache("remove", "base", "--root", root, check=True)
        sets = wait_for({"extra"}, port)
        assert list(sets) == ["extra"] and sets["extra"][1] == 7002


@pytest.mark.parametrize("listener", ["registry", "repos", "charts", "pypi", "files"])
@pytest.mark.parametrize("path", ["/-/healthy", "/healthz"])
def test_every_listener_answers_health_from_memory(tmp_path: Path, listener: str, path: str) -> None:
    misses = MissLog(tmp_path / "misses.jsonl")
    lst = Listener(listener, [], misses)
    resp = asyncio.run(lst(make_mocked_request("GET", path)))
    assert resp.status == 200
    assert lst.answers.table  # kept: the next probe is answered straight from the parser
    misses.close()
    assert (tmp_path / "misses.jsonl").read_text() == ""
    assert lst.stats.misses == 0

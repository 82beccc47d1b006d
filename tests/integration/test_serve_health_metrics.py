"""Health and metrics (issue 19, item 3): ``/-/healthy`` and ``/healthz`` on every listener, from
memory and never misses; Prometheus ``/metrics`` on the files listener (parsed with
``prometheus_client.parser``) counting requests, bytes and misses; access log lines in the Combined
Log Format with a timestamp; misses record the client address."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from conftest import serving
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

"""``serve --log-format json`` (issue 19, item 3): one parseable JSON object per request — from
aiohttp's path and from the fast path that answers kept answers straight from the parser — with
time (ISO 8601), remote, method, path, status, bytes, duration, user agent and listener; the
server's other lines are JSON too, so the whole log parses line by line."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from conftest import serving
from gapcache.root import Root
from helpers import build_local

CONTENT = {"example.org/a.bin": b"a" * 3000}
KEYS = {"time", "remote", "method", "path", "status", "bytes", "duration", "user_agent", "listener"}


def fetch(url: str, agent: str) -> int:
    req = urllib.request.Request(url, headers={"User-Agent": agent})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow
def test_json_access_log(tmp_path: Path) -> None:
    build_local(tmp_path, CONTENT)
    root = tmp_path / "root"
    Root(root).load([tmp_path / "out.tar"])
    with serving(root, "--log-format", "json") as (_, port):
        base = f"http://127.0.0.1:{port}"
        assert fetch(f"{base}/example.org/a.bin", 'agent "one"') == 200
        assert fetch(f"{base}/not/here", "agent-two") == 404
        for _ in range(2):  # the second: answered from the parser (the fast path's own logging)
            assert fetch(f"{base}/healthz", "probe") == 200
    lines = (tmp_path / "serve.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line parses, the banner too
    access = [e for e in entries if "status" in e]
    assert [(e["path"], e["status"]) for e in access] == [
        ("/example.org/a.bin", 200),
        ("/not/here", 404),
        ("/healthz", 200),
        ("/healthz", 200),
    ]
    for e in access:
        assert set(e) >= KEYS, e
        assert e["remote"] == "127.0.0.1" and e["method"] == "GET" and e["listener"] == "files"
        assert isinstance(e["bytes"], int) and e["bytes"] > 0
        assert isinstance(e["duration"], float) and 0 <= e["duration"] < 10
        assert datetime.fromisoformat(e["time"].replace("Z", "+00:00")).tzinfo is not None
    assert access[0]["user_agent"] == 'agent "one"' and access[0]["bytes"] > 3000
    assert access[1]["user_agent"] == "agent-two"
    assert access[2].keys() == access[3].keys()  # aiohttp's path and the fast path write the same keys
    assert any("serving" in e.get("message", "") for e in entries)  # the banner, as JSON


@pytest.mark.slow
def test_clf_stays_the_default(tmp_path: Path) -> None:
    build_local(tmp_path, CONTENT)
    root = tmp_path / "root"
    Root(root).load([tmp_path / "out.tar"])
    with serving(root) as (_, port):
        assert fetch(f"http://127.0.0.1:{port}/example.org/a.bin", "x") == 200
    line = next(x for x in (tmp_path / "serve.log").read_text().splitlines() if '"GET /example.org/a.bin' in x)
    assert line.startswith("127.0.0.1 - - [") and '"GET /example.org/a.bin HTTP/1.1" 200 ' in line
    with pytest.raises(ValueError):
        json.loads(line)

"""The offline commands as a user runs them: ls/verify --root, serve --archive (in place)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from conftest import gapcache, serving
from helpers import build_local, random_bytes

CONTENT = {"h.example/a.bin": random_bytes(300_000), "h.example/sub/b.txt": b"bee\n"}


def test_ls_and_verify_root(tmp_path: Path) -> None:
    build_local(tmp_path, CONTENT)
    root = tmp_path / "root"
    assert gapcache("load", tmp_path / "out.tar", "--root", root, "-q").returncode == 0
    listing = json.loads(gapcache("ls", "--root", root, "--json", check=True).stdout)
    assert sorted(x["name"] for x in listing) == sorted(f"files/{k}" for k in CONTENT)
    assert gapcache("verify", "--root", root, "-q").returncode == 0
    blob = next(p for p in (root / "blobs/sha256").iterdir() if p.stat().st_size == 300_000)
    blob.write_bytes(b"tampered" + blob.read_bytes()[8:])
    res = gapcache("verify", "--root", root, "-q")
    assert res.returncode == 1
    assert f"blob sha256:{blob.name}: content hashes to" in res.stderr


def test_nothing_loaded_is_a_clear_error(tmp_path: Path) -> None:
    res = gapcache("serve", "--root", tmp_path / "empty")
    assert res.returncode == 1
    assert "nothing loaded yet" in res.stderr


def test_serve_straight_from_the_archive(tmp_path: Path) -> None:
    build_local(tmp_path, CONTENT, split_size=1 << 20)
    toc = tmp_path / "out.toc.json"
    with serving(toc) as (_proc, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for name, data in CONTENT.items():
            conn.request("GET", "/" + name)
            r = conn.getresponse()
            assert r.status == 200 and r.read() == data
        conn.request("GET", "/h.example/a.bin", headers={"Range": "bytes=1000-1999"})
        r = conn.getresponse()
        assert r.status == 206 and r.read() == CONTENT["h.example/a.bin"][1000:2000]


def test_bad_port_option_is_a_usage_error(tmp_path: Path) -> None:
    res = gapcache("serve", "--root", tmp_path, "--port", "web=80")
    assert res.returncode == 2
    assert "expected NAME=PORT" in res.stderr


def test_a_new_load_is_served_without_a_restart(tmp_path: Path) -> None:
    import time

    first = build_local(tmp_path / "one", {"h.example/a.txt": b"first\n"})
    assert first.lock is not None
    build_local(tmp_path / "two", {"h.example/a.txt": b"first\n", "h.example/b.txt": b"second\n"}, since=first.lock)
    root = tmp_path / "root"
    gapcache("load", tmp_path / "one/out.tar", "--root", root, "-q", check=True)
    with serving(root) as (_proc, port):

        def status(path: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            return r.status

        assert status("/h.example/b.txt") == 404
        gapcache("load", tmp_path / "two/out.tar", "--root", root, "-q", check=True)  # differential
        deadline = time.monotonic() + 10
        while status("/h.example/b.txt") != 200:
            assert time.monotonic() < deadline, "the new lock was not picked up"
            time.sleep(0.2)
        assert status("/h.example/a.txt") == 200

"""Answers given again straight from the parser (gapcache.wire): same bytes as the first answer,
in order on a pipelined connection, and never for a request whose answer depends on more than
its target (Range, conditional headers), nor for a blob that was not verified."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import serving
from gapcache.root import Root
from helpers import build_local, random_bytes

CONTENT = {f"example.org/f{i}.bin": random_bytes(1000 + i, seed=i) for i in range(4)}


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("answers")
    build_local(tmp, CONTENT)
    Root(tmp / "root").load([tmp / "out.tar"])
    with serving(tmp / "root") as (_, p):
        yield p


def exchange(port: int, raw: bytes, answers: int) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Send ``raw`` at once and read ``answers`` responses: (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        buf = b""
        out: list[tuple[bytes, dict[str, str], bytes]] = []
        while len(out) < answers:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, f"connection closed after {len(out)} answers"
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            hdrs = {k.decode().lower(): v.decode() for k, v in (x.split(b": ", 1) for x in lines[1:])}
            n = int(hdrs.get("content-length", "0"))
            is_head = raw.split(b"\r\n\r\n")[len(out)].startswith(b"HEAD")
            if is_head:
                n = 0
            while len(buf) < n:
                chunk = s.recv(65536)
                assert chunk
                buf += chunk
            out.append((lines[0], hdrs, buf[:n]))
            buf = buf[n:]
        return out


def req(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} /{path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def test_pipelined_answers_stay_in_order_and_match(port: int) -> None:
    names = sorted(CONTENT)
    exchange(port, b"".join(req(n) for n in names), len(names))  # first answers: verified, kept
    raw = b"".join(req(n) for n in names * 3) + req("missing") + req(names[0]) + req(names[1], "HEAD")
    got = exchange(port, raw, len(names) * 3 + 3)
    for i, name in enumerate(names * 3):
        assert got[i][0] == b"HTTP/1.1 200 OK" and got[i][2] == CONTENT[name]
        assert got[i][1]["content-length"] == str(len(CONTENT[name])) and "date" in got[i][1]
    assert got[-3][0].startswith(b"HTTP/1.1 404")
    assert got[-2][2] == CONTENT[names[0]]
    assert got[-1][0] == b"HTTP/1.1 200 OK" and got[-1][2] == b"" and got[-1][1]["content-length"] == "1001"


def test_range_and_conditionals_are_not_answered_from_memory(port: int) -> None:
    name = sorted(CONTENT)[2]
    exchange(port, req(name), 1)
    (status, hdrs, body), = exchange(port, req(name, extra="Range: bytes=0-9\r\n"), 1)  # fmt: skip
    assert status.startswith(b"HTTP/1.1 206") and body == CONTENT[name][:10]
    etag = hdrs["etag"]
    (status, _, body), = exchange(port, req(name, extra=f"If-None-Match: {etag}\r\n"), 1)  # fmt: skip
    assert status.startswith(b"HTTP/1.1 304") and body == b""


def test_connection_close_is_honoured(port: int) -> None:
    name = sorted(CONTENT)[3]
    exchange(port, req(name), 1)
    (status, hdrs, body), = exchange(port, req(name, extra="Connection: close\r\n"), 1)  # fmt: skip
    assert status == b"HTTP/1.1 200 OK" and hdrs.get("connection") == "close" and body == CONTENT[name]


def test_a_corrupted_blob_is_refused_before_it_was_ever_answered(tmp_path: Path) -> None:
    content = {"example.org/bad.bin": random_bytes(3000, seed=9)}
    build_local(tmp_path, content)
    root = Root(tmp_path / "root")
    root.load([tmp_path / "out.tar"])
    blob = next(p for p in (tmp_path / "root").rglob("*") if p.is_file() and p.stat().st_size == 3000)
    blob.chmod(0o644)
    blob.write_bytes(b"x" * 3000)
    with serving(tmp_path / "root") as (_, p):
        for _ in range(2):
            (status, _, body), = exchange(p, req("example.org/bad.bin"), 1)  # fmt: skip
            assert status.startswith(b"HTTP/1.1 500") and b"x" * 100 not in body

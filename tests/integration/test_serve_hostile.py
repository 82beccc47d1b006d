"""The server under hostile clients (issue 10, items 12-14 and 16): silent and idle connections at a
low fd limit, clients that never read, clients that grow the logs, and Range headers that only look
like numbers. A real ``gapcache serve`` process, driven over real sockets."""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import cli_env, free_port, serving, wait_port
from gapcache.blobs import MissLog
from gapcache.root import Root
from helpers import build_local, random_bytes

BIG = "example.org/big.bin"
SMALL = "example.org/small.txt"
CONTENT = {BIG: random_bytes(16 << 20), SMALL: random_bytes(4096)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hostile")
    build_local(tmp, CONTENT)
    Root(tmp / "root").load([tmp / "out.tar"])
    return tmp / "root"


@pytest.fixture(autouse=True)
def many_fds() -> Iterator[None]:
    """This process opens over a thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def serving_limited(root: Path, nofile: int, *extra: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Like conftest's ``serving``, with the server's open-file limit (soft and hard) at ``nofile``."""
    port = free_port()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    cmd = [sys.executable, "-m", "gapcache", "serve", "--root", str(root), "--bind", "127.0.0.1"]
    cmd += ["--port", f"files={port}", *[x for n in ("registry", "repos", "pypi") for x in ("--port", f"{n}=0")]]
    with open(root.parent / "serve.log", "a") as log:
        proc = subprocess.Popen(
            [*cmd, *extra], env=cli_env(), stdout=log, stderr=subprocess.STDOUT, text=True, preexec_fn=limit
        )
        try:
            wait_port(port, proc)
            yield proc, port
        finally:
            proc.terminate()
            proc.wait(10)


def request(port: int, path: str, headers: bytes = b"", timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One GET with ``Connection: close``: status, headers (lower-case names), body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode() + headers + b"\r\n")
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(1 << 16):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


# ---- 12: header and keep-alive timeouts, a connection cap ---------------------------------------------


def connect_many(port: int, n: int, batch: int = 50) -> list[socket.socket]:
    """``n`` connections that never send a byte, opened ``batch`` at a time (in parallel, so that
    a lost SYN costs one retransmit per batch, not per connection), leaving the server time to
    accept each batch."""
    socks: list[socket.socket] = []
    with selectors.DefaultSelector() as sel:
        for start in range(0, n, batch):
            for _ in range(min(batch, n - start)):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                sel.register(s, selectors.EVENT_WRITE)
                socks.append(s)
            deadline = time.monotonic() + 10
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(1):
                    sel.unregister(key.fileobj)
            time.sleep(0.05)
    return socks


def test_idle_connections_at_the_fd_limit_leave_room_for_normal_clients(root: Path) -> None:
    with serving_limited(root, 1024) as (proc, port):
        idle = connect_many(port, 1100)
        try:
            time.sleep(0.5)
            for _ in range(10):
                status, _, body = request(port, "/" + SMALL)
                assert status == 200 and body == CONTENT[SMALL]
            status, _, body = request(port, "/" + BIG)
            assert status == 200 and body == CONTENT[BIG]
        finally:
            for s in idle:
                s.close()
        assert proc.poll() is None


def test_silent_and_slow_headers_are_closed_after_header_timeout(root: Path) -> None:
    with serving(root, "--header-timeout", "1") as (_proc, port):
        silent = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        t0 = time.monotonic()
        assert closed_within(silent, 5) and closed_within(slow, 5)
        assert time.monotonic() - t0 < 4
        assert request(port, "/" + SMALL)[0] == 200


def test_idle_keepalive_connection_is_closed_after_keepalive_timeout(root: Path) -> None:
    with serving(root, "--keepalive-timeout", "1", "--header-timeout", "30") as (_proc, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(f"GET /{SMALL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while not got.endswith(CONTENT[SMALL]):
            got += s.recv(1 << 16)
        assert got.startswith(b"HTTP/1.1 200")
        assert closed_within(s, 5)


def test_past_the_cap_busy_connections_get_503_with_retry_after(root: Path) -> None:
    with serving(root, "--max-connections", "3") as (_proc, port):
        busy = []
        for _ in range(3):  # each holds its connection: a 16 MiB body nobody reads
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(f"GET /{BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            busy.append(s)
        time.sleep(0.5)
        status, headers, _ = request(port, "/" + SMALL)
        assert status == 503 and int(headers["retry-after"]) > 0
        for s in busy:
            s.close()
        time.sleep(0.5)
        assert request(port, "/" + SMALL)[2] == CONTENT[SMALL]


# ---- 13: a client that does not read ------------------------------------------------------------------


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_non_reading_clients_do_not_grow_server_memory(root: Path, loop: str) -> None:
    n = 500
    with serving(root, "--loop", loop, "--no-access-log") as (proc, port):
        assert request(port, "/" + BIG)[2] == CONTENT[BIG]  # verified once, warm
        time.sleep(0.5)
        before = rss(proc.pid)
        socks = []
        try:
            for _ in range(n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", port))
                s.sendall(f"GET /{BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                socks.append(s)
            time.sleep(4)
            grown = rss(proc.pid) - before
        finally:
            for s in socks:
                s.close()
        assert grown < 100 << 20, f"{n} non-reading clients grew the server by {grown >> 20} MiB"
        assert request(port, "/" + BIG)[2] == CONTENT[BIG]


# ---- 14: the logs clients can grow -----------------------------------------------------------------


def test_misses_and_access_log_are_truncated_and_repeats_counted(root: Path) -> None:
    misses = root / "misses.jsonl"
    misses.unlink(missing_ok=True)
    log = root.parent / "serve.log"
    log_start = log.stat().st_size if log.exists() else 0
    long_path = "/" + "a" * 8000
    with serving(root) as (_proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET {long_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 300)
            got = b""
            while got.count(b"HTTP/1.1 404") < 300:
                got += s.recv(1 << 20)
        for i in range(20):
            assert request(port, f"/{i}/" + "b" * 8000)[0] == 404
    # the server has stopped (SIGTERM): the counted repeats are written
    lines = [json.loads(x) for x in misses.read_text().splitlines()]
    assert all(len(x["path"]) <= 512 for x in lines)
    same = [x for x in lines if x["path"] == long_path[:512]]
    assert len(same) <= 2 and sum(x.get("count", 1) for x in same) == 300
    assert len(lines) == len(same) + 20
    assert {"time", "listener", "path", "status"} <= lines[0].keys()
    with open(log, "rb") as f:
        f.seek(log_start)
        access = [x for x in f.read().splitlines() if b'"GET /' in x]
    assert len(access) >= 320 and max(map(len, access)) < 1024


def test_misses_file_stops_at_its_cap_and_says_so_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "misses.jsonl"
    misses = MissLog(path, max_bytes=20_000)
    with caplog.at_level(logging.WARNING, logger="gapcache.serve"):
        for i in range(1000):
            misses.record("files", f"/{i}/" + "x" * 1000, 404)
    assert 15_000 < path.stat().st_size <= 20_000
    assert sum("no more misses" in r.message for r in caplog.records) == 1
    path.write_bytes(b"")  # emptied (e.g. copytruncate): recorded again
    misses.record("files", "/again", 404)
    misses.record("files", "/again", 404)
    misses.record("files", "/again", 404)
    misses.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["path"], x.get("count", 1)) for x in lines] == [("/again", 1), ("/again", 2)]


# ---- 16: Range, parsed strictly ------------------------------------------------------------------------


LOOKS_LIKE_A_RANGE = (
    "bytes=1_0-2_0",
    "bytes=+1-2",
    "bytes=1-+2",
    "bytes=-+5",
    "bytes=\uff11-\uff12",  # fullwidth digits
    "bytes=\u0661-\u0662",  # Arabic-Indic digits
    "bytes= 1-2",
)


def test_range_that_only_looks_like_numbers_is_ignored(root: Path) -> None:
    with serving(root) as (_proc, port):
        for name in (SMALL, BIG):  # answered from memory, and with sendfile
            data = CONTENT[name]
            for header in LOOKS_LIKE_A_RANGE:
                status, headers, body = request(port, "/" + name, f"Range: {header}\r\n".encode())
                assert (status, body) == (200, data), header
                assert "content-range" not in headers, header
            status, headers, body = request(port, "/" + name, b"Range: bytes=10-19\r\n")
            assert (status, body, headers["content-range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
            status, _, body = request(port, "/" + name, b"Range: bytes=-7\r\n")
            assert (status, body) == (206, data[-7:])

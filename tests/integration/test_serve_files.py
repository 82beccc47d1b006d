"""The files mirror (:8004) as a real server process, driven over real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import serving
from gapcache.root import Root
from helpers import build_local, random_bytes

CONTENT = {
    "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm": random_bytes(5 * 1024 * 1024),
    "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubectl": random_bytes(700_000),
    "github.com/containerd/nerdctl/nerdctl.tgz": random_bytes(4096),
    "example.org/with space/ünïcode.txt": b"unicode\n",
    "example.org/empty": b"",
}


@dataclass
class Server:
    port: int
    root: Path
    proc: subprocess.Popen[str]

    def get(self, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, headers=headers or {})
        return conn.getresponse()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    build_local(tmp, CONTENT)
    Root(tmp / "root").load([tmp / "out.tar"])
    with serving(tmp / "root", "--workers", "2") as (proc, port):
        yield Server(port, tmp / "root", proc)


def url(name: str) -> str:
    from urllib.parse import quote

    return "/" + quote(name)


def test_every_file_with_headers(server: Server) -> None:
    for name, data in CONTENT.items():
        r = server.get(url(name))
        body = r.read()
        assert r.status == 200, name
        assert body == data
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert r.headers["ETag"] == f'"{digest}"'
        assert int(r.headers["Content-Length"]) == len(data)
        assert r.headers["Last-Modified"].endswith("GMT")
        assert r.headers["Accept-Ranges"] == "bytes"
    assert server.get(url("dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm")).headers["Content-Type"] == (
        "application/octet-stream"
    )
    assert server.get(url("example.org/with space/ünïcode.txt")).headers["Content-Type"].startswith("text/plain")


def test_head_has_length_and_no_body(server: Server) -> None:
    for name in (
        "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm",
        "github.com/containerd/nerdctl/nerdctl.tgz",
    ):
        r = server.get(url(name), "HEAD")
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == len(CONTENT[name])
        assert r.read() == b""


@pytest.mark.parametrize(
    "name", ["dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm", "github.com/containerd/nerdctl/nerdctl.tgz"]
)
def test_ranges(server: Server, name: str) -> None:
    data = CONTENT[name]
    size = len(data)
    cases = {
        "bytes=0-99": (206, data[0:100], f"bytes 0-99/{size}"),
        "bytes=100-": (206, data[100:], f"bytes 100-{size - 1}/{size}"),
        "bytes=-10": (206, data[-10:], f"bytes {size - 10}-{size - 1}/{size}"),
        f"bytes=10-{size * 5}": (206, data[10:], f"bytes 10-{size - 1}/{size}"),
        "bytes=99-10": (200, data, None),  # inverted: invalid, ignored
        "bytes=0-1,5-9": (200, data, None),  # multiple ranges: served whole
        "pages=1-2": (200, data, None),
        "bytes=abc-def": (200, data, None),
    }
    for header, (status, body, crange) in cases.items():
        r = server.get(url(name), headers={"Range": header})
        assert r.status == status, header
        assert r.read() == body, header
        assert r.headers.get("Content-Range") == crange, header
    for unsatisfiable in (f"bytes={size}-", f"bytes={10**30}-", "bytes=-0"):
        r = server.get(url(name), headers={"Range": unsatisfiable})
        assert r.status == 416, unsatisfiable
        assert r.headers["Content-Range"] == f"bytes */{size}"
        r.read()


def test_conditional_get(server: Server) -> None:
    name = "github.com/containerd/nerdctl/nerdctl.tgz"
    etag = server.get(url(name), "HEAD").headers["ETag"]
    r = server.get(url(name), headers={"If-None-Match": etag})
    assert r.status == 304 and r.read() == b""


def test_404_is_recorded_as_a_miss(server: Server) -> None:
    r = server.get("/dl.k8s.io/release/v9.9.9/kubeadm")
    assert r.status == 404
    r.read()
    time.sleep(0.1)
    lines = [json.loads(line) for line in (server.root / "misses.jsonl").read_text().splitlines()]
    assert {"listener": "files", "path": "/dl.k8s.io/release/v9.9.9/kubeadm", "status": 404}.items() <= lines[
        -1
    ].items()
    assert lines[-1]["time"].endswith("Z")


def test_listings_like_nginx_autoindex(server: Server) -> None:
    r = server.get("/dl.k8s.io")
    assert r.status == 301 and r.headers["Location"] == "/dl.k8s.io/"
    r.read()
    page = server.get("/dl.k8s.io/release/v1.31.1/bin/linux/amd64/").read().decode()
    assert "<title>Index of /dl.k8s.io/release/v1.31.1/bin/linux/amd64/</title>" in page
    assert '<a href="kubeadm">kubeadm</a>' in page
    assert f" {len(CONTENT['dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm'])}\r\n" in page
    root = server.get("/").read().decode()
    for host in ("dl.k8s.io/", "github.com/", "example.org/"):
        assert f'<a href="{host}">{host}</a>' in root
    assert '<a href="with%20space/">with space/</a>' in server.get("/example.org/").read().decode()


def test_read_only(server: Server) -> None:
    for method in ("PUT", "POST", "DELETE"):
        r = server.get(url("example.org/empty"), method)
        assert r.status == 405, method
        r.read()


# ---- hostile input ---------------------------------------------------------------------------------


def raw(port: int, request: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


SECRET = b"root:x:0:0"  # the first line of /etc/passwd


@pytest.mark.parametrize(
    "path",
    [
        "/../../../../etc/passwd",
        "/dl.k8s.io/../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/dl.k8s.io/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/dl.k8s.io\\..\\..\\etc\\passwd",
        "/%5c..%5c..%5cetc%5cpasswd",
        "/example.org/empty%00.txt",
        "/blobs/sha256/" + "0" * 64,
        "/locks/",
        "/current",
        "//etc/passwd",
    ],
)
def test_traversal_serves_nothing_outside_the_lock(server: Server, path: str) -> None:
    resp = raw(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status = int(resp.split(b" ", 2)[1])
    assert status in (400, 404), (path, resp[:200])
    assert SECRET not in resp
    assert server.get(url("example.org/empty")).status == 200


def test_absurd_headers_and_lines(server: Server) -> None:
    huge = "A" * 65536
    for req in (
        f"GET /{huge} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        f"GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\n" + "".join(f"X-{i}: y\r\n" for i in range(20000)) + "\r\n",
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
    ):
        resp = raw(server.port, req.encode())
        assert resp == b"" or int(resp.split(b" ", 2)[1]) >= 400, resp[:100]
    assert server.get("/").status == 200


def test_thousand_concurrent_connections_and_slow_clients(server: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    name = "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubectl"
    want = CONTENT[name]

    async def one() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET {url(name)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(), 60)
        finally:
            writer.close()
        return data.endswith(want) and data.startswith(b"HTTP/1.1 200")

    async def slow_clients() -> list[socket.socket]:
        socks = []
        for _ in range(50):  # slowloris: half a request line, never finished
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"GET /dl.k8s.io/ HT")
            socks.append(s)
        for _ in range(20):  # a reader that never reads a 5 MB body
            s = socket.create_connection(("127.0.0.1", server.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            big = url("dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm")
            s.sendall(f"GET {big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(s)
        return socks

    async def main() -> list[bool | BaseException]:
        stalled = await slow_clients()
        try:
            return await asyncio.gather(*(one() for _ in range(1000)), return_exceptions=True)
        finally:
            for s in stalled:
                s.close()

    try:
        results = asyncio.run(main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    failed = [r for r in results if r is not True]
    assert not failed, f"{len(failed)} of 1000 failed: {failed[:3]}"
    assert server.get(url(name)).read() == want
    assert server.proc.poll() is None


def test_corrupt_blob_at_rest_is_not_served(tmp_path: Path) -> None:
    build_local(tmp_path, {"h/ok.txt": b"fine\n", "h/bad.bin": random_bytes(300_000)})
    root = Root(tmp_path / "root")
    root.load([tmp_path / "out.tar"])
    bad = next(p for p in root.store.blobs.iterdir() if p.stat().st_size == 300_000)
    data = bytearray(bad.read_bytes())
    data[5] ^= 1
    bad.write_bytes(bytes(data))
    with serving(tmp_path / "root") as (_proc, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/h/bad.bin")
        r = conn.getresponse()
        assert r.status == 500 and bytes(data) not in r.read()
        conn.request("GET", "/h/ok.txt")
        assert conn.getresponse().read() == b"fine\n"
    assert os.path.exists(bad)

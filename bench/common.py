"""Helpers shared by the benchmarks: reference servers (nginx), wrk, timing, result tables."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

# Every `gapcache build` a benchmark runs measures the work the benchmark names: no self-bootstrap
# (wheels from the index) unless a benchmark asks for it with --bootstrap-*; and modules are loaded
# from their byte code as an installed gapcache is (PYTHONDONTWRITEBYTECODE would recompile every
# module on every run).
os.environ.setdefault("GAPCACHE_BOOTSTRAP", "0")
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing tools: {' '.join(missing)} (apt-get install nginx wrk)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing on port {port}")


@contextlib.contextmanager
def nginx(root: Path, work: Path, workers: int = 1, autoindex: bool = True) -> Iterator[int]:
    """nginx serving ``root`` on a free port (sendfile on, access log off, like gapcache --no-access-log)."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    autoindex {"on" if autoindex else "off"};
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)])
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def gapcache_serve(root: Path, workers: int = 1, listener: str = "files", *, archive: bool = False) -> Iterator[int]:
    """``gapcache serve`` of ROOT (or, with ``archive``, of the archive ROOT in place) with one listener on
    a free port (no access log); yields the port."""
    port = free_port()
    log = open(root.parent / "gapcache-serve.log", "a")  # noqa: SIM115
    source = ["--archive" if archive else "--root", str(root)]
    cmd = [PY, "-m", "gapcache", "serve", *source, "--bind", "127.0.0.1", "--port", f"{listener}={port}"]
    cmd += ["--workers", str(workers), "--no-access-log"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def wrk(url: str, seconds: int = 10, threads: int = 2, conns: int = 32, headers: tuple[str, ...] = ()) -> float:
    """Requests per second from wrk (after a 1 s warm-up run)."""
    hdr = [x for h in headers for x in ("-H", h)]
    subprocess.run(["wrk", "-t1", "-c4", "-d1s", *hdr, url], capture_output=True, check=True)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", *hdr, url], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(out)
    if "Non-2xx" in out:
        raise RuntimeError(f"errors from {url}:\n{out}")
    return float(m.group(1))


def timed(cmd: list[str], **kw: object) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t0


def best_of(n: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(n))


def drop_caches() -> None:
    """Start from a cold page cache when allowed (root); otherwise both sides are equally warm."""
    os.sync()
    with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def random_file(path: Path, size: int, chunk: int = 1 << 24) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(chunk, left))
            h.update(data)
            f.write(data)
            left -= len(data)
    return h.hexdigest()


def table(title: str, rows: list[tuple[str, str, str, str]]) -> str:
    head = f"\n## {title}\n\n| measure | gapcache | reference | ratio |\n|---|---|---|---|\n"
    return head + "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows)

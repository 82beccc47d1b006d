"""The files mirror under hostile clients (issue 10, items 12-14): idle connections at a low fd
limit, clients that never read, and clients that grow the miss/access logs.

    .venv/bin/python bench/bench_hostile.py [--src DIR] [--loop uvloop|asyncio] [--clients 300,1500]

``--src`` runs another checkout's ``src`` (e.g. a ``git worktree`` of the previous commit) for
before/after figures. Prints one line per measure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from common import PY, REPO, free_port, random_file, wait_port

MIB = 1 << 20


def prepare(work: Path, src: Path) -> Path:
    root = work / "root"
    if (root / "current").exists():
        return root
    tree = work / "tree" / "bench.local"
    random_file(tree / "big.bin", 32 * MIB)
    random_file(tree / "small.bin", 4096)
    m = work / "m.yaml"
    m.write_text(
        "format: 1\nfiles:\n"
        + "".join(f"  - url: {p.resolve().as_uri()}\n    path: bench.local/{p.name}\n" for p in sorted(tree.iterdir()))
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(work / "b.tar"),
                    "--store", str(work / "store"), "-q"], check=True, env=env)  # fmt: skip
    subprocess.run([PY, "-m", "gapcache", "load", str(work / "b.tar"), "--root", str(root), "-q"], check=True, env=env)
    return root


@contextlib.contextmanager
def server(root: Path, src: Path, loop: str, *extra: str, nofile: int | None = None) -> Iterator[tuple[int, int]]:
    port = free_port()
    cmd = [PY, "-m", "gapcache", "serve", "--root", str(root), "--bind", "127.0.0.1", "--port", f"files={port}"]
    cmd += ["--loop", loop, *extra]

    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = open(root.parent / "serve.log", "a")  # noqa: SIM115
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=limit)
    try:
        wait_port(port)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def get(port: int, path: str, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


def idle(root: Path, src: Path, loop: str, n: int = 1100) -> str:
    with server(root, src, loop, nofile=1024) as (port, _):
        socks = []
        for _ in range(n):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        time.sleep(1)
        ok = 0
        for _ in range(20):
            with contextlib.suppress(OSError):
                ok += get(port, "/bench.local/small.bin").startswith(b"HTTP/1.1 200")
        for s in socks:
            s.close()
    return f"{loop}: {len(socks)} idle connections open (server fd limit 1024): {ok}/20 normal GETs answered 200"


def nonreading(root: Path, src: Path, loop: str, n: int) -> str:
    with server(root, src, loop, "--no-access-log") as (port, pid):
        get(port, "/bench.local/big.bin")  # verify once, warm up
        time.sleep(0.5)
        before = rss(pid)
        socks = []
        for _ in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /bench.local/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        time.sleep(max(3.0, n / 200))
        during = rss(pid)
        for s in socks:
            s.close()
        time.sleep(2)
        after = rss(pid)
        ok = get(port, "/bench.local/small.bin").startswith(b"HTTP/1.1 200")
    per = (during - before) / n
    return (
        f"{loop}: {n} non-reading clients: RSS +{(during - before) / MIB:.1f} MiB ({per / 1024:.1f} KiB each), "
        f"{(after - before) / MIB:.1f} MiB still held after they closed; served afterwards: {ok}"
    )


def misses(root: Path, src: Path, loop: str, seconds: float = 5) -> str:
    log = root / "misses.jsonl"
    slog = root.parent / "serve.log"
    with server(root, src, loop) as (port, _):
        size0, slog0 = (log.stat().st_size if log.exists() else 0), slog.stat().st_size
        path = "/" + "a" * 8000
        req = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        n = 0
        end = time.monotonic() + seconds
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(5)
            while time.monotonic() < end:
                s.sendall(req * 50)
                got = 0
                while got < 50:
                    got += s.recv(1 << 20).count(b"HTTP/1.1 404")
                n += 50
        time.sleep(0.5)
        grown, sgrown = log.stat().st_size - size0, slog.stat().st_size - slog0
    return (
        f"{loop}: {n} requests for one 8,000-byte path in {seconds:.0f} s: "
        f"misses.jsonl +{grown / MIB:.2f} MiB, access log +{sgrown / MIB:.2f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, default=REPO / "src")
    ap.add_argument("--loop", action="append", choices=["uvloop", "asyncio"])
    ap.add_argument("--clients", default="300,1500")
    ap.add_argument("--only", choices=["idle", "nonreading", "misses"])
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/hostile")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args.work.mkdir(parents=True, exist_ok=True)
    root = prepare(args.work, args.src.resolve())
    for loop in args.loop or ["uvloop", "asyncio"]:
        if args.only in (None, "idle"):
            print(idle(root, args.src, loop), flush=True)
        if args.only in (None, "nonreading"):
            for n in map(int, args.clients.split(",")):
                print(nonreading(root, args.src, loop, n), flush=True)
        if args.only in (None, "misses"):
            print(misses(root, args.src, loop), flush=True)


if __name__ == "__main__":
    main()

"""Does ``serve --workers 2`` scale? One 4 KiB file, gapcache and nginx with 1 and 2 workers,
``wrk -c32`` with 1 and 2 threads, free and pinned with ``taskset``; with the CPU each process used.

    .venv/bin/python bench/bench_workers.py [--seconds 5] [--rounds 3]

Columns: requests/s (best of the rounds, with the spread), then the CPU used during the best
round in cores (CPU seconds / wall seconds): wrk, and each server process (the worker processes'
shares also show how evenly ``SO_REUSEPORT`` spreads the 32 connections). "pinned": the server
on CPU 1 and wrk on CPU 0 (``taskset -c``), so that each gets a core of its own — one worker's
ceiling, and what two workers get from one core.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import PY, REPO, free_port, need, nginx, wait_port

sys.path.insert(0, str(REPO / "tests"))

TICK = os.sysconf("SC_CLK_TCK")
PATH = "bench.local/f4k.bin"


def build(work: Path) -> Path:
    """A root serving one 4 KiB file (built once)."""
    from gapcache.root import Root
    from helpers import build_local

    root = work / "root"
    if not (root / "current").exists():
        shutil.rmtree(work, ignore_errors=True)
        build_local(work, {PATH: bytes(range(256)) * 16})
        Root(root).load([work / "out.tar"])
    (work / "www" / PATH).parent.mkdir(parents=True, exist_ok=True)
    (work / "www" / PATH).write_bytes(bytes(range(256)) * 16)
    return root


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def family(pid: int) -> list[int]:
    """``pid`` and its children (the forked workers, nginx's workers)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


@contextmanager
def gapcache(root: Path, workers: int, pin: str | None) -> Iterator[tuple[int, int]]:
    port = free_port()
    cmd = [PY, "-m", "gapcache", "serve", "--root", str(root), "--bind", "127.0.0.1", "--port", f"files={port}",
           "--workers", str(workers), "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen([*(["taskset", "-c", pin] if pin else []), *cmd], stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        deadline = time.monotonic() + 20
        while len(family(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def run_wrk(url: str, seconds: int, threads: int, pin: str | None) -> tuple[float, float]:
    """(requests/s, wrk's CPU in cores)."""
    pre = ["taskset", "-c", pin] if pin else []
    subprocess.run([*pre, "wrk", "-t1", "-c4", "-d1s", url], capture_output=True, check=True)
    proc = subprocess.Popen([*pre, "wrk", f"-t{threads}", "-c32", f"-d{seconds}s", url], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    t0 = time.monotonic()
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or "Non-2xx" in out or proc.returncode:
        raise RuntimeError(out)
    return float(m.group(1)), (usage.ru_utime + usage.ru_stime) / wall


def measure(url: str, pids: list[int], seconds: int, threads: int, pin: str | None) -> tuple[float, float, list[float]]:
    before = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    rps, wrk_cpu = run_wrk(url, seconds, threads, pin)
    wall = time.monotonic() - t0
    return rps, wrk_cpu, [(cpu_seconds(p) - b) / wall for p, b in zip(pids, before, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/workers")
    args = ap.parse_args()
    need("nginx", "wrk", "taskset")
    root = build(args.work)
    cases = [  # (label, workers, wrk threads, server CPUs, wrk CPUs)
        ("free", 1, 1, None, None),
        ("free", 2, 1, None, None),
        ("free", 1, 2, None, None),
        ("free", 2, 2, None, None),
        ("pinned", 1, 1, "1", "0"),
        ("pinned", 2, 1, "1", "0"),
    ]
    results: dict[tuple[str, str, int, int], list[tuple[float, float, list[float]]]] = {}
    for _ in range(args.rounds):  # alternate, so that every case sees the same machine load
        for label, workers, threads, spin, wpin in cases:
            with gapcache(root, workers, spin) as (port, pid):
                pids = family(pid)
                got = measure(f"http://127.0.0.1:{port}/{PATH}", pids, args.seconds, threads, wpin)
                results.setdefault(("gapcache", label, workers, threads), []).append(got)
            if label == "free":
                with nginx(args.work / "www", args.work / f"nginx{workers}", workers=workers, autoindex=False) as port:
                    out = subprocess.run(["pgrep", "-f", f"nginx -c {args.work / f'nginx{workers}'}/nginx.conf"],
                                         capture_output=True, text=True).stdout.split()  # fmt: skip
                    pids = family(int(out[0])) if out else []
                    got = measure(f"http://127.0.0.1:{port}/{PATH}", pids, args.seconds, threads, wpin)
                    results.setdefault(("nginx", label, workers, threads), []).append(got)
    rows = []
    for (server, label, workers, threads), runs in results.items():
        best = max(runs, key=lambda r: r[0])
        one = results.get((server, label, 1, threads))
        ratio = f"{best[0] / max(r[0] for r in one):.2f}x" if one and workers == 2 else ""
        procs = " + ".join(f"{c:.2f}" for c in best[2])
        rows.append((f"{server} {workers} worker(s), wrk -t{threads} -c32, {label}",
                     f"{best[0]:,.0f} req/s ({min(r[0] for r in runs):,.0f}–{best[0]:,.0f})", ratio,
                     f"wrk {best[1]:.2f} cores", f"server {procs} cores"))  # fmt: skip
    print(f"\n## --workers 1 vs 2, 4 KiB file, {os.cpu_count()} CPUs, best of {args.rounds}\n")
    print("| server, wrk, placement | requests/s (spread) | 2 workers / 1 | wrk CPU | server CPU per process |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

"""500 concurrent clients pulling one 200 MiB blob plus small files: gapcache serve vs nginx.

    .venv/bin/python bench/bench_concurrent.py [--clients 500] [--big-mb 200] [--small 20] [--procs 2]

The same files are served by ``gapcache serve --root`` (one worker, after a build from ``file://``
and a load) and by nginx (one worker, sendfile on). The client is aiohttp in ``--procs`` separate
processes sharing the clients: each client GETs the big blob once and ``--small`` small files
(1–64 KiB), hashes every body (sha256) and compares it with the file's digest. Counted: errors
(connection errors, non-200 answers, short bodies), digest mismatches, and the aggregate MiB/s
(all bytes received / wall time from the first request to the last answer). Each server is
measured twice, alternating; the better run of each is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import PY, REPO, free_port, nginx, random_file, table, wait_port

MB = 1 << 20


def prepare(src: Path, big_mb: int, n_small: int) -> dict[str, str]:
    """``{relative path: sha256 hex}`` of the big blob and the small files (made once)."""
    rng = random.Random(500)
    want = src / f".made-{big_mb}-{n_small}"
    paths = {"big.bin": big_mb * MB, **{f"small/{i:04d}.bin": rng.randint(1024, 64 * 1024) for i in range(n_small)}}
    if not want.exists():
        shutil.rmtree(src, ignore_errors=True)
        for rel, size in paths.items():
            random_file(src / rel, size)
        want.touch()
    return {rel: hashlib.sha256((src / rel).read_bytes()).hexdigest() for rel in paths}


async def _clients(base: str, digests: dict[str, str], n: int, small: list[str]) -> dict[str, float]:
    import aiohttp

    stats: dict[str, float] = {"errors": 0, "mismatches": 0, "bytes": 0, "requests": 0}
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout, auto_decompress=False) as session:

        async def get(rel: str) -> None:
            h = hashlib.sha256()
            got = 0
            try:
                async with session.get(base + rel) as resp:
                    if resp.status != 200:
                        stats["errors"] += 1
                        return
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        h.update(chunk)
                        got += len(chunk)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                stats["errors"] += 1
                return
            stats["requests"] += 1
            stats["bytes"] += got
            if h.hexdigest() != digests[rel]:
                stats["mismatches"] += 1

        async def client(i: int) -> None:
            order = ["big.bin", *small]
            random.Random(i).shuffle(order)
            for rel in order:
                await get(rel)

        await asyncio.gather(*(client(i) for i in range(n)))
    return stats


def _client_proc(base: str, digests: dict[str, str], n: int, small: list[str], q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q.put(asyncio.run(_clients(base, digests, n, small)))


def pull(base: str, digests: dict[str, str], clients: int, procs: int, n_small: int) -> dict[str, float]:
    small = [r for r in digests if r.startswith("small/")][:n_small]
    q: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    share = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    t0 = time.perf_counter()
    ps = [multiprocessing.Process(target=_client_proc, args=(base, digests, k, small, q)) for k in share]
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    elapsed = time.perf_counter() - t0
    total = {k: sum(r[k] for r in results) for k in results[0]}
    total["seconds"] = elapsed
    total["mib_s"] = total["bytes"] / MB / elapsed
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--big-mb", type=int, default=200)
    ap.add_argument("--small", type=int, default=20)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/concurrent")
    args = ap.parse_args()
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    digests = prepare(src, args.big_mb, args.small)
    m = work / "files.yaml"
    m.write_text("format: 1\nfiles:\n" + "".join(f"  - url: {(src / r).as_uri()}\n" for r in digests))
    root, store = work / "root", work / "store"
    archive = work / "c.tar"
    if not (root / "current").exists():
        subprocess.run([PY, "-m", "gapcache", "build", "-f", m, "-o", archive, "--store", store, "-q"], check=True)
        subprocess.run([PY, "-m", "gapcache", "load", archive, "--root", root, "-q"], check=True)
    port = free_port()
    log = open(work / "serve.log", "w")  # noqa: SIM115
    ports = [x for n in ("registry", "repos", "charts", "pypi") for x in ("--port", f"{n}=0")]
    serve = subprocess.Popen(
        [
            PY,
            "-m",
            "gapcache",
            "serve",
            "--root",
            root,
            "--bind",
            "127.0.0.1",
            "--port",
            f"files={port}",
            *ports,
            "--no-access-log",
            "--max-connections",
            "4096",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    runs: dict[str, list[dict[str, float]]] = {"gapcache": [], "nginx": []}
    try:
        wait_port(port)
        with nginx(src, work / "nginx") as nport:
            for _ in range(2):
                g = pull(f"http://127.0.0.1:{port}/local{src}/", digests, args.clients, args.procs, args.small)
                runs["gapcache"].append(g)
                print("gapcache", json.dumps(g), flush=True)
                n = pull(f"http://127.0.0.1:{nport}/", digests, args.clients, args.procs, args.small)
                runs["nginx"].append(n)
                print("nginx", json.dumps(n), flush=True)
    finally:
        serve.terminate()
        serve.wait(10)
        log.close()
    g = max(runs["gapcache"], key=lambda r: r["mib_s"])
    n = max(runs["nginx"], key=lambda r: r["mib_s"])
    errors = sum(r["errors"] for rs in runs.values() for r in rs)
    rows = [
        (
            f"{args.clients} clients: {args.big_mb} MiB blob + {args.small} small files each (better of 2)",
            f"{g['mib_s']:.0f} MiB/s, {g['errors']:.0f} errors, {g['mismatches']:.0f} digest mismatches",
            f"nginx: {n['mib_s']:.0f} MiB/s, {n['errors']:.0f} errors, {n['mismatches']:.0f} mismatches",
            f"{g['mib_s'] / n['mib_s']:.2f}x nginx's throughput (goal >= 1.0, 0 errors)",
        ),
        (
            "spread (MiB/s of each run)",
            ", ".join(f"{r['mib_s']:.0f}" for r in runs["gapcache"]),
            ", ".join(f"{r['mib_s']:.0f}" for r in runs["nginx"]),
            f"errors in all runs: {errors:.0f}",
        ),
    ]
    print(table(f"Concurrent clients ({args.procs} aiohttp client processes, sha256 of every body)", rows))
    if errors or any(r["mismatches"] for rs in runs.values() for r in rs):
        sys.exit(1)


if __name__ == "__main__":
    main()

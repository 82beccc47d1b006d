"""The files mirror vs nginx, same files, same worker count, same run.

    .venv/bin/python bench/bench_serve.py [--workers 1] [--seconds 10]

- 1 GiB file: `curl -o /dev/null` throughput, best of 3 (both use sendfile);
- 4 KiB file: requests/s with `wrk -t2 -c32`;
- a directory listing (200 entries): requests/s with wrk, vs nginx `autoindex on`.
Both servers log no access lines (nginx `access_log off`, gapcache `--no-access-log`).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from common import PY, REPO, gapcache_serve, need, nginx, random_file, table, wrk

GIB = 1 << 30


def prepare(work: Path) -> Path:
    tree = work / "tree" / "bench.local"
    if not (tree / "big/1GiB.bin").exists():
        random_file(tree / "big/1GiB.bin", GIB)
    for i in range(200):
        p = tree / f"small/f{i:04d}.bin"
        if not p.exists():
            random_file(p, 4096)
    root = work / "root"
    if not (root / "current").exists():
        files = sorted(p for p in tree.rglob("*") if p.is_file())
        m = work / "m.yaml"
        m.write_text(
            "format: 1\nfiles:\n"
            + "".join(f"  - url: {p.resolve().as_uri()}\n    path: {p.relative_to(work / 'tree')}\n" for p in files)
        )
        subprocess.run([PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(work / "b.tar"),
                        "--store", str(work / "store"), "-q"], check=True)  # fmt: skip
        subprocess.run([PY, "-m", "gapcache", "load", str(work / "b.tar"), "--root", str(root), "-q"], check=True)
        (work / "b.tar").unlink()
    return work / "tree"


def curl_rate(url: str) -> float:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", url], check=True, capture_output=True, text=True
    ).stdout
    return float(out)


def measure(port: int, seconds: int) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}/bench.local"
    curl_rate(f"{base}/big/1GiB.bin")  # warm up (gapcache verifies a blob before its first byte)
    return {
        "big": max(curl_rate(f"{base}/big/1GiB.bin") for _ in range(3)),
        "small": wrk(f"{base}/small/f0001.bin", seconds),
        "listing": wrk(f"{base}/small/", seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/serve")
    args = ap.parse_args()
    need("nginx", "wrk", "curl")
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    tree = prepare(work)
    with nginx(tree, work / "nginx", workers=args.workers) as port:
        ref = measure(port, args.seconds)
    with gapcache_serve(work / "root", args.workers) as port:
        ours = measure(port, args.seconds)
    mib = 1 << 20
    rows = [
        ("1 GiB file (curl, best of 3)", f"{ours['big'] / mib:.0f} MiB/s", f"nginx {ref['big'] / mib:.0f} MiB/s",
         f"{ours['big'] / ref['big']:.2f}x"),
        ("4 KiB file (wrk -t2 -c32)", f"{ours['small']:.0f} req/s", f"nginx {ref['small']:.0f} req/s",
         f"{ours['small'] / ref['small']:.2f}x"),
        ("listing, 200 entries (wrk -t2 -c32)", f"{ours['listing']:.0f} req/s",
         f"nginx autoindex {ref['listing']:.0f} req/s", f"{ours['listing'] / ref['listing']:.2f}x"),
    ]  # fmt: skip
    print(table(f"Files mirror vs nginx, {args.workers} worker(s) each", rows))


if __name__ == "__main__":
    main()

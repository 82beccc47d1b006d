"""Build of 1,000 small files from a local upstream (nginx) vs `wget -i` and `curl --parallel`.

    .venv/bin/python bench/bench_fetch_small.py [--files 1000]

Same files, same upstream, same run. gapcache: `build` into a fresh store (resolve, fetch with
sha256 check, fsync, pack). curl: `--parallel --parallel-max 8` (gapcache's default concurrency).
curl also hashes (sha256sum), archives (tar cf) and syncs: the same
work as gapcache's build. wget: `-i` (sequential; wget has no parallel mode; download only).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from common import PY, REPO, need, nginx, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/fetchsmall")
    ap.add_argument("--src", type=Path, help="run the gapcache package under this directory")
    args = ap.parse_args()
    need("nginx", "curl", "wget")
    work: Path = args.work
    shutil.rmtree(work, ignore_errors=True)
    up = work / "upstream"
    rng = random.Random(7)
    names = []
    total = 0
    for i in range(args.files):
        name = f"pkg/{i % 20:02d}/file-{i:04d}.bin"
        size = rng.randint(1024, 32 * 1024)
        p = up / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))
        names.append(name)
        total += size
    rows = []
    with nginx(up, work / "nginx", autoindex=False) as port:
        urls = [f"http://127.0.0.1:{port}/{n}" for n in names]
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        (work / "m.yaml").write_text("format: 1\nfiles:\n" + "".join(f"  - url: {u}\n" for u in urls))
        curl_cfg = work / "curl.cfg"
        curl_cfg.write_text(
            "".join(f'url = "{u}"\noutput = "{work}/curl/{n}"\n' for u, n in zip(urls, names, strict=True))
        )

        def run_gapcache(store: Path) -> float:
            env = dict(os.environ, **({"PYTHONPATH": str(args.src)} if args.src else {}))
            t0 = time.perf_counter()
            subprocess.run(
                [PY, "-m", "gapcache", "build", "-f", str(work / "m.yaml"), "-o", str(work / "o.tar"),
                 "--store", str(store), "-q"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            return time.perf_counter() - t0

        def run_curl() -> float:
            """The same work with the standard tools: download, hash, archive, make durable."""
            shutil.rmtree(work / "curl", ignore_errors=True)
            (work / "curl.tar").unlink(missing_ok=True)
            t0 = time.perf_counter()
            subprocess.run(
                ["curl", "-sS", "--parallel", "--parallel-max", "8", "--create-dirs", "-K", str(curl_cfg)], check=True
            )
            tar = work / "curl.tar"
            pipeline = f"find . -type f -print0 | xargs -0 sha256sum > SHA256SUMS && tar cf {tar} . && sync {tar}"
            subprocess.run(pipeline, shell=True, check=True, cwd=work / "curl")
            return time.perf_counter() - t0

        def run_wget() -> float:
            shutil.rmtree(work / "wget", ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run(
                ["wget", "-q", "-x", "-nH", "-P", str(work / "wget"), "-i", str(work / "urls.txt")], check=True
            )
            return time.perf_counter() - t0

        g, c, w, warm = [], [], [], []
        for i in range(3):
            store = work / f"store{i}"
            g.append(run_gapcache(store))
            warm.append(run_gapcache(store))
            c.append(run_curl())
            w.append(run_wget())
    gb, cb, wb = min(g), min(c), min(w)
    label = f"{args.files} files, {total / 1024 / 1024:.1f} MiB"
    rows.append(
        (
            f"build, fresh store ({label}, best of 3)",
            f"{gb:.2f} s ({gb:.2f}–{max(g):.2f})",
            f"curl --parallel 8 + sha256sum + tar cf + sync: {cb:.2f} s",
            f"{cb / gb:.2f}x",
        )
    )
    rows.append(("same", f"{gb:.2f} s", f"wget -i: {wb:.2f} s", f"{wb / gb:.2f}x"))
    rows.append(("rebuild, warm store (downloads nothing)", f"{min(warm):.2f} s ({min(warm):.2f}–{max(warm):.2f})",
                 "goal ≤ 0.5 s (1,000 items)", "-"))  # fmt: skip
    print(table("Fetch many small files from a local nginx (ratio > 1: gapcache faster)", rows))


if __name__ == "__main__":
    main()

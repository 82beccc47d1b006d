"""Pack and load vs tar, on the same ~2 GB, in the same run; peak RSS as the archive grows.

    .venv/bin/python bench/bench_pack_load.py [--size-mb 2048] [--work bench/out/packload]

Both sides read a warm page cache and both are made durable (gapcache fsyncs what it writes; the
reference is followed by `sync`), so the comparison is like for like. Load is `gapcache load`
(streams, verifies every blob's sha256, stages, moves into place) vs `tar xf` (no verification).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from common import PY, REPO, random_file, table

MB = 1 << 20


def prepare(work: Path, total_mb: int) -> list[Path]:
    src = work / "src"
    big, small = 48 * MB, 256 * 1024
    n_small = 200
    n_big = max(1, (total_mb * MB - n_small * small) // big)
    files = [src / f"big/{i:03d}.bin" for i in range(n_big)] + [src / f"small/{i:04d}.bin" for i in range(n_small)]
    for f in files:
        if not f.exists():
            random_file(f, big if "big" in f.parts else small)
    return files


def manifest(work: Path, files: list[Path], name: str) -> Path:
    m = work / f"{name}.yaml"
    m.write_text("format: 1\nfiles:\n" + "".join(f"  - url: {f.resolve().as_uri()}\n" for f in files))
    return m


def gapcache(*args: str | Path) -> None:
    subprocess.run([PY, "-m", "gapcache", *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def peak_rss_kib(cmd: list[str]) -> int:
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([PY, "-c", probe, *cmd], check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=2048)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/packload")
    args = ap.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    files = prepare(work, args.size_mb)
    store = work / "store"
    m = manifest(work, files, "all")
    gapcache("build", "-f", m, "-o", work / "seed.tar", "--store", store, "-q")  # fills the store
    lock = work / "seed.tar.lock.json"
    data_bytes = sum(f.stat().st_size for f in files)
    rows = []

    # ---- pack vs tar cf --------------------------------------------------------------------
    out = work / "pack.tar"
    ref = work / "ref.tar"
    results = {"gapcache": [], "tar": []}  # type: dict[str, list[float]]
    for _ in range(3):
        for p in (out, ref):
            p.unlink(missing_ok=True)
        results["gapcache"].append(
            timed(lambda: gapcache("build", "--locked", lock, "-o", out, "--store", store, "-q"))
        )

        def tar_cf() -> None:
            subprocess.run(["tar", "cf", str(ref), "-C", str(store), "blobs"], check=True)
            subprocess.run(["sync", str(ref)], check=True)

        results["tar"].append(timed(tar_cf))
    g, t = min(results["gapcache"]), min(results["tar"])
    rows.append(
        (
            f"pack {data_bytes / MB:.0f} MiB (best of 3)",
            f"{g:.2f} s = {data_bytes / g / MB:.0f} MiB/s",
            f"tar cf + sync: {t:.2f} s = {data_bytes / t / MB:.0f} MiB/s",
            f"{t / g:.2f}x tar's throughput",
        )
    )

    # ---- load (verify) vs tar xf -----------------------------------------------------------
    results = {"gapcache": [], "tar": []}
    root, dest = work / "root", work / "xf"
    for _ in range(3):
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
        results["gapcache"].append(timed(lambda: gapcache("load", out, "--root", root, "-q")))
        dest.mkdir()

        def tar_xf() -> None:
            subprocess.run(["tar", "xf", str(ref), "-C", str(dest)], check=True)
            subprocess.run(["sync", "-f", str(dest)], check=True)

        results["tar"].append(timed(tar_xf))
    g, t = min(results["gapcache"]), min(results["tar"])
    rows.append(
        (
            "load with sha256 verification (best of 3)",
            f"{g:.2f} s = {data_bytes / g / MB:.0f} MiB/s",
            f"tar xf + sync: {t:.2f} s = {data_bytes / t / MB:.0f} MiB/s",
            f"{t / g:.2f}x tar's throughput",
        )
    )

    # ---- peak RSS as the archive grows -------------------------------------------------------
    rss = []
    for frac in (4, 2, 1):
        subset = files[::frac]  # every frac-th file: big and small in proportion
        sm = manifest(work, subset, f"part{frac}")
        size = sum(f.stat().st_size for f in subset)
        o = work / f"rss{frac}.tar"
        kib = peak_rss_kib([PY, "-m", "gapcache", "build", "-f", str(sm), "-o", str(o), "--store", str(store), "-q"])
        rss.append((size, kib))
        o.unlink()
    rows.append(
        (
            "peak RSS of build+pack",
            ", ".join(f"{s / MB:.0f} MiB archive: {k / 1024:.0f} MiB" for s, k in rss),
            "-",
            f"max/min {max(k for _, k in rss) / min(k for _, k in rss):.2f} (flat = 1.0)",
        )
    )
    print(table(f"Pack and load, {data_bytes / MB:.0f} MiB ({len(files)} files)", rows))
    print(json.dumps({"bytes": data_bytes, "rss_kib": rss}))


if __name__ == "__main__":
    main()

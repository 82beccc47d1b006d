"""Scale in items: N small blobs (default 100,000 of 1–4 KiB) from ``file://``, side by side with tar.

    .venv/bin/python bench/bench_scale.py [--items 100000] [--work bench/out/scale] [--only build,load,serve,ls]

Measured in one run, on the same files:

- build (time, peak RSS) of a ``files:`` manifest of ``file://`` URLs (fresh store, archive
  written) vs ``tar cf`` of the same files + ``sync``;
- load (time, peak RSS) vs ``tar xf`` + ``sync`` (both made durable; load also verifies every
  blob's sha256);
- ``serve --root`` and ``serve --archive``: time from start to the first answer, and peak RSS
  (the archive twice: the first run builds the member index ``ARCHIVE.index``, the second reads it);
- ``ls`` and ``verify`` (archive and root): time and peak RSS.

Peak RSS is the child's ``ru_maxrss`` (``os.wait4``); for ``serve`` it is ``VmHWM`` after the
first answer and 200 more requests. The goals (issue 16, goal 5) are printed beside each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from common import PY, REPO, free_port, table

KIB = 1024
MB = 1 << 20


def prepare(src: Path, n: int, seed: int = 16) -> list[Path]:
    """N files of 1–4 KiB random bytes, 1,000 per directory (made once; reused when present)."""
    rng = random.Random(seed)
    files = [src / f"d{i // 1000:03d}" / f"f{i:06d}.bin" for i in range(n)]
    stamp = src / f".made-{n}"
    if stamp.exists():
        return files
    for i, f in enumerate(files):
        if i % 1000 == 0:
            f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(rng.randbytes(rng.randint(KIB, 4 * KIB)))
    stamp.touch()
    return files


def manifest(path: Path, files: list[Path]) -> Path:
    path.write_text("format: 1\nfiles:\n" + "".join(f"  - url: {f.as_uri()}\n" for f in files))
    return path


def run(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd``; its wall time (s) and peak RSS (KiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0,):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-2000:]}")
    return elapsed, usage.ru_maxrss


def gapcache(*args: str | Path) -> list[str]:
    return [PY, "-m", "gapcache", *map(str, args)]


def sync_path(p: Path) -> None:
    subprocess.run(["sync", "-f", str(p)], check=True)


def tar_timed(args: list[str], synced: Path) -> float:
    """Seconds for ``tar ARGS`` and then ``sync`` of what it wrote (the reference, durable like gapcache)."""
    t_start = time.perf_counter()
    subprocess.run(["tar", *args], check=True)
    sync_path(synced)
    return time.perf_counter() - t_start


def serve_first_answer(
    args: list[str], url_path: str, extra: int = 200, paths: list[str] | None = None
) -> tuple[float, int]:
    """Start ``gapcache serve ARGS``; seconds until ``url_path`` answers 200, and VmHWM (KiB) after
    ``extra`` more requests."""
    port = free_port()
    ports = ["--port", f"files={port}"] + [
        x for n in ("registry", "repos", "charts", "pypi") for x in ("--port", f"{n}=0")
    ]
    cmd = gapcache("serve", *args, "--bind", "127.0.0.1", *ports, "--no-access-log")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}{url_path}"
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise RuntimeError(f"serve exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    resp.read()
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.02)
        first = time.perf_counter() - t0
        for p in (paths or [])[:extra]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=10) as resp:
                resp.read()
        hwm = 0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
        return first, hwm
    finally:
        proc.terminate()
        proc.wait(30)


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/scale")
    ap.add_argument("--only", default="build,load,serve,ls", help="stages: build,load,serve,ls")
    ap.add_argument("--reuse", action="store_true", help="keep the store and archive of an earlier run (skip build)")
    args = ap.parse_args()
    stages = set(args.only.split(","))
    work: Path = args.work.resolve()
    n = args.items
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"src{n}"
    t0 = time.perf_counter()
    files = prepare(src, n)
    total = sum(f.stat().st_size for f in files)
    print(f"{n} files, {total / MB:.0f} MiB (generated in {time.perf_counter() - t0:.1f} s)", flush=True)
    m = manifest(work / f"files{n}.yaml", files)
    store, archive, ref = work / "store", work / f"scale{n}.tar", work / f"ref{n}.tar"
    rows: list[tuple[str, str, str, str]] = []
    figures: dict[str, float] = {"items": n, "bytes": total}

    if "build" in stages and not args.reuse:
        shutil.rmtree(store, ignore_errors=True)
        archive.unlink(missing_ok=True)
        g, g_rss = run(gapcache("build", "-f", m, "-o", archive, "--store", store, "-q", "--no-bootstrap"))
        ref.unlink(missing_ok=True)
        t = tar_timed(["cf", str(ref), "-C", str(src), "."], ref)
        figures |= {"build_s": g, "build_rss_kib": g_rss, "tar_cf_s": t}
        rows.append(
            (
                f"build {n:,} files (file://, fresh store)",
                f"{g:.1f} s, peak RSS {mib(g_rss)}",
                f"tar cf + sync: {t:.2f} s",
                f"{g / t:.1f}x tar's time; RSS goal < 300 MiB",
            )
        )
        print(rows[-1], flush=True)

    if "load" in stages:
        root, dest = work / "root", work / "xf"
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["sync"], check=True)
        g, g_rss = run(gapcache("load", archive, "--root", root, "-q"))
        dest.mkdir()
        subprocess.run(["sync"], check=True)
        t = tar_timed(["xf", str(ref), "-C", str(dest)], dest)
        figures |= {"load_s": g, "load_rss_kib": g_rss, "tar_xf_s": t}
        rows.append(
            (
                f"load {n:,} blobs (verified, durable)",
                f"{g:.1f} s, peak RSS {mib(g_rss)}",
                f"tar xf + sync: {t:.2f} s",
                f"{t / g:.2f}x tar's throughput (goal >= 0.5); RSS goal < 300 MiB",
            )
        )
        print(rows[-1], flush=True)
        shutil.rmtree(dest, ignore_errors=True)

    if "serve" in stages:
        root = work / "root"
        lock = json.loads((Path(str(archive) + ".lock.json")).read_bytes())
        paths = ["/" + a["path"].removeprefix("files/") for i in lock["items"] for a in i["artifacts"]]
        rng = random.Random(1)
        sample = rng.sample(paths, min(200, len(paths)))
        first = paths[len(paths) // 2]
        g, g_rss = serve_first_answer(["--root", str(root)], first, paths=sample)
        rows.append(("serve --root: first answer", f"{g:.2f} s, RSS {mib(g_rss)}", "-", "RSS goal < 300 MiB"))
        print(rows[-1], flush=True)
        for p in archive.parent.glob(archive.name + ".index*"):
            p.unlink()
        a1, a1_rss = serve_first_answer(["--archive", str(archive)], first, paths=sample)
        a2, a2_rss = serve_first_answer(["--archive", str(archive)], first, paths=sample)
        figures |= {
            "serve_root_s": g,
            "serve_root_rss_kib": g_rss,
            "serve_archive_s": a1,
            "serve_archive_rss_kib": a1_rss,
            "serve_archive_cached_s": a2,
            "serve_archive_cached_rss_kib": a2_rss,
        }
        rows.append(
            (
                "serve --archive: first answer (index built)",
                f"{a1:.2f} s, RSS {mib(a1_rss)}",
                "-",
                "goal <= 5 s; RSS < 300 MiB",
            )
        )
        rows.append(
            (
                "serve --archive: first answer (index cached)",
                f"{a2:.2f} s, RSS {mib(a2_rss)}",
                "-",
                "goal <= 5 s; RSS < 300 MiB",
            )
        )
        print(rows[-2:], flush=True)

    if "ls" in stages:
        root = work / "root"
        for what, cmd in (
            ("ls ARCHIVE", gapcache("ls", archive)),
            ("ls --root", gapcache("ls", "--root", root)),
            ("verify ARCHIVE", gapcache("verify", archive, "-q")),
            ("verify --root", gapcache("verify", "--root", root, "-q")),
        ):
            g, g_rss = run(cmd)
            figures[what.replace(" ", "_").replace("--", "") + "_rss_kib"] = g_rss
            rows.append((what, f"{g:.2f} s, peak RSS {mib(g_rss)}", "-", "RSS goal < 300 MiB"))
            print(rows[-1], flush=True)

    print(table(f"Scale in items: {n:,} blobs of 1-4 KiB ({total / MB:.0f} MiB)", rows))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

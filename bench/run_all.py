"""Run every benchmark N times and regenerate bench/RESULTS.md (machine, date, spread over the runs).

    .venv/bin/python bench/run_all.py [--runs 3] [--only serve,requests] [--skip python,apt] [--out bench/RESULTS.md]

Each script prints markdown tables (``common.table``); every row is shown from the median run
(by ratio) with the ratios of all runs as the spread. Scripts that fail (a missing tool, no
network) are listed with their error instead of a table. Figures are ratios measured side by
side in the same run, on the same machine; the machine is shared, so read the spread.
bench/NOTES.md (the notes on each goal: profiles, what was tried) is appended as it is.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from common import PY, REPO

BENCH = REPO / "bench"
# (key, script arguments, what it measures)
SCRIPTS: list[tuple[str, list[str], str]] = [
    (
        "requests",
        ["bench_requests.py"],
        "small answers (4 KiB file, simple page, repomd.xml, manifest by tag), 1 worker",
    ),
    ("requests-t2", ["bench_requests.py", "--threads", "2"], "same with wrk -t2"),
    ("requests-w2", ["bench_requests.py", "--workers", "2"], "same with 2 workers each"),
    ("serve", ["bench_serve.py"], "files mirror: 1 GiB file, 4 KiB file, listing, 1 worker"),
    ("serve-w2", ["bench_serve.py", "--workers", "2"], "same with 2 workers each"),
    ("serve-archive", ["bench_serve_archive.py"], "1 GiB from a store file and from an archive member vs nginx"),
    ("fetch", ["bench_fetch_small.py"], "build of 1,000 small files vs curl + sha256sum + tar + sync"),
    ("pack", ["bench_pack_load.py"], "pack and load vs tar"),
    ("images", ["bench_images.py"], "images vs skopeo and docker-registry"),
    ("yum", ["bench_yum.py"], "yum full mirror vs dnf reposync"),
    ("python", ["bench_python.py"], "python packages vs pip download (needs the package index)"),
    ("charts", ["bench_charts.py"], "Helm charts vs nginx"),
    ("apt", ["bench_apt.py"], "apt vs aptly"),
    ("hostile", ["bench_hostile.py"], "hostile clients"),
    ("scale", ["bench_scale.py"], "100,000 small blobs: build, load vs tar, serve first answer, RSS"),
    ("concurrent", ["bench_concurrent.py"], "500 clients: 200 MiB blob + small files vs nginx"),
]
_ROW = re.compile(r"^\| (?!measure|---)(.+?) \| (.+?) \| (.+?) \| (.+?) \|$")
_NUM = re.compile(r"\d+(?:\.\d+)?")


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    osr = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    return f"{osr}, {platform.machine()}, {cpu}, {len(_cpus())} cores, {mem:,} MiB RAM; load average at start {load}"


def _cpus() -> list[int]:
    import os

    return sorted(os.sched_getaffinity(0))


def tools() -> str:
    def ver(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "missing"
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"

    return "; ".join(
        f"{name}: {ver(cmd)}"
        for name, cmd in (("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "-v"]), ("curl", ["curl", "--version"]),
                          ("tar", ["tar", "--version"]), ("python", [PY, "--version"]))
    )  # fmt: skip


def run_once(args: list[str]) -> tuple[list[tuple[str, list[tuple[str, str, str, str]]]], str | None]:
    """The tables one run printed: [(title, rows)], or an error."""
    proc = subprocess.run([PY, *args], cwd=BENCH, capture_output=True, text=True)
    if proc.returncode:
        return [], (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    tables: list[tuple[str, list[tuple[str, str, str, str]]]] = []
    for line in proc.stdout.splitlines():
        if line.startswith("## "):
            tables.append((line[3:].strip(), []))
            continue
        m = _ROW.match(line)
        if m and tables:
            tables[-1][1].append((m.group(1), m.group(2), m.group(3), m.group(4)))
    return tables, None


def ratio(cell: str) -> float:
    m = _NUM.search(cell)
    return float(m.group()) if m else float("nan")


def merge(runs: list[list[tuple[str, list[tuple[str, str, str, str]]]]]) -> str:
    out = []
    for t, (title, rows) in enumerate(runs[0]):
        out.append(
            f"\n### {title}\n\n| measure | gapcache | reference | ratio (median run) | ratio, {len(runs)} runs |\n"
        )
        out.append("|---|---|---|---|---|\n")
        for r in range(len(rows)):
            same = [run[t][1][r] for run in runs if t < len(run) and r < len(run[t][1])]
            same.sort(key=lambda x: ratio(x[3]))
            med = same[len(same) // 2]
            values = [ratio(x[3]) for x in same]
            out.append(f"| {med[0]} | {med[1]} | {med[2]} | {med[3]} | {min(values):.2f}–{max(values):.2f} |\n")
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--skip", default="")
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = ap.parse_args()
    only = {x for x in args.only.split(",") if x}
    skip = {x for x in args.skip.split(",") if x}
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmark results\n\n",
        f"Regenerated by `.venv/bin/python bench/run_all.py --runs {args.runs}` on {started}.\n\n",
        f"Machine: {machine()}.\n\nTools: {tools()}.\n\n",
        "Every figure compares gapcache with the reference tool **in the same run**, on the same data; a ratio\n"
        "> 1 means gapcache is faster (for times: a time ratio ≤ 1). Each script ran "
        f"{args.runs} times; each row is\nshown from the median run, with the ratios of every run as the spread. "
        "The machine is shared with\nother sessions, so single figures move; the ratios are what to compare.\n",
    ]
    for key, script, what in SCRIPTS:
        if (only and key not in only) or key in skip:
            continue
        cmd = ".venv/bin/python bench/" + " ".join(script)
        print(f"== {cmd} ({what})", file=sys.stderr)
        t0 = time.monotonic()
        runs, errors = [], []
        for _ in range(args.runs):
            tables, err = run_once(script)
            if err:
                errors.append(err)
            else:
                runs.append(tables)
        parts.append(f"\n## {what} — `{cmd}`\n")
        if runs:
            parts.append(merge(runs))
        if errors:
            parts.append(f"\n{len(errors)} of {args.runs} runs failed: `{errors[-1][:300]}`\n")
        print(f"   {time.monotonic() - t0:.0f} s", file=sys.stderr)
    notes = BENCH / "NOTES.md"  # what the profiles show, what was tried: kept by hand, appended as is
    if notes.exists():
        parts.append("\n" + notes.read_text())
    text = "".join(parts)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

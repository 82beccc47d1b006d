"""Fault campaign: `kill -9` of builds (×20, every other round two builds on one store), then a
final build and `verify`; and `kill -9` during pack (×10). Prints one JSON line per campaign.

    .venv/bin/python bench/faults_kill.py [--src DIR]     # --src: another checkout's src/ to compare

Figures are in README's "Reliability" table. Not a timed test: it takes a minute or two.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import UpstreamHandle, wait_for_file  # noqa: E402

MB = 1 << 20


def corrupt_blobs(store: Path) -> list[str]:
    blobs = store / "blobs/sha256"
    if not blobs.exists():
        return []
    return [b.name for b in blobs.iterdir() if hashlib.sha256(b.read_bytes()).hexdigest() != b.name]


def kill_builds(work: Path, env: dict[str, str], rounds: int = 20) -> dict[str, object]:
    up_root = work / "up"
    up_root.mkdir()
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/upstream.py"), str(up_root), str(work / "port")])
    try:
        wait_for_file(work / "port")
        up = UpstreamHandle(up_root, int((work / "port").read_text()))
        big = os.urandom(24 * MB)
        files = [{"url": up.put("k/big.bin", big), "sha256": hashlib.sha256(big).hexdigest()}]
        files += [{"url": up.put(f"k/s{i}.bin", os.urandom(3 * MB + i))} for i in range(4)]
        up.rule("k/big.bin", rate=8 * MB)
        for i in range(4):
            up.rule(f"k/s{i}.bin", rate=4 * MB)
        manifest = work / "m.yaml"
        manifest.write_text(yaml.safe_dump({"format": 1, "files": files}))
        store = work / "store"
        rng = random.Random(1)
        corrupt = tracebacks = 0
        for k in range(rounds):
            cmd = [sys.executable, "-m", "gapcache", "build", "-f", str(manifest), "--store", str(store), "-q"]
            builds = [
                subprocess.Popen(
                    [*cmd, "-o", str(work / f"o{j}.tar")],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for j in range(2 if k % 2 else 1)
            ]
            time.sleep(rng.uniform(0.6, 3.5))
            for b in builds:
                b.send_signal(signal.SIGKILL)
                b.wait()
                if b.stderr is not None and "Traceback" in b.stderr.read():
                    tracebacks += 1
            corrupt += len(corrupt_blobs(store))
        final = subprocess.run(
            [sys.executable, "-m", "gapcache", "build", "-f", str(manifest), "-o", str(work / "final.tar"),
             "--store", str(store), "-q"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        verify = subprocess.run(
            [sys.executable, "-m", "gapcache", "verify", str(work / "final.tar"), "-q"], env=env, capture_output=True
        )
        needed = sum((up_root / "k" / n).stat().st_size for n in ["big.bin", *(f"s{i}.bin" for i in range(4))])
        served = sum(int(v["bytes"]) for v in up.stats().values())
        return {
            "campaign": f"kill -9 of builds x{rounds}",
            "corrupt_blobs_after_kills": corrupt,
            "tracebacks": tracebacks,
            "final_build_rc": final.returncode,
            "verify_rc": verify.returncode,
            "tmp_left": sorted(p.name for p in (store / "tmp").iterdir()) if (store / "tmp").exists() else [],
            "bytes_needed": needed,
            "bytes_downloaded": served,
        }
    finally:
        proc.terminate()
        proc.wait(10)


def kill_packs(work: Path, env: dict[str, str], rounds: int = 10) -> dict[str, object]:
    (work / "src").mkdir()
    files = []
    for i in range(6):
        f = work / "src" / f"f{i}.bin"
        f.write_bytes(os.urandom(64 * MB))
        files.append({"url": f.as_uri()})
    (work / "m.yaml").write_text(yaml.safe_dump({"format": 1, "files": files}))

    def build(out: str) -> list[str]:
        return [sys.executable, "-m", "gapcache", "build", "-f", str(work / "m.yaml"), "-o", str(work / out),
                "--store", str(work / "store"), "-q"]  # fmt: skip

    subprocess.run(build("seed.tar"), env=env, check=True)
    rng = random.Random(2)
    left = []
    for _ in range(rounds):
        p = subprocess.Popen(build("out.tar"), env=env)
        start = time.monotonic()
        while not list(work.glob(".out.tar.tmp-*")) and time.monotonic() - start < 20 and p.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.15))
        p.send_signal(signal.SIGKILL)
        p.wait()
        left.append(len(list(work.glob(".out.tar.tmp-*"))))
        (work / "out.tar").unlink(missing_ok=True)
    rerun = subprocess.run(build("out.tar"), env=env)
    return {
        "campaign": f"kill -9 during pack x{rounds}",
        "temp_archives_after_each_kill": left,
        "after_rerun": [p.name for p in work.glob(".out.tar.tmp-*")],
        "rerun_rc": rerun.returncode,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(REPO / "src"), help="the gapcache source to run (default: this checkout)")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env["PYTHONPATH"] = args.src
    with tempfile.TemporaryDirectory(prefix="gapcache-faults-") as tmp:
        for name, campaign in (("builds", kill_builds), ("packs", kill_packs)):
            work = Path(tmp) / name
            work.mkdir()
            print(json.dumps(campaign(work, env)), flush=True)


if __name__ == "__main__":
    main()

"""Python packages: build vs `pip download`, and the simple index vs pypiserver and nginx.

    .venv/bin/python bench/bench_python.py

- build: `gapcache build` (fresh store) of `requests numpy` for three targets vs `pip download
  --only-binary=:all: --platform … --python-version …` once per target, from the same index
  (pip's configured one), same run; then a rebuild with a warm store (downloads nothing);
- serve: `/simple/requests/` requests/s with wrk — gapcache vs pypiserver serving the same files
  (installed into bench/out/pypiserver-venv on first use) and vs nginx serving gapcache's page
  pre-rendered to disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

from common import PY, REPO, free_port, gapcache_serve, need, nginx, table, wait_port, wrk

TARGETS = [("3.10", "manylinux_2_28_x86_64"), ("3.11", "manylinux_2_28_x86_64"), ("3.10", "manylinux_2_28_aarch64")]
REQS = ["requests", "numpy"]


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def main() -> None:
    need("nginx", "wrk")
    work = REPO / "bench/out/python"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sys.path.insert(0, str(REPO / "src"))
    from gapcache.kinds.python import default_index_url

    index = default_index_url()
    m = work / "m.yaml"
    m.write_text(
        "format: 1\npython:\n  requirements: ["
        + ", ".join(REQS)
        + "]\n  targets:\n"
        + "".join(f"    - {{python: '{py}', platform: {plat}}}\n" for py, plat in TARGETS)
        + f"  index_url: {index}\n"
    )
    build_cmd = [
        PY,
        "-m",
        "gapcache",
        "build",
        "-f",
        str(m),
        "-o",
        str(work / "p.tar"),
        "--store",
        str(work / "st"),
        "-q",
    ]
    t0 = time.perf_counter()
    subprocess.run(build_cmd, check=True, stderr=subprocess.DEVNULL)
    g = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = subprocess.run(build_cmd[:-1] + ["--json"], check=True, capture_output=True, text=True).stdout
    warm = time.perf_counter() - t0
    import json

    warm_bytes = json.loads(out)["bytes_downloaded"]
    t0 = time.perf_counter()
    for py, plat in TARGETS:
        arch = "x86_64" if "x86_64" in plat else "aarch64"
        # pip matches --platform literally: give it every manylinux tag a 2.28 system accepts
        plats = [f"manylinux_2_{m}_{arch}" for m in range(28, 16, -1)] + [f"manylinux2014_{arch}"]
        subprocess.run(
            [PY, "-m", "pip", "download", "-q", "--only-binary=:all:", *[f"--platform={x}" for x in plats],
             "--python-version", py,
             "--implementation", "cp", "--index-url", index, "-d", str(work / "pipdl"), *REQS, "pip", "setuptools",
             "wheel"],
            check=True, env=pip_env(), capture_output=True,
        )  # fmt: skip
    p = time.perf_counter() - t0
    rows = [
        ("build requests+numpy for 3 targets (fresh)", f"{g:.1f} s", f"pip download ×3: {p:.1f} s",
         f"time ratio {g / p:.2f} (≤ 1 is better)"),
        ("rebuild, warm store", f"{warm:.1f} s, {warm_bytes} bytes downloaded", "-", "-"),
    ]  # fmt: skip

    # ---- serve -------------------------------------------------------------------------------
    subprocess.run([PY, "-m", "gapcache", "load", str(work / "p.tar"), "--root", str(work / "root"), "-q"], check=True,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    with gapcache_serve(work / "root", listener="pypi") as port:
        ours = wrk(f"http://127.0.0.1:{port}/simple/requests/", 10)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/simple/requests/").read()
    pre = work / "prerendered/simple/requests"
    pre.mkdir(parents=True)
    (pre / "index.html").write_bytes(page)
    with nginx(work / "prerendered", work / "nginx") as nport:
        ng = wrk(f"http://127.0.0.1:{nport}/simple/requests/", 10)
    venv = REPO / "bench/out/pypiserver-venv"
    if not (venv / "bin/pypi-server").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", "pypiserver", "passlib"], check=True)
    pkgs = work / "pkgs"
    pkgs.mkdir()
    for f in (work / "pipdl").iterdir():
        shutil.copy(f, pkgs / f.name)
    sport = free_port()
    srv = subprocess.Popen([str(venv / "bin/pypi-server"), "run", "-p", str(sport), "-i", "127.0.0.1", str(pkgs)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_port(sport)
        ps = wrk(f"http://127.0.0.1:{sport}/simple/requests/", 10)
    finally:
        srv.terminate()
        srv.wait(10)
    rows.append(
        ("/simple/requests/ (wrk -t2 -c32)", f"{ours:.0f} req/s", f"pypiserver {ps:.0f} req/s", f"{ours / ps:.1f}x")
    )
    rows.append(("same", f"{ours:.0f} req/s", f"nginx, page pre-rendered {ng:.0f} req/s", f"{ours / ng:.2f}x"))
    print(table("Python packages", rows))


if __name__ == "__main__":
    main()

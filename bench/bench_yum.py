"""yum: full-repo mirror vs `dnf reposync --download-metadata` + `tar cf` + `sync`; repomd.xml req/s vs nginx.

    .venv/bin/python bench/bench_yum.py [--rpms 1000] [--runs 3] [--no-serve] [--src DIR]

The repository is built here once (one rpmbuild spec with N noarch subpackages, each carrying a
1–32 KiB random payload; createrepo_c) and cached under bench/out/yum-<N>; nginx on 127.0.0.1
serves it as the upstream. gapcache: `build` of a `mode: full` repo into a fresh store (resolve,
fetch with the sha256 of every rpm checked against primary.xml, fsync, pack the archive; no
bootstrap wheels). Reference, the same work with the standard tools in one pipeline: `dnf reposync
--download-metadata` (librepo checks every rpm's checksum) into a fresh directory and cache, then
`tar cf` of it and `sync` of the tar. Side by side in one run, best of --runs, spread reported.
Then `repodata/repomd.xml` requests/s: gapcache serve vs nginx serving the same tree (--no-serve skips).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from common import PY, REPO, gapcache_serve, need, nginx, table, wrk

HEAD = """Name: bench
Version: 1.0
Release: 1
Summary: bench packages
License: MIT
BuildArch: noarch
AutoReqProv: no
%define __os_install_post %{nil}
%define _build_id_links none
%description
bench
%install
mkdir -p %{buildroot}/opt/bench
cp %{_sourcedir}/*.bin %{buildroot}/opt/bench/
"""

SUB = """%package -n bench{i:04d}
Summary: bench package {i}
%description -n bench{i:04d}
bench
%files -n bench{i:04d}
/opt/bench/{i:04d}.bin
"""


def make_repo(repo: Path, work: Path, n: int) -> None:
    """N noarch rpms of 1–32 KiB random payload (one rpmbuild run), repodata by createrepo_c."""
    shutil.rmtree(work, ignore_errors=True)
    top = work / "rpmbuild"
    src = top / "SOURCES"
    src.mkdir(parents=True)
    rng = random.Random(16)
    for i in range(n):
        (src / f"{i:04d}.bin").write_bytes(rng.randbytes(rng.randint(1024, 32 * 1024)))
    spec = top / "bench.spec"
    spec.write_text(HEAD + "".join(SUB.format(i=i) for i in range(n)))
    subprocess.run(["rpmbuild", "--quiet", "--define", f"_topdir {top}", "--define", "_binary_payload w0.gzdio",
                    "-bb", str(spec)], check=True, capture_output=True)  # fmt: skip
    (repo / "Packages").mkdir(parents=True)
    for r in top.glob("RPMS/*/*.rpm"):
        shutil.copy(r, repo / "Packages" / r.name)
    subprocess.run(["createrepo_c", "--quiet", str(repo)], check=True)
    shutil.rmtree(top)


def spread(xs: list[float]) -> str:
    return f"{min(xs):.2f} s ({min(xs):.2f}–{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rpms", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-serve", action="store_true", help="skip the repomd.xml requests/s comparison")
    ap.add_argument("--src", type=Path, help="run the gapcache package under this directory")
    args = ap.parse_args()
    need("rpmbuild", "createrepo_c", "dnf", "nginx", "wrk", "tar", "sync")
    work = REPO / f"bench/out/yum-{args.rpms}"
    repo = work / "www/bench"
    if not (repo / "repodata/repomd.xml").exists():
        make_repo(repo, work, args.rpms)
    count = len(list((repo / "Packages").glob("*.rpm")))
    total = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    env = dict(os.environ, GAPCACHE_BOOTSTRAP="0", **({"PYTHONPATH": str(args.src)} if args.src else {}))
    rows = []
    with nginx(work / "www", work / "nginx") as port:
        base = f"http://127.0.0.1:{port}/bench/"
        m = work / "m.yaml"
        m.write_text(f"format: 1\nyum:\n  - id: bench\n    baseurl: {base}\n    arch: [noarch, x86_64]\n"
                     "    mode: full\n")  # fmt: skip
        (work / "repos.d").mkdir(exist_ok=True)
        (work / "repos.d/bench.repo").write_text(f"[bench]\nname=bench\nbaseurl={base}\ngpgcheck=0\n")

        def run_gapcache(n: int) -> float:
            store = work / f"st{n}"
            shutil.rmtree(store, ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run([PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(work / "y.tar"), "--store",
                            str(store), "-q"], check=True, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
            return time.perf_counter() - t0

        def run_dnf(n: int) -> float:
            sync, cache, tar = work / f"sync{n}", work / f"cache{n}", work / "dnf.tar"
            for x in (sync, cache):
                shutil.rmtree(x, ignore_errors=True)
            tar.unlink(missing_ok=True)
            t0 = time.perf_counter()
            subprocess.run(["dnf", "-q", "-y", "--disableplugin=local", "--releasever=9",
                            f"--setopt=reposdir={work / 'repos.d'}", f"--setopt=cachedir={cache}",
                            "reposync", "--download-metadata", "--repoid", "bench", "-p", str(sync)],
                           check=True, capture_output=True)  # fmt: skip
            subprocess.run(f"tar cf {tar} . && sync {tar}", shell=True, check=True, cwd=sync)
            return time.perf_counter() - t0

        g, d = [], []
        for n in range(args.runs):
            g.append(run_gapcache(n))
            d.append(run_dnf(n))
        for n in range(args.runs):
            for x in (work / f"st{n}", work / f"sync{n}", work / f"cache{n}"):
                shutil.rmtree(x, ignore_errors=True)
        rows.append((f"full mirror, {count} rpms, {total / 2**20:.1f} MiB (best of {args.runs})", spread(g),
                     f"dnf reposync --download-metadata + tar cf + sync: {spread(d)}",
                     f"time ratio {min(g) / min(d):.2f} (≤ 1 is better)"))  # fmt: skip
        ng = 0.0 if args.no_serve else wrk(f"{base}repodata/repomd.xml", 10)
    if not args.no_serve:
        root = work / "root"
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([PY, "-m", "gapcache", "load", str(work / "y.tar"), "--root", str(root), "-q"], check=True,
                       stderr=subprocess.DEVNULL, env=env)  # fmt: skip
        with gapcache_serve(root, listener="repos") as sport:
            ours = wrk(f"http://127.0.0.1:{sport}/bench/repodata/repomd.xml", 10)
        rows.append(
            ("repodata/repomd.xml (wrk -t2 -c32)", f"{ours:.0f} req/s", f"nginx {ng:.0f} req/s", f"{ours / ng:.2f}x")
        )
    print(table("yum repositories", rows))


if __name__ == "__main__":
    main()

"""yum: full-repo mirror vs `dnf reposync --download-metadata`; metadata requests/s vs nginx.

    .venv/bin/python bench/bench_yum.py [--packages 100] [--kib 512]

The repository is built here (rpmbuild, createrepo_c) and served by nginx on 127.0.0.1 as the
upstream. gapcache: `build` of a `mode: full` repo (fresh store, includes packing the archive);
reference: `dnf reposync --download-metadata` of the same repo into a fresh directory.
Then `repodata/repomd.xml` requests/s: gapcache serve vs nginx serving the same tree.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time

from common import PY, REPO, gapcache_serve, need, nginx, table, wrk

SPEC = """Name: bench{i:04d}
Version: 1.0
Release: 1
Summary: bench package
License: MIT
BuildArch: noarch
%description
bench
%install
mkdir -p %{{buildroot}}/opt/bench
head -c {size} /dev/urandom > %{{buildroot}}/opt/bench/{i:04d}.bin
%files
/opt/bench/{i:04d}.bin
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", type=int, default=100)
    ap.add_argument("--kib", type=int, default=512)
    args = ap.parse_args()
    need("rpmbuild", "createrepo_c", "dnf", "nginx", "wrk")
    work = REPO / "bench/out/yum"
    repo = work / "www/bench"
    if not (repo / "repodata/repomd.xml").exists():
        shutil.rmtree(work, ignore_errors=True)
        top = work / "rpmbuild"
        top.mkdir(parents=True)
        for i in range(args.packages):
            spec = top / f"b{i}.spec"
            spec.write_text(SPEC.format(i=i, size=args.kib * 1024))
            subprocess.run(["rpmbuild", "--quiet", "--define", f"_topdir {top}", "--define", "_binary_payload w0.gzdio",
                            "-bb", str(spec)], check=True, capture_output=True)  # fmt: skip
        (repo / "Packages").mkdir(parents=True)
        for r in top.glob("RPMS/*/*.rpm"):
            shutil.copy(r, repo / "Packages" / r.name)
        subprocess.run(["createrepo_c", "--quiet", str(repo)], check=True)
    total = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    rows = []
    with nginx(work / "www", work / "nginx") as port:
        base = f"http://127.0.0.1:{port}/bench/"
        m = work / "m.yaml"
        m.write_text(f"format: 1\nyum:\n  - id: bench\n    baseurl: {base}\n    arch: [noarch, x86_64]\n")
        (work / "repos.d").mkdir(exist_ok=True)
        (work / "repos.d/bench.repo").write_text(f"[bench]\nname=bench\nbaseurl={base}\ngpgcheck=0\n")
        g, d = [], []
        for n in range(3):
            for x in (work / f"st{n}", work / f"sync{n}", work / f"cache{n}"):
                shutil.rmtree(x, ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run([PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(work / "y.tar"), "--store",
                            str(work / f"st{n}"), "-q"], check=True, stderr=subprocess.DEVNULL)  # fmt: skip
            g.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(["dnf", "-q", "-y", "--disableplugin=local", "--releasever=9",
                            f"--setopt=reposdir={work / 'repos.d'}", f"--setopt=cachedir={work / f'cache{n}'}",
                            "reposync", "--download-metadata", "--repoid", "bench", "-p", str(work / f"sync{n}")],
                           check=True, capture_output=True)  # fmt: skip
            d.append(time.perf_counter() - t0)
        rows.append((f"full mirror, {args.packages} rpms, {total / 2**20:.0f} MiB (best of 3)", f"{min(g):.2f} s",
                     f"dnf reposync --download-metadata: {min(d):.2f} s",
                     f"time ratio {min(g) / min(d):.2f} (≤ 1 is better)"))  # fmt: skip
        ng = wrk(f"{base}repodata/repomd.xml", 10)
    subprocess.run([PY, "-m", "gapcache", "load", str(work / "y.tar"), "--root", str(work / "root"), "-q"], check=True,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    with gapcache_serve(work / "root", listener="repos") as sport:
        ours = wrk(f"http://127.0.0.1:{sport}/bench/repodata/repomd.xml", 10)
    rows.append(
        ("repodata/repomd.xml (wrk -t2 -c32)", f"{ours:.0f} req/s", f"nginx {ng:.0f} req/s", f"{ours / ng:.2f}x")
    )
    print(table("yum repositories", rows))


if __name__ == "__main__":
    main()

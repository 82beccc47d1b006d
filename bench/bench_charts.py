"""The chart mirror's ``/index.yaml`` vs nginx serving the same file, same run.

    .venv/bin/python bench/bench_charts.py [--charts 50] [--versions 10] [--workers 1] [--seconds 10]

A classic chart repository with 50 charts x 10 versions (500 chart versions, indexed by the Helm SDK)
is served on 127.0.0.1; gapcache builds a mirror of all 500 (each entry resolved from the index, its
archive fetched and checked), loads it and serves it on the charts listener. ``/index.yaml`` (rendered
per base URL, then answered from memory) is measured with ``wrk -t2 -c32``; nginx serves the very
bytes gapcache answered, as a static file. ChartMuseum is not measured: it is not packaged in Debian
or on PyPI, and this workplace cannot download its release binaries.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from common import PY, REPO, gapcache_serve, need, nginx, table, wrk

sys.path.insert(0, str(REPO / "tests"))


def chart_tgz(name: str, version: str) -> bytes:
    """A minimal chart archive (Chart.yaml, values.yaml, one template), fixed metadata."""
    files = {
        f"{name}/Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: '{version}'\n"
        f"description: benchmark chart {name}\ntype: application\n",
        f"{name}/values.yaml": "replicas: 1\nimage: {repository: nginx, tag: ''}\n",
        f"{name}/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\n",
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tf:
        for path, text in files.items():
            data = text.encode()
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
            tf.addfile(ti, io.BytesIO(data))
    return raw.getvalue()


def prepare(work: Path, charts: int, versions: int) -> tuple[Path, float]:
    import helm_python as helm

    from helpers import serve_dir

    repo = work / "upstream"
    repo.mkdir(parents=True, exist_ok=True)
    wanted = [(f"chart{c:03d}", f"1.{v}.0") for c in range(charts) for v in range(versions)]
    for name, version in wanted:
        p = repo / f"{name}-{version}.tgz"
        if not p.exists():
            p.write_bytes(chart_tgz(name, version))
    helm.repo_index_generate(repo)
    root = work / "root"
    built = 0.0
    if not (root / "current").exists():
        with serve_dir(repo) as url:
            m = work / "m.yaml"
            m.write_text(
                "format: 1\ncharts:\n" + "".join(f"  - {{repo: {url}, name: {n}, version: {v}}}\n" for n, v in wanted)
            )
            t0 = time.perf_counter()
            subprocess.run([PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(work / "c.tar"),
                            "--store", str(work / "store"), "-q"], check=True)  # fmt: skip
            built = time.perf_counter() - t0
        subprocess.run([PY, "-m", "gapcache", "load", str(work / "c.tar"), "--root", str(root), "-q"], check=True)
        (work / "c.tar").unlink()
    return root, built


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--charts", type=int, default=50)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/charts")
    args = ap.parse_args()
    need("nginx", "wrk")
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    root, built = prepare(work, args.charts, args.versions)
    static = work / "static"
    static.mkdir(exist_ok=True)
    with gapcache_serve(root, args.workers, listener="charts") as port:
        url = f"http://127.0.0.1:{port}/index.yaml"
        body = urllib.request.urlopen(url).read()
        (static / "index.yaml").write_bytes(body)  # the very bytes, for nginx
        ours = wrk(url, args.seconds)
    with nginx(static, work / "nginx", workers=args.workers, autoindex=False) as port:
        ref = wrk(f"http://127.0.0.1:{port}/index.yaml", args.seconds)
    n = args.charts * args.versions
    rows = [
        (f"/index.yaml, {n} chart versions, {len(body) / 1024:.0f} KiB (wrk -t2 -c32)", f"{ours:.0f} req/s",
         f"nginx {ref:.0f} req/s", f"{ours / ref:.2f}x"),
    ]  # fmt: skip
    if built:
        rows.append((f"build: resolve + fetch {n} charts from a 127.0.0.1 repo", f"{built:.1f} s", "-", "-"))
    print(table(f"Chart mirror vs nginx, {args.workers} worker(s) each", rows))


if __name__ == "__main__":
    main()

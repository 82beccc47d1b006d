"""Per-request serving cost: small answers from gapcache vs nginx serving the same bytes from disk.

    .venv/bin/python bench/bench_requests.py [--workers 1] [--seconds 10] [--threads 1]

One mirror holding a 4 KiB file, a Python project (PEP 503 page), a 20-rpm yum repository (full
mirror) and one image; each answer is fetched once from gapcache and written under nginx's root
at the same path, so both serve identical bytes. ``wrk -tT -c32`` per URL (after a warm-up);
rounds alternate between the two servers; best of 3 with the spread.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from common import PY, REPO, free_port, need, nginx, table, wait_port, wrk

sys.path.insert(0, str(REPO / "tests"))

OCI = "Accept: application/vnd.oci.image.manifest.v1+json"
SPEC = """Name: b{i}
Version: 1
Release: 1
Summary: bench
License: MIT
BuildArch: noarch
%description
bench
%install
mkdir -p %{{buildroot}}/opt
head -c 4096 /dev/urandom > %{{buildroot}}/opt/b{i}
%files
/opt/b{i}
"""


def yum_repo(www: Path) -> None:
    repo = www / "bench"
    if (repo / "repodata/repomd.xml").exists():
        return
    top = www.parent / "rpmbuild"
    top.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        spec = top / f"b{i}.spec"
        spec.write_text(SPEC.format(i=i))
        subprocess.run(["rpmbuild", "--quiet", "--define", f"_topdir {top}", "-bb", str(spec)], check=True,
                       capture_output=True)  # fmt: skip
    (repo / "Packages").mkdir(parents=True)
    for r in top.glob("RPMS/*/*.rpm"):
        shutil.copy(r, repo / "Packages" / r.name)
    subprocess.run(["createrepo_c", "--quiet", str(repo)], check=True)


def build(work: Path) -> None:
    """The mirror, loaded at work/root (built once; delete bench/out/requests to rebuild)."""
    from helpers import serve_dir
    from registry import docker_registry, layer, write_image
    from reviewkit import wheel, wheel_name, write_index

    if (work / "root/current").exists():
        return
    shutil.rmtree(work, ignore_errors=True)
    (work / "files").mkdir(parents=True)
    (work / "files/f4k.bin").write_bytes(bytes(range(256)) * 16)
    dists = {wheel_name(n, v): wheel(n, v, "MIT") for n, v in (("gapdemo", "1.0"), ("gapdemo", "1.1"))}
    for boot in ("pip", "setuptools", "wheel"):
        dists[wheel_name(boot, "99.0")] = wheel(boot, "99.0", "MIT")
    write_index(work / "index", dists)
    yum_repo(work / "www")
    write_image(work / "oci", "1", {"linux/amd64": [layer({"hello": b"hi\n" * 1000})]})
    with (
        docker_registry(work / "registry") as reg,
        serve_dir(work / "index") as index,
        nginx(work / "www", work / "nginx-up") as yport,
    ):
        reg.push(work / "oci", "1", "team/app:1")
        (work / "m.yaml").write_text(
            "format: 1\n"
            f"files:\n  - url: {(work / 'files/f4k.bin').as_uri()}\n    path: bench.local/f4k.bin\n"
            f"images:\n  - {reg.host}/team/app:1\nregistries:\n  {reg.host}: {{insecure: true}}\n"
            f"python:\n  requirements: [gapdemo]\n  index_url: {index}/simple/\n"
            "  targets:\n    - {python: '3.11', platform: manylinux_2_28_x86_64}\n"
            f"yum:\n  - id: bench\n    baseurl: http://127.0.0.1:{yport}/bench/\n"
        )
        subprocess.run([PY, "-m", "gapcache", "build", "-f", str(work / "m.yaml"), "-o", str(work / "r.tar"),
                        "--store", str(work / "store"), "-q"], check=True)  # fmt: skip
    subprocess.run([PY, "-m", "gapcache", "load", str(work / "r.tar"), "--root", str(work / "root"), "-q"], check=True)


def serve(work: Path, workers: int, src: Path | None = None) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    ports = {n: free_port() for n in ("registry", "repos", "pypi", "files")}
    cmd = [PY, "-m", "gapcache", "serve", "--root", str(work / "root"), "--bind", "127.0.0.1", "--no-access-log",
           "--workers", str(workers), "--port", "charts=0", *[f"--port={n}={p}" for n, p in ports.items()]]  # fmt: skip
    env = dict(os.environ)
    if src:  # another checkout's code (before/after comparisons)
        env["PYTHONPATH"] = str(src)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for p in ports.values():
        wait_port(p)
    return proc, ports


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--src", type=Path, help="serve with the gapcache package under this directory")
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/requests")
    args = ap.parse_args()
    need("nginx", "wrk", "rpmbuild", "createrepo_c", "docker-registry", "skopeo")
    work: Path = args.work
    build(work)
    proc, ports = serve(work, args.workers, args.src)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['registry']}/v2/_catalog") as r:
            name = __import__("json").load(r)["repositories"][0]
        paths = {  # label: (listener, path, wrk headers)
            "4 KiB file": ("files", "/bench.local/f4k.bin", ()),
            "`/simple/gapdemo/`": ("pypi", "/simple/gapdemo/", ()),
            "`repodata/repomd.xml`": ("repos", "/bench/repodata/repomd.xml", ()),
            "image manifest by tag": ("registry", f"/v2/{name}/manifests/1", (OCI,)),
        }
        www = work / "same"
        for listener, path, hdrs in paths.values():  # nginx gets the very bytes gapcache answers
            req = urllib.request.Request(f"http://127.0.0.1:{ports[listener]}{path}", headers=dict(
                h.split(": ", 1) for h in hdrs))  # fmt: skip
            with urllib.request.urlopen(req) as r:
                body = r.read()
            dest = www / (path.lstrip("/") + ("index.html" if path.endswith("/") else ""))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(body)
        with nginx(www, work / "nginx", workers=args.workers, autoindex=False) as port:
            ours: dict[str, list[float]] = {k: [] for k in paths}
            ref: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(args.rounds):  # alternate, so that both see the same machine load
                for k, (lst, p, h) in paths.items():
                    ours[k].append(wrk(f"http://127.0.0.1:{ports[lst]}{p}", args.seconds, args.threads, headers=h))
                    ref[k].append(wrk(f"http://127.0.0.1:{port}{p}", args.seconds, args.threads, headers=h))
    finally:
        proc.terminate()
        proc.wait(10)

    def spread(xs: list[float]) -> str:
        return f"{max(xs):,.0f} req/s ({min(xs):,.0f}–{max(xs):,.0f})"

    rows = [(f"{k} (wrk -t{args.threads} -c32, best of {args.rounds})", spread(ours[k]), f"nginx {spread(ref[k])}",
             f"{max(ours[k]) / max(ref[k]):.2f}x") for k in paths]  # fmt: skip
    print(table(f"Small answers vs nginx, {args.workers} worker(s) each", rows))


if __name__ == "__main__":
    main()

"""Images: fetch vs `skopeo sync`, and the registry mirror vs Debian's docker-registry.

    .venv/bin/python bench/bench_images.py [--images 6] [--layer-mb 32]

- fetch: `gapcache build` of N images vs `skopeo sync --src yaml --dest dir` of the same images
  from the same local docker-registry, same run (fresh store / fresh directory each time);
- serve: a 200 MiB layer blob GET (curl, best of 3) and manifest GET/HEAD requests/s (wrk),
  gapcache serve vs the docker-registry that holds the same images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import PY, REPO, gapcache_serve, need, table, wrk

sys.path.insert(0, str(REPO / "tests"))
from registry import docker_registry, layer, write_image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--layer-mb", type=int, default=32)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/images")
    args = ap.parse_args()
    need("docker-registry", "skopeo", "curl", "wrk")
    work: Path = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []
    with docker_registry(work / "registry") as reg:
        oci = work / "oci"
        base = layer({"base.bin": os.urandom(args.layer_mb << 20)})
        for i in range(args.images):
            layers = [base, layer({f"app{i}.bin": os.urandom(args.layer_mb << 20)}), layer({"small": os.urandom(4096)})]
            write_image(oci, f"v{i}", {"linux/amd64": layers})
            reg.push(oci, f"v{i}", f"bench/app{i}:1")
        big = layer({"big.bin": os.urandom(200 << 20)})
        write_image(oci, "big", {"linux/amd64": [big]})
        reg.push(oci, "big", "bench/big:1")
        refs = [f"bench/app{i}:1" for i in range(args.images)]
        total_mb = (args.images + 1) * args.layer_mb
        m = work / "m.yaml"
        m.write_text(
            "format: 1\nimages:\n"
            + "".join(f"  - {reg.host}/{r}\n" for r in refs)
            + f"registries:\n  {reg.host}: {{insecure: true}}\n"
        )
        sync_yaml = work / "sync.yaml"
        sync_yaml.write_text(
            f"{reg.host}:\n  tls-verify: false\n  images:\n"
            + "".join(f"    bench/app{i}: ['1']\n" for i in range(args.images))
        )
        g, s = [], []
        for n in range(3):
            t0 = time.perf_counter()
            subprocess.run(
                [PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(work / "i.tar"),
                 "--store", str(work / f"st{n}"), "-q"], check=True, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            g.append(time.perf_counter() - t0)
            dest = work / f"sync{n}"
            t0 = time.perf_counter()
            subprocess.run(
                ["skopeo", "sync", "--src", "yaml", "--dest", "dir", "--scoped", str(sync_yaml), str(dest)],
                check=True, capture_output=True,
            )  # fmt: skip
            s.append(time.perf_counter() - t0)
        rows.append(
            (f"fetch {args.images} images, {total_mb} MiB of distinct layers (best of 3)", f"{min(g):.2f} s",
             f"skopeo sync: {min(s):.2f} s", f"time ratio {min(g) / min(s):.2f} (≤ 1 is better)")
        )  # fmt: skip

        # ---- serve ------------------------------------------------------------------------
        (work / "m2.yaml").write_text(
            f"format: 1\nimages:\n  - {reg.host}/bench/big:1\n  - {reg.host}/{refs[0]}\n"
            f"registries:\n  {reg.host}: {{insecure: true}}\n"
        )
        subprocess.run([PY, "-m", "gapcache", "build", "-f", str(work / "m2.yaml"), "-o", str(work / "s.tar"),
                        "--store", str(work / "st0"), "-q"], check=True, stderr=subprocess.DEVNULL)  # fmt: skip
        subprocess.run([PY, "-m", "gapcache", "load", str(work / "s.tar"), "--root", str(work / "root"), "-q"],
                       check=True, stderr=subprocess.DEVNULL)  # fmt: skip
        import hashlib

        big_digest = "sha256:" + hashlib.sha256(big).hexdigest()
        hc = reg.host.replace(":", "_")
        ref = {
            "blob": f"http://{reg.host}/v2/bench/big/blobs/{big_digest}",
            "manifest": f"http://{reg.host}/v2/bench/app0/manifests/1",
        }

        def rate(url: str) -> float:
            out = subprocess.run(["curl", "-sL", "-o", "/dev/null", "-w", "%{speed_download}", url],
                                 check=True, capture_output=True, text=True).stdout  # fmt: skip
            return float(out)

        accept = ("Accept: application/vnd.oci.image.manifest.v1+json",)
        with gapcache_serve(work / "root", listener="registry") as port:
            ours = {
                "blob": f"http://127.0.0.1:{port}/v2/{hc}/bench/big/blobs/{big_digest}",
                "manifest": f"http://127.0.0.1:{port}/v2/{hc}/bench/app0/manifests/1",
            }
            rate(ours["blob"])
            ob, rb = max(rate(ours["blob"]) for _ in range(3)), max(rate(ref["blob"]) for _ in range(3))
            om, rm = wrk(ours["manifest"], 10, headers=accept), wrk(ref["manifest"], 10, headers=accept)
        mib = 1 << 20
        rows.append(("200 MiB layer blob GET (curl, best of 3)", f"{ob / mib:.0f} MiB/s",
                     f"docker-registry {rb / mib:.0f} MiB/s", f"{ob / rb:.2f}x"))  # fmt: skip
        rows.append(("manifest GET by tag (wrk -t2 -c32)", f"{om:.0f} req/s", f"docker-registry {rm:.0f} req/s",
                     f"{om / rm:.2f}x"))  # fmt: skip
    print(table("Images: fetch vs skopeo sync; registry mirror vs docker-registry (1 worker)", rows))


if __name__ == "__main__":
    main()

"""Large blobs served from an archive member at its offset (`serve --archive`) vs nginx and vs `serve --root`.

    .venv/bin/python bench/bench_serve_archive.py

The 1 GiB file of bench_serve.py (bench/out/serve), packed into an uncompressed archive once; the same
bytes served by nginx from the file, by gapcache from its root (a store file) and by gapcache from the
archive in place (the member's bytes at their offset: the kernel's sendfile from the tar). curl -o
/dev/null, best of 3 after a warm-up (gapcache hashes a blob before its first byte goes out).
"""

from __future__ import annotations

import subprocess

from bench_serve import curl_rate, prepare
from common import PY, REPO, gapcache_serve, need, nginx, table

MIB = 1 << 20


def big(port: int) -> float:
    url = f"http://127.0.0.1:{port}/bench.local/big/1GiB.bin"
    curl_rate(url)  # warm-up: verification, page cache
    return max(curl_rate(url) for _ in range(3))


def main() -> None:
    need("nginx", "curl")
    work = REPO / "bench/out/serve"
    work.mkdir(parents=True, exist_ok=True)
    tree = prepare(work)
    archive = work / "a.tar"
    if not archive.exists():
        m = work / "m.yaml"  # written by prepare
        subprocess.run([PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(archive),
                        "--store", str(work / "store"), "-q"], check=True)  # fmt: skip
    with nginx(tree, work / "nginx") as port:
        ref = big(port)
    with gapcache_serve(work / "root") as port:
        root = big(port)
    with gapcache_serve(archive, archive=True) as port:
        member = big(port)
    rows = [
        ("1 GiB, store file (serve --root; curl, best of 3)", f"{root / MIB:.0f} MiB/s", f"nginx {ref / MIB:.0f} MiB/s",
         f"{root / ref:.2f}x"),
        ("1 GiB, archive member at its offset (serve --archive)", f"{member / MIB:.0f} MiB/s",
         f"nginx {ref / MIB:.0f} MiB/s", f"{member / ref:.2f}x"),
    ]  # fmt: skip
    print(table("Large blobs from a store file and from an archive member vs nginx, 1 worker each", rows))


if __name__ == "__main__":
    main()

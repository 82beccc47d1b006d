"""Large blobs served from an archive member at its offset (`serve --archive`) vs nginx and vs `serve --root`.

    .venv/bin/python bench/bench_serve_archive.py

The 1 GiB file of bench_serve.py (bench/out/serve), packed into an uncompressed archive once; the same
bytes served by nginx from the file, by gapcache from its root (a store file) and by gapcache from the
archive in place (the member's bytes at their offset: the kernel's sendfile from the tar). curl -o
/dev/null, best of 3 after a warm-up (gapcache hashes a blob before its first byte goes out).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench_serve import curl_rate, prepare
from common import PY, REPO, free_port, gapcache_serve, need, nginx, table, wait_port

MIB = 1 << 20


@contextlib.contextmanager
def serve_archive(archive: Path) -> Iterator[int]:
    port = free_port()
    log = open(archive.parent / "gapcache-serve-archive.log", "a")  # noqa: SIM115
    cmd = [PY, "-m", "gapcache", "serve", "--archive", str(archive), "--bind", "127.0.0.1"]
    cmd += ["--port", f"files={port}", "--no-access-log"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


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
    with serve_archive(archive) as port:
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

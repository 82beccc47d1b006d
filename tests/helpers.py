"""In-process helpers for tests that need a built store and archive without a network."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gapcache.build import BuildOptions, BuildResult, build
from gapcache.manifest import parse_manifest


def local_files(src: Path, contents: dict[str, bytes]) -> list[str]:
    """Write files under ``src`` and return their file:// URLs."""
    urls = []
    for name, data in contents.items():
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        urls.append(p.resolve().as_uri())
    return urls


def build_local(
    tmp: Path, contents: dict[str, bytes], out_name: str = "out.tar", store: str = "store", **opts: object
) -> BuildResult:
    """Build an archive from local files (file:// sources) into ``tmp``."""
    urls = local_files(tmp / "src", contents)
    entries = [f"  - url: {u}\n    path: {n}\n" for u, n in zip(urls, contents, strict=True)]
    text = "format: 1\nfiles:\n" + "".join(entries)
    manifest = parse_manifest(text, "test.yaml")
    options = BuildOptions(store=tmp / store, out=tmp / out_name, **opts)  # type: ignore[arg-type]
    result = asyncio.run(build(manifest, options))
    assert result.ok, result.failures
    return result


def random_bytes(n: int, seed: int = 0) -> bytes:
    return os.urandom(n) if seed == 0 else bytes((i * seed + i // 7) % 251 for i in range(n))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_dir(root: Path) -> Iterator[str]:
    """A static HTTP server for ``root`` on 127.0.0.1 (free port); yields its base URL (used by the chart
    repo and index fixtures)."""
    root.mkdir(parents=True, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def small_tmpfs(mnt: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mnt`` (root): a disk that fills up, or has no room, on demand."""
    import subprocess

    import pytest

    mnt.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (needs root): {res.stderr!r}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)

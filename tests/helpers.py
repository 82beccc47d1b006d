"""In-process helpers for tests that need a built store and archive without a network."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

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

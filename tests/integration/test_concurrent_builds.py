"""Builds sharing one store (issue 10, item 1): two and five at once against a slow upstream all exit
0, every blob in the store hashes to its name, and every archive they wrote verifies."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import UpstreamHandle, cli_env, gapcache, sha256, write_manifest

MB = 1 << 20


def _store_is_clean(store: Path) -> int:
    blobs = list((store / "blobs/sha256").iterdir())
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"{blob.name} does not hash to its name"
    return len(blobs)


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 5])
def test_concurrent_builds_share_one_store(tmp_path: Path, upstream: UpstreamHandle, n: int) -> None:
    files = []
    for i in range(4):
        data = os.urandom(3 * MB + i)
        path = f"conc{n}/pinned{i}.bin"
        files.append({"url": upstream.put(path, data), "sha256": sha256(data)})
        upstream.rule(path, rate=6 * MB)  # slow: every build is mid-transfer while the others start
    for i in range(3):  # unpinned: the digest is learnt while fetching
        path = f"conc{n}/unpinned{i}.bin"
        files.append({"url": upstream.put(path, os.urandom(2 * MB + i))})
        upstream.rule(path, rate=6 * MB)
    m = write_manifest(tmp_path / "m.yaml", files)
    store = tmp_path / "store"
    procs = []
    for k in range(n):
        cmd = [sys.executable, "-m", "gapcache", "build", "-f", str(m), "-o", str(tmp_path / f"o{k}.tar")]
        cmd += ["--store", str(store), "-q"]
        procs.append(subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outcomes = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()
    assert [rc for rc, _ in outcomes] == [0] * n, outcomes
    assert not any("Traceback" in err for _, err in outcomes), outcomes
    assert _store_is_clean(store) == len(files)
    assert not [p.name for p in (store / "tmp").iterdir()]  # no partial, lock or temp file left
    for k in range(n):
        res = gapcache("verify", tmp_path / f"o{k}.tar", "-q")
        assert res.returncode == 0, res.stderr
    # the builds shared the work: each file went over the wire once (unpinned ones: 304 for the others)
    for f in files:
        path = f["url"].split("/", 3)[3]
        assert upstream.served(path) == (upstream.root / path).stat().st_size, path

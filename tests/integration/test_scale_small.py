"""Many small blobs (2,000; the 100,000-blob figures are in bench/bench_scale.py): build from
file://, load, ``ls``/``verify``, and ``serve --archive`` with its cached member index — a stale or
corrupt index is ignored, and a tampered member is still refused."""

from __future__ import annotations

import hashlib
import os
import random
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import gapcache, serving
from gapcache.archive import ArchiveReader

pytestmark = pytest.mark.slow
N = 2000


@dataclass
class Built:
    tmp: Path
    archive: Path
    files: dict[str, bytes]  # served URL path -> content


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("scale")
    rng = random.Random(2000)
    files: dict[str, bytes] = {}
    lines = []
    for i in range(N):
        f = tmp / "src" / f"d{i // 500}" / f"f{i:05d}.bin"
        f.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(1024, 4096))
        f.write_bytes(data)
        files[f"/local{f}"] = data
        lines.append(f"  - url: {f.as_uri()}\n")
    (tmp / "m.yaml").write_text("format: 1\nfiles:\n" + "".join(lines))
    archive = tmp / "scale.tar"
    gapcache("build", "-f", tmp / "m.yaml", "-o", archive, "--store", tmp / "store", "-q", check=True, timeout=600)
    yield Built(tmp, archive, files)


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _sample(b: Built, k: int = 50) -> list[str]:
    return random.Random(1).sample(sorted(b.files), k)


def test_load_ls_verify(built: Built) -> None:
    root = built.tmp / "root"
    gapcache("load", built.archive, "--root", root, "-q", check=True, timeout=600)
    assert len(list((root / "blobs" / "sha256").iterdir())) == N
    assert not (root / "tmp").exists()  # staging gone
    out = gapcache("ls", built.archive, check=True).stdout
    assert f"{N} item(s), {N} blob(s)" in out
    assert gapcache("verify", built.archive, "-q").returncode == 0
    assert gapcache("verify", "--root", root, "-q").returncode == 0
    with serving(root) as (_, port):
        for path in _sample(built):
            assert _get(port, path) == (200, built.files[path])


def test_serve_archive_writes_and_reuses_its_member_index(built: Built) -> None:
    index = built.archive.with_name(built.archive.name + ".index")
    index.unlink(missing_ok=True)
    with serving(built.archive) as (_, port):
        for path in _sample(built):
            assert _get(port, path) == (200, built.files[path])
    assert index.is_file()
    written = index.stat().st_mtime_ns
    with serving(built.archive) as (_, port):
        for path in _sample(built):
            assert _get(port, path) == (200, built.files[path])
    assert index.stat().st_mtime_ns == written  # read, not rewritten


@pytest.mark.parametrize("damage", ["corrupt", "stale"])
def test_corrupt_or_stale_index_is_ignored(built: Built, damage: str) -> None:
    index = built.archive.with_name(built.archive.name + ".index")
    with serving(built.archive) as (_, port):
        assert _get(port, _sample(built)[0])[0] == 200
    if damage == "corrupt":  # every record points 512 bytes off: a reader trusting it would serve the wrong bytes
        data = bytearray(index.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)
        index.write_bytes(data)
    else:  # an index of another archive at the same name: the part's size/mtime/inode differ
        other = built.tmp / "other.tar"
        other.write_bytes(built.archive.read_bytes())
        os.replace(other, built.archive)
    before = index.read_bytes()
    with serving(built.archive) as (_, port):
        for path in _sample(built):
            assert _get(port, path) == (200, built.files[path])
    assert index.read_bytes() != before  # rebuilt


def test_a_tampered_member_is_refused_with_a_current_index(built: Built) -> None:
    """The index is only a map: bytes changed in place (mtime put back, so the index still looks
    current) fail their digest check before anything is sent."""
    path = _sample(built)[0]
    digest = "sha256:" + hashlib.sha256(built.files[path]).hexdigest()
    with serving(built.archive) as (_, port):
        assert _get(port, path)[0] == 200
    with ArchiveReader(built.archive) as r:
        offset = next(b.offset for b in r.blobs() if b.digest == digest)
    assert offset is not None
    st = built.archive.stat()
    try:
        with open(built.archive, "r+b") as f:
            f.seek(offset + 10)
            byte = f.read(1)
            f.seek(offset + 10)
            f.write(bytes([byte[0] ^ 0xFF]))
        os.utime(built.archive, ns=(st.st_atime_ns, st.st_mtime_ns))
        with serving(built.archive) as (_, port):
            status, body = _get(port, path)
            assert status == 500 and body != built.files[path]
            other = next(p for p in _sample(built) if p != path)
            assert _get(port, other) == (200, built.files[other])
    finally:
        with open(built.archive, "r+b") as f:
            f.seek(offset + 10)
            f.write(byte)
        os.utime(built.archive, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_serve_archive_lists_directories_and_names_its_lock(built: Built) -> None:
    """The files tree built in one pass (issue 16): a directory of 500 files lists each of them
    with its size; /metrics names the served lock by the sha256 of the archive's lock bytes."""
    from prometheus_client.parser import text_string_to_metric_families

    some = _sample(built, 1)[0]
    folder = some.rpartition("/")[0] + "/"
    with serving(built.archive) as (_, port):
        status, page = _get(port, folder)
        assert status == 200
        listed = dict(re.findall(rb'<a href="([^"/]+)">[^<]+</a> +\S+ \S+ +(\d+)\r\n', page))
        mine = {p.rpartition("/")[2]: len(d) for p, d in built.files.items() if p.startswith(folder)}
        assert len(mine) == N // 4
        assert {k.decode(): int(v) for k, v in listed.items()} == mine
        metrics = _get(port, "/metrics")[1].decode()
    locks = [
        s.labels["lock"]
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "gapcache_served_set_info"
    ]
    with ArchiveReader(built.archive, parse=False) as r:
        assert locks == [hashlib.sha256(r.head.lock_bytes).hexdigest() + ".json"]

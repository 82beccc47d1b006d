"""HTTP caching per path (issue 19, item 4): content-addressed and versioned paths are ``immutable``;
every path whose bytes a new load may change carries an ETag, ``Cache-Control: no-cache`` and
answers a matching ``If-None-Match`` with 304 — also once its answer is kept by the listener's
fast path (gapcache.wire), which must not answer conditional requests from memory.

One small lock with every kind, served in-process by the real listeners (GuardedServer, the
FastRequestHandler) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from gapcache.blobs import BlobIndex, BlobLoc, MissLog
from gapcache.kinds import KINDS
from gapcache.lock import Artifact, Item
from gapcache.serve import ConnectionGuard, GuardedServer, Listener

IMMUTABLE = "public, max-age=31536000, immutable"
PACK = "a" * 40
REPOMD_HASH = "b" * 64


def _art(blobs: dict[str, bytes], path: str, data: bytes, media_type: str = "application/octet-stream") -> Artifact:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return Artifact(path=path, source="generated", digest=digest, size=len(data), media_type=media_type)


def _items(blobs: dict[str, bytes]) -> list[Item]:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}).encode()
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    layer = _art(blobs, "images/docker.io/library/app/blobs/layer", b"layer bytes")
    tgz = _art(blobs, "charts/demo-1.0.0.tgz", b"chart archive", "application/gzip")
    entry = {"name": "demo", "version": "1.0.0", "apiVersion": "v2", "urls": ["charts/demo-1.0.0.tgz"]}
    return [
        Item(kind="file", name="f", request={}, artifacts=[
            _art(blobs, "files/example.org/dl/stable.txt", b"v1.2.3\n", "text/plain")]),
        Item(kind="rpm", name="el9", request={}, resolved={"id": "el9", "keys": []}, artifacts=[
            _art(blobs, "yum/el9/repodata/repomd.xml", b"<repomd/>", "application/xml"),
            _art(blobs, f"yum/el9/repodata/{REPOMD_HASH}-primary.xml.gz", b"primary"),
            _art(blobs, "yum/el9/Packages/a-1.0-1.el9.noarch.rpm", b"rpm bytes")]),
        Item(kind="apt", name="deb", request={"url": "http://deb.example/debian"},
             resolved={"id": "deb", "suites": ["stable"], "components": ["main"], "architectures": ["amd64"],
                       "mode": "packages"},
             artifacts=[
            _art(blobs, "apt/deb/dists/stable/InRelease", b"signed release"),
            _art(blobs, "apt/deb/dists/stable/main/binary-amd64/Packages.gz", b"packages index"),
            _art(blobs, "apt/deb/pool/main/h/hello/hello_2.10-3_amd64.deb", b"deb bytes")]),
        Item(kind="python", name="demo", request={},
             resolved={"project": "demo", "files": {"demo-1.0-py3-none-any.whl": {}}},
             artifacts=[_art(blobs, "pypi/demo/demo-1.0-py3-none-any.whl", b"wheel bytes")]),
        Item(kind="chart", name="demo", request={}, resolved={"name": "demo", "version": "1.0.0", "entry": entry},
             artifacts=[tgz]),
        Item(kind="image", name="app", request={},
             resolved={"name": "docker.io/library/app", "tag": "1", "digest": mdigest},
             artifacts=[_art(blobs, f"images/docker.io/library/app/manifests/{mdigest}", manifest,
                             "application/vnd.oci.image.manifest.v1+json"), layer]),
        Item(kind="git", name="repo", request={},
             resolved={"repo": "example.org/repo.git", "refs": {"refs/heads/main": "c" * 40},
                       "head": "ref: refs/heads/main", "pack": PACK},
             artifacts=[_art(blobs, f"git/example.org/repo.git/objects/pack/pack-{PACK}.pack", b"PACK bytes")]),
        Item(kind="galaxy", name="ns.coll", request={},
             resolved={"type": "collection", "namespace": "ns", "name": "coll", "version": "1.0.0"},
             artifacts=[_art(blobs, "galaxy/ns-coll-1.0.0.tar.gz", b"collection bytes")]),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    tmp = tmp_path_factory.mktemp("caching")
    data: dict[str, bytes] = {}
    items = _items(data)
    locs = {}
    for digest, body in data.items():
        path = tmp / digest.replace(":", "_")
        path.write_bytes(body)
        locs[digest] = BlobLoc(digest, path, 0, len(body))
    blobs = BlobIndex(locs, 0)
    misses = MissLog(tmp / "misses.jsonl")
    listeners: dict[str, Listener] = {}
    for kind in KINDS.values():
        listener = listeners.setdefault(kind.listener, Listener(kind.listener, [], misses))
        listener.handlers.append(kind.handler([i for i in items if i.kind == kind.name], blobs, None))
    loop = asyncio.new_event_loop()
    bound: dict[str, int] = {}
    runners: list[web.ServerRunner] = []

    async def start() -> None:
        guard = ConnectionGuard(60, 1000)
        for name, listener in listeners.items():
            runner = web.ServerRunner(GuardedServer(listener, guard), handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            bound[name] = runner.addresses[0][1]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield bound

    async def stop() -> None:
        for r in runners:
            await r.cleanup()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    misses.close()


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# (listener, path): content-addressed or versioned — cached for a year
IMMUTABLE_PATHS = [
    ("repos", f"/el9/repodata/{REPOMD_HASH}-primary.xml.gz"),
    ("repos", "/el9/Packages/a-1.0-1.el9.noarch.rpm"),
    ("repos", "/deb/pool/main/h/hello/hello_2.10-3_amd64.deb"),
    ("pypi", "/packages/demo/demo-1.0-py3-none-any.whl"),
    ("charts", "/charts/demo-1.0.0.tgz"),
    ("registry", "/v2/docker.io/library/app/blobs/{layer}"),
    ("registry", "/v2/docker.io/library/app/manifests/{manifest}"),
    ("files", f"/git/example.org/repo.git/objects/pack/pack-{PACK}.pack"),
    ("files", "/galaxy/download/ns-coll-1.0.0.tar.gz"),
]
# what a new load may change — revalidated
MUTABLE_PATHS = [
    ("files", "/example.org/dl/stable.txt"),
    ("files", "/example.org/dl/"),
    ("files", "/"),
    ("repos", "/el9/repodata/repomd.xml"),
    ("repos", "/el9/repodata/"),
    ("repos", "/el9.repo"),
    ("repos", "/deb/dists/stable/InRelease"),
    ("repos", "/deb/dists/stable/main/binary-amd64/Packages.gz"),
    ("repos", "/deb.sources"),
    ("pypi", "/simple/"),
    ("pypi", "/simple/demo/"),
    ("charts", "/index.yaml"),
    ("charts", "/api/charts"),
    ("registry", "/v2/docker.io/library/app/manifests/1"),
    ("registry", "/v2/docker.io/library/app/tags/list"),
    ("registry", "/v2/_catalog"),
    ("files", "/git/example.org/repo.git/info/refs"),
    ("files", "/git/example.org/repo.git/HEAD"),
    ("files", "/galaxy/api/v3/collections/ns/coll/versions/"),
    ("files", "/galaxy/api/v3/collections/ns/coll/versions/1.0.0/"),
]


def _path(path: str) -> str:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}).encode()
    layer = "sha256:" + hashlib.sha256(b"layer bytes").hexdigest()
    return path.format(layer=layer, manifest="sha256:" + hashlib.sha256(manifest).hexdigest())


@pytest.mark.parametrize(("listener", "path"), IMMUTABLE_PATHS)
def test_versioned_paths_are_immutable(ports: dict[str, int], listener: str, path: str) -> None:
    status, hdrs, _ = get(ports[listener], _path(path))
    assert status == 200 and hdrs["cache-control"] == IMMUTABLE and hdrs["etag"].startswith('"sha256:')


@pytest.mark.parametrize(("listener", "path"), MUTABLE_PATHS)
def test_paths_a_load_changes_are_revalidated(ports: dict[str, int], listener: str, path: str) -> None:
    port = ports[listener]
    for _ in range(3):  # the first answer, then (where kept) the fast path's: same headers
        status, hdrs, body = get(port, path)
        assert status == 200, (path, status)
        assert hdrs["cache-control"] == "no-cache" and "immutable" not in hdrs["cache-control"]
        etag = hdrs["etag"]
        assert etag.startswith('"') and etag.endswith('"')
    status, hdrs, again = get(port, path, {"If-None-Match": etag})
    assert status == 304 and again == b"" and hdrs["etag"] == etag
    status, _, _ = get(port, path, {"If-None-Match": f'"other", W/{etag}'})
    assert status == 304
    status, hdrs, fresh = get(port, path, {"If-None-Match": '"something-else"'})
    assert status == 200 and fresh == body and hdrs["etag"] == etag


def test_conditional_on_an_immutable_path(ports: dict[str, int]) -> None:
    path = "/packages/demo/demo-1.0-py3-none-any.whl"
    _, hdrs, _ = get(ports["pypi"], path)
    status, _, body = get(ports["pypi"], path, {"If-None-Match": hdrs["etag"]})
    assert status == 304 and body == b""


@pytest.mark.parametrize("path", ["/deb/dists/stable/InRelease", "/example.org/dl/stable.txt"])
def test_revalidation_by_date_only(ports: dict[str, int], path: str) -> None:
    """apt (InRelease) and `wget -N` revalidate by If-Modified-Since alone."""
    listener = "repos" if path.startswith("/deb") else "files"
    status, hdrs, body = get(ports[listener], path)
    assert status == 200 and body and "last-modified" in hdrs
    status, _, body = get(ports[listener], path, {"If-Modified-Since": hdrs["last-modified"]})
    assert status == 304 and body == b""
    status, _, body = get(ports[listener], path, {"If-Modified-Since": "yesterday"})  # unparsable: ignored
    assert status == 200 and body


def test_a_date_before_the_load_is_modified() -> None:
    from gapcache.blobs import _not_modified_since

    loaded = 1_800_000_000  # 2027-01-15
    assert _not_modified_since("Fri, 15 Jan 2027 08:00:00 GMT", loaded)
    assert not _not_modified_since("Thu, 01 Jan 2026 00:00:00 GMT", loaded)
    assert not _not_modified_since(None, loaded)

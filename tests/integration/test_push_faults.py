"""`gapcache push` under faults a real registry does not produce on demand (issue 10, item 4): a
401 on the upload PUT itself (the body must be sent again, whole), and a corrupt blob at rest
(never sent). The target is a small aiohttp registry that checks what it receives."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from gapcache.auth import RegistryAuth
from gapcache.blobs import BlobIndex, BlobLoc
from gapcache.lock import Artifact, Item, Lock
from gapcache.push import push


@dataclass
class Target:
    """Pull-free upload side of the distribution API; the first upload PUT answers 401."""

    received: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    put_attempts: int = 0
    refuse_first_put: bool = True

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if request.headers.get("Authorization") != "Basic dTpw":  # u:p
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="t"'})
        if request.method == "HEAD" and "/blobs/" in path:
            return web.Response(status=404)
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            return web.Response(status=202, headers={"Location": path + "u1"})
        if request.method == "PUT" and "/blobs/uploads/" in path:
            self.put_attempts += 1
            body = await request.content.read()  # streamed: no client_max_size cap
            if self.refuse_first_put and self.put_attempts == 1:
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="t"'})
            digest = request.query["digest"]
            if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
                return web.Response(status=400, text="DIGEST_INVALID")
            self.received[digest] = body
            return web.Response(status=201)
        if request.method == "PUT" and "/manifests/" in path:
            self.manifests[path] = await request.read()
            return web.Response(status=201)
        return web.Response(status=404)


async def _serve(target: Target) -> AsyncIterator[str]:
    server = web.Server(target.handle)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _image(tmp: Path, layer: bytes) -> tuple[Lock, BlobIndex, str]:
    config = b'{"architecture":"amd64","os":"linux"}'
    digests = {d: "sha256:" + hashlib.sha256(d).hexdigest() for d in (config, layer)}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digests[config],
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[layer], "size": len(layer)}
            ],
        }
    ).encode()
    md = "sha256:" + hashlib.sha256(manifest).hexdigest()
    locs = {}
    arts = []
    for data, kind, mt in ((manifest, "manifests", "application/vnd.oci.image.manifest.v1+json"),
                           (config, "blobs", "application/vnd.oci.image.config.v1+json"),
                           (layer, "blobs", "application/vnd.oci.image.layer.v1.tar")):  # fmt: skip
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        f = tmp / d[7:]
        f.write_bytes(data)
        locs[d] = BlobLoc(d, f, 0, len(data))
        arts.append(Artifact(path=f"images/up.example/app/{kind}/{d}", source="x", digest=d, size=len(data),
                             media_type=mt))  # fmt: skip
    item = Item(kind="image", name="up.example/app:1", request={}, artifacts=arts,
                resolved={"name": "up.example/app", "digest": md, "tag": "1"})  # fmt: skip
    return Lock.build([item]), BlobIndex(locs, 0.0), digests[layer]


def _push(lock: Lock, blobs: BlobIndex, target: Target) -> tuple[list[str], Target]:
    async def run() -> list[str]:
        gen = _serve(target)
        host = await gen.__anext__()
        try:
            auth = RegistryAuth(credentials={host: ("u", "p")})
            result = await push(lock, blobs, host, insecure=True, auth=auth)
        finally:
            await gen.aclose()  # type: ignore[attr-defined]
        return result.failures

    return asyncio.run(run()), target


def test_a_401_on_the_upload_put_sends_the_whole_body_again(tmp_path: Path) -> None:
    layer = bytes(range(256)) * 8192  # 2 MiB: several chunks of the streamed body
    lock, blobs, layer_digest = _image(tmp_path, layer)
    failures, target = _push(lock, blobs, Target())
    assert failures == []
    assert target.received[layer_digest] == layer  # the retried PUT carried every byte
    assert any(p.endswith("/manifests/1") for p in target.manifests)


def test_a_corrupt_blob_is_never_pushed(tmp_path: Path) -> None:
    layer = b"layer bytes\n" * 1000
    lock, blobs, layer_digest = _image(tmp_path, layer)
    (tmp_path / layer_digest[7:]).write_bytes(b"LAYER bytes\n" + layer[12:])  # same size, other bytes
    failures, target = _push(lock, blobs, Target(refuse_first_put=False))
    assert len(failures) == 1 and layer_digest in failures[0] and "corrupt" in failures[0]
    assert layer_digest not in target.received
    assert not target.manifests


@pytest.fixture(autouse=True)
def _no_docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))

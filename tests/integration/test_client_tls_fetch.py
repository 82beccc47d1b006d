"""The downloader's client TLS (gapcache.clienttls) on every request path against a real TLS server on
127.0.0.1 that requires a client certificate by a test CA (aiohttp, ``CERT_REQUIRED``): metadata GET,
HEAD probe, and a blob fetch whose first response is cut and resumed with ``Range`` — each request
presents the certificate registered for its URL prefix. Plus the prefix table, the manifest checks of
the TLS files, and the registration a ``build --locked`` needs."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from clientpki import Pki, handshake_refusing_server, make_pki
from gapcache.clienttls import ClientTls, TlsClient
from gapcache.errors import FetchError, ManifestError, UsageError
from gapcache.fetch import Downloader, FetchJob
from gapcache.kinds.rpm import register_locked_tls, register_tls
from gapcache.lock import Artifact, Item
from gapcache.manifest import parse_manifest
from gapcache.manifest.yum import YumRepo
from gapcache.store import Store

BLOB = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Seen:
    requests: list[tuple[str, str, str, str]] = field(default_factory=list)  # method, path, Range, client CN
    cut: bool = True  # the first blob response stops halfway


@dataclass
class Server:
    base: str
    seen: Seen


def _cn(request: web.Request) -> str:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    subject = dict(x[0] for x in (cert or {}).get("subject", ()))
    return str(subject.get("commonName", ""))


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[Server]:
    seen = Seen()

    async def handle(request: web.Request) -> web.StreamResponse:
        rng = request.headers.get("Range", "")
        seen.requests.append((request.method, request.path, rng, _cn(request)))
        if request.path == "/repo/meta.xml":
            return web.Response(body=b"<meta/>")
        if request.path != "/repo/blob.bin":
            return web.Response(status=404)
        start = int(rng[6:].rstrip("-")) if rng.startswith("bytes=") else 0
        resp = web.StreamResponse(status=206 if start else 200, headers={"ETag": '"blob-1"'})
        resp.content_length = len(BLOB) - start
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        body = BLOB[start:]
        if seen.cut and not start:
            seen.cut = False
            await resp.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()  # the connection drops mid-body
            return resp
        await resp.write(body)
        return resp

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"https://127.0.0.1:{port}", seen)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_every_request_path_presents_the_registered_certificate(tmp_path: Path, server: Server, pki: Pki) -> None:
    tls = ClientTls()
    tls.add(server.base + "/repo/", TlsClient("yum repo r", str(pki.cert), str(pki.key), str(pki.ca)))
    digest = "sha256:" + hashlib.sha256(BLOB).hexdigest()

    async def run() -> tuple[bytes, int | None, int]:
        async with Downloader(Store(tmp_path / "store"), client_tls=tls, backoff=0.01) as dl:
            meta = await dl.get_bytes(server.base + "/repo/meta.xml")
            size = await dl.head_size(server.base + "/repo/blob.bin")
            res = await dl.fetch(FetchJob(server.base + "/repo/blob.bin", digest, len(BLOB)))
            return meta, size, res.size

    assert asyncio.run(run()) == (b"<meta/>", len(BLOB), len(BLOB))
    assert (tmp_path / "store/blobs/sha256" / digest[7:]).read_bytes() == BLOB
    methods = [(m, p, bool(r)) for m, p, r, _ in server.seen.requests]
    assert methods == [("GET", "/repo/meta.xml", False), ("HEAD", "/repo/blob.bin", False),
                       ("GET", "/repo/blob.bin", False), ("GET", "/repo/blob.bin", True)]  # fmt: skip
    assert {cn for *_, cn in server.seen.requests} == {"entitlement"}

    async def outside() -> bytes:  # a URL under no registered prefix gets no certificate (and no CA)
        async with Downloader(Store(tmp_path / "store"), client_tls=tls, retries=0) as dl:
            return await dl.get_bytes(server.base + "/other/meta.xml")

    with pytest.raises(FetchError, match="certificate is not trusted"):
        asyncio.run(outside())


@pytest.mark.slow
def test_a_refused_handshake_is_said_at_once(tmp_path: Path, pki: Pki) -> None:
    """OpenSSL's s_server requiring a certificate by the test CA refuses in the handshake itself (an
    asyncio server drops the connection before its alert leaves, so it cannot show this)."""
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    with handshake_refusing_server(pki, tmp_path) as port:
        base = f"https://127.0.0.1:{port}"
        tls = ClientTls()
        tls.add(base + "/", TlsClient("yum repo r", str(pki.stranger_cert), str(pki.stranger_key), str(pki.ca)))
        tls.add(base + "/anon/", TlsClient("yum repo anon", ca=str(pki.ca)))

        async def get(path: str) -> bytes:
            async with Downloader(Store(tmp_path / "store"), client_tls=tls, sleep=sleep) as dl:
                return await dl.get_bytes(base + path)

        with pytest.raises(FetchError, match="refused the client certificate of yum repo r"):
            asyncio.run(get("/repo/meta.xml"))
        with pytest.raises(FetchError, match="refused the TLS handshake without a client certificate"):
            asyncio.run(get("/anon/meta.xml"))  # the longer prefix: a CA, no certificate
    assert slept == []  # not retried as if the connection had dropped


def test_prefixes_contexts_and_conflicts(pki: Pki) -> None:
    tls = ClientTls()
    a = TlsClient("yum repo a", str(pki.cert), str(pki.key), str(pki.ca))
    b = TlsClient("yum repo b", str(pki.cert), str(pki.key), str(pki.ca))  # same files: same context
    tls.add("https://CDN.example/content/a/", a)
    tls.add("https://cdn.example:443/content/b/", b)
    assert tls.client("https://cdn.example/content/a/repodata/repomd.xml") is a
    assert tls.client("https://cdn.example/content/b/x.rpm") is b
    assert tls.context("https://cdn.example/content/a/x") is tls.context("https://cdn.example/content/b/x")
    assert tls.context("https://cdn.example/content/c/x") is True
    assert tls.client("http://cdn.example/content/a/x") is None  # another scheme (and port)
    with pytest.raises(UsageError, match=r"yum repo c and yum repo a name https://cdn.example/content/a/"):
        tls.add("https://cdn.example/content/a/", TlsClient("yum repo c", str(pki.stranger_cert),
                                                            str(pki.stranger_key)))  # fmt: skip
    tls.add("https://cdn.example/content/a/", TlsClient("yum repo c", ca=str(pki.ca)), exclusive=False)
    assert tls.client("https://cdn.example/content/a/x") is a  # the first one stays
    with pytest.raises(UsageError, match=r"yum repo d: sslclientkey .*other-key.pem is not the key"):
        tls.add("https://x/", TlsClient("yum repo d", str(pki.cert), str(pki.other_key)))


def test_manifest_checks_the_tls_files(tmp_path: Path, pki: Pki) -> None:
    def parse(opts: str) -> YumRepo:
        text = f"format: 1\nyum:\n  - id: rhel\n    baseurl: https://cdn.example/rhel/\n{opts}"
        return parse_manifest(text, "m.yaml", tmp_path).yum[0]

    repo = parse(f"    sslclientcert: {pki.cert}\n    sslclientkey: {pki.key}\n    sslcacert: {pki.ca}\n")
    assert repo.sslclientcert == str(pki.cert) and repo.sslverify
    for opts, message in [
        (f"    sslclientcert: {pki.cert}\n    sslclientkey: {pki.other_key}\n", "is not the key of sslclientcert"),
        (f"    sslclientcert: {pki.key}\n    sslclientkey: {pki.key}\n", "no PEM certificate in it"),
        (f"    sslclientcert: {pki.cert}\n", "sslclientcert .*entitlement.pem: no PEM private key in it"),
        (f"    sslclientcert: {tmp_path}\n", "is a directory"),
        (f"    sslclientkey: {pki.key}\n", "sslclientkey needs sslclientcert"),
        (f"    sslcacert: {pki.key}\n", "sslcacert .*: not a PEM CA certificate"),
    ]:
        with pytest.raises(ManifestError, match=r"m.yaml:3: yum\[0\]: rhel: .*" + message):
            parse(opts)
    # relative paths: from the folder given (the manifest's), checked there
    (tmp_path / "ent").mkdir()
    (tmp_path / "ent/cert.pem").write_bytes(pki.cert.read_bytes())
    (tmp_path / "ent/key.pem").write_bytes(pki.key.read_bytes())
    rel = parse("    sslclientcert: ent/cert.pem\n    sslclientkey: ent/key.pem\n")
    assert rel.sslclientcert == str(tmp_path / "ent/cert.pem")
    text = "format: 1\nyum:\n  - id: rhel\n    baseurl: https://cdn.example/rhel/\n    sslclientcert: ent/cert.pem\n"
    with pytest.raises(
        ManifestError, match=r"m.yaml:3: yum\[0\]: rhel: sslclientcert .*/elsewhere/ent/cert.pem: no such"
    ):
        parse_manifest(text, "m.yaml", tmp_path / "elsewhere")


def test_registration_for_a_build_and_for_build_locked(pki: Pki) -> None:
    opts = {"sslclientcert": str(pki.cert), "sslclientkey": str(pki.key), "sslcacert": str(pki.ca)}
    repo = YumRepo(id="rhel", baseurl="https://cdn.example/rhel9/os", gpgkey=["https://cdn.example/keys/k.asc",
                   "https://keys.example/k.asc"], **opts)  # fmt: skip
    plain = YumRepo(id="epel", baseurl="https://mirror.example/epel/")
    tls = ClientTls()
    register_tls([repo, plain], tls)
    assert tls.client("https://cdn.example/rhel9/os/Packages/a.rpm") is not None
    assert tls.client("https://cdn.example/rhel9/osx/a.rpm") is None  # a prefix of whole path segments
    assert tls.client("https://cdn.example/keys/k.asc") is not None  # a gpgkey on the repo's host
    assert tls.client("https://keys.example/k.asc") is None  # ... but not on another host
    assert tls.client("https://mirror.example/epel/repodata/repomd.xml") is None
    # build --locked: the lock's request carries the settings; each artifact URL gets them
    art = Artifact(path="yum/rhel/Packages/a.rpm", source="https://cdn.example/rhel9/os/Packages/a.rpm")
    item = Item(kind="rpm", name="rhel", request=repo.model_dump(exclude_none=True), resolved={}, artifacts=[art])
    locked = ClientTls()
    register_locked_tls([item], locked)
    found = locked.client(art.source)
    assert found is not None and found.cert == str(pki.cert) and found.owner == "yum repo rhel"

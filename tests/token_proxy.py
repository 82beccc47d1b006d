"""A bearer-token front for a docker-registry, as Docker Hub and most registries behave.

``python tests/token_proxy.py BACKEND_PORT PORTFILE``: ``GET /token?service=&scope=`` issues
short-lived tokens (anonymous, like Docker Hub's pull tokens); every ``/v2/…`` request without a
valid token for its repository gets 401 with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``;
valid requests are passed to the registry behind it. ``GET /_stats`` counts issued tokens.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

TTL = 2.0  # seconds: short, so a long build must refresh its tokens
REPO = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags)/")


def make_app(backend: str) -> web.Application:
    tokens: dict[str, tuple[str, float]] = {}
    stats = {"issued": 0, "refused": 0}

    async def token(request: web.Request) -> web.Response:
        scope = request.query.get("scope", "")
        value = secrets.token_hex(16)
        tokens[value] = (scope, time.monotonic() + TTL)
        stats["issued"] += 1
        return web.json_response({"token": value, "expires_in": int(TTL)})

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def proxy(request: web.Request) -> web.StreamResponse:
        m = REPO.match(request.path)
        scope = f"repository:{m.group(1)}:pull" if m else ""
        auth = request.headers.get("Authorization", "")
        held = tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if held is None or held[1] < time.monotonic() or (scope and held[0] != scope):
            stats["refused"] += 1
            realm = f"http://{request.host}/token"
            challenge = f'Bearer realm="{realm}",service="test-registry"' + (f',scope="{scope}"' if scope else "")
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401, headers={"WWW-Authenticate": challenge},
            )  # fmt: skip
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("accept", "range")}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as s,
            s.request(request.method, f"{backend}{request.path_qs}", headers=headers, allow_redirects=True) as up,
        ):
            resp = web.StreamResponse(status=up.status)
            for k in ("Content-Type", "Docker-Content-Digest", "Content-Range", "Docker-Distribution-API-Version"):
                if k in up.headers:
                    resp.headers[k] = up.headers[k]
            if up.content_length is not None:
                resp.content_length = up.content_length
            await resp.prepare(request)
            if request.method != "HEAD":
                async for chunk in up.content.iter_chunked(65536):
                    await resp.write(chunk)
            await resp.write_eof()
            return resp

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_get("/_stats", get_stats)
    app.router.add_route("*", "/{path:.*}", proxy)
    return app


async def main(backend_port: int, portfile: Path) -> None:
    runner = web.AppRunner(make_app(f"http://127.0.0.1:{backend_port}"), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    tmp = portfile.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.rename(portfile)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))

"""A real HTTP upstream on 127.0.0.1 that the tests control and that can fail on demand.

Run as ``python tests/upstream.py DIR PORTFILE``: serves the files under DIR (with Range, ETag,
Last-Modified) and writes its port to PORTFILE. Faults are set per path with
``POST /_control/<path>`` (JSON body, see ``Rule``); ``GET /_stats`` returns, per path, the
requests seen and the body bytes actually written, so tests can prove what was (not) re-fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


@dataclass
class Rule:
    fail: list[int] = field(default_factory=list)  # statuses to answer first, one per request
    retry_after: str | None = None  # sent with those failures
    drop_after: list[int] = field(default_factory=list)  # cut the connection after N body bytes, once each
    rate: int | None = None  # bytes per second (slow upstream)
    wrong: bool = False  # serve different bytes than the file
    ignore_range: bool = False
    chunked: bool = False  # no Content-Length (the client cannot know the size in advance)


@dataclass
class Stats:
    requests: int = 0
    bytes: int = 0
    ranges: list[str] = field(default_factory=list)


class Upstream:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.rules: dict[str, Rule] = {}
        self.stats: dict[str, Stats] = {}

    async def control(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        if request.method == "DELETE":
            self.rules.clear()
            self.stats.clear()
            return web.json_response({})
        self.rules[path] = Rule(**(await request.json()))
        return web.json_response({})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response({k: vars(v) for k, v in self.stats.items()})

    async def serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        st = self.stats.setdefault(path, Stats())
        st.requests += 1
        st.ranges.append(request.headers.get("Range", ""))
        rule = self.rules.get(path, Rule())
        if rule.fail:
            status = rule.fail.pop(0)
            headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
            return web.Response(status=status, text=f"injected {status}\n", headers=headers)
        f = (self.root / path.lstrip("/")).resolve()
        if not f.is_file() or self.root.resolve() not in f.parents:
            return web.Response(status=404, text="not found\n")
        data = f.read_bytes()
        if rule.wrong:
            data = b"X" + data[1:]
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        start, status = 0, 200
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        rng = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if if_range and if_range != etag:
            rng = None  # RFC 9110: the resource changed, so send all of it
        if rng and not rule.ignore_range and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if request.method == "HEAD":
            return web.Response(status=status, headers={**headers, "Content-Length": str(len(body))})
        resp = web.StreamResponse(status=status, headers=headers)
        if rule.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(body)
        await resp.prepare(request)
        cut = rule.drop_after.pop(0) if rule.drop_after else None
        step = 16 * 1024
        pos = 0
        while pos < len(body):
            chunk = body[pos : pos + step]
            if cut is not None and pos + len(chunk) > cut:
                chunk = chunk[: cut - pos]
                await resp.write(chunk)
                st.bytes += len(chunk)
                await asyncio.sleep(0.05)
                assert request.transport is not None
                request.transport.abort()  # the connection drops mid-body
                return resp
            await resp.write(chunk)
            st.bytes += len(chunk)
            pos += len(chunk)
            if rule.rate:
                await asyncio.sleep(len(chunk) / rule.rate)
        await resp.write_eof()
        return resp


def make_app(root: Path) -> web.Application:
    up = Upstream(root)
    app = web.Application()
    app.router.add_route("*", "/_control/{path:.*}", up.control)
    app.router.add_get("/_stats", up.get_stats)
    app.router.add_get("/{path:.*}", up.serve)
    return app


async def main(root: Path, portfile: Path) -> None:
    runner = web.AppRunner(make_app(root), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    port = sock.getsockname()[1]
    tmp = portfile.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.rename(portfile)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))

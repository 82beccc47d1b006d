"""A smart-HTTP git server on 127.0.0.1 for the tests: aiohttp in front of ``git http-backend`` (CGI).

Run as ``python tests/gitserver.py DIR PORTFILE``: serves the bare repositories under DIR at
``/<path>.git`` (clone, fetch; no push) and writes its port to PORTFILE. Requests are counted per
path at ``GET /_stats`` so tests can tell the mirror, not this server, answered.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from aiohttp import web

BACKEND = "/usr/lib/git-core/git-http-backend"


class GitServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: dict[str, int] = {}

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def cgi(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] = self.requests.get(request.path, 0) + 1
        if request.query.get("service") == "git-receive-pack" or request.path.endswith("/git-receive-pack"):
            return web.Response(status=403, text="read-only\n")
        body = await request.read()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for name, value in request.headers.items():
            env["HTTP_" + name.upper().replace("-", "_")] = value
        if "Git-Protocol" in request.headers:
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        proc = await asyncio.create_subprocess_exec(
            BACKEND, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)


def main() -> None:
    root, portfile = Path(sys.argv[1]), Path(sys.argv[2])
    server = GitServer(root)
    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/_stats", server.stats)
    app.router.add_route("*", "/{path:.*}", server.cgi)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    tmp = portfile.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.rename(portfile)
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()

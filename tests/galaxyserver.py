"""A Galaxy server on 127.0.0.1 for the tests, speaking the API subset ansible-galaxy uses.

Run as ``python tests/galaxyserver.py DIR PORTFILE``. DIR holds collection artifacts
(``collections/<ns>-<name>-<version>.tar.gz``, as ``ansible-galaxy collection build`` writes them)
and role tarballs (``roles/<owner>/<name>/<version>.tar.gz``). Collections are described from
their own ``MANIFEST.json``; the v3 versions list is paginated (one version per page) the way
Galaxy NG paginates, so clients must follow ``links.next``.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import tarfile
from pathlib import Path
from typing import Any

from aiohttp import web


def load(root: Path) -> tuple[dict[tuple[str, str], dict[str, dict[str, Any]]], dict[tuple[str, str], list[str]]]:
    cols: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for art in sorted((root / "collections").glob("*.tar.gz")):
        with tarfile.open(art) as tf:
            f = tf.extractfile("MANIFEST.json")
            assert f is not None
            info = json.load(f)["collection_info"]
        data = art.read_bytes()
        cols.setdefault((info["namespace"], info["name"]), {})[info["version"]] = {
            "deps": info.get("dependencies") or {},
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "filename": art.name,
        }
    roles: dict[tuple[str, str], list[str]] = {}
    for tb in sorted((root / "roles").glob("*/*/*.tar.gz")):
        roles.setdefault((tb.parent.parent.name, tb.parent.name), []).append(tb.name.removesuffix(".tar.gz"))
    return cols, roles


def make_app(root: Path) -> web.Application:
    cols, roles = load(root)
    role_ids = {key: n for n, key in enumerate(sorted(roles), start=1)}
    hits: dict[str, int] = {}

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        hits[request.path] = hits.get(request.path, 0) + 1
        resp: web.StreamResponse = await handler(request)
        return resp

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(hits)

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"available_versions": {"v1": "v1/", "v3": "v3/"}})

    def coll(request: web.Request) -> tuple[str, str, dict[str, dict[str, Any]]]:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if (ns, name) not in cols:
            raise web.HTTPNotFound(text=json.dumps({"errors": [{"code": "not_found"}]}))
        return ns, name, cols[(ns, name)]

    async def versions(request: web.Request) -> web.Response:
        ns, name, vs = coll(request)
        offset = int(request.query.get("offset", "0"))
        ordered = sorted(vs, reverse=True)
        page = ordered[offset : offset + 1]
        base = f"/api/v3/collections/{ns}/{name}/versions/"
        nxt = f"{base}?limit=1&offset={offset + 1}" if offset + 1 < len(ordered) else None
        data = [{"version": v, "href": f"{base}{v}/"} for v in page]
        return web.json_response({"meta": {"count": len(ordered)}, "links": {"next": nxt}, "data": data})

    async def version(request: web.Request) -> web.Response:
        ns, name, vs = coll(request)
        v = request.match_info["version"]
        if v not in vs:
            raise web.HTTPNotFound()
        info = vs[v]
        return web.json_response({
            "namespace": {"name": ns}, "collection": {"name": name}, "version": v,
            "href": f"/api/v3/collections/{ns}/{name}/versions/{v}/",
            "download_url": f"/download/{info['filename']}",
            "artifact": {"sha256": info["sha256"], "size": info["size"], "filename": info["filename"]},
            "metadata": {"dependencies": info["deps"]},
        })  # fmt: skip

    async def download(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "collections" / request.match_info["file"])

    async def v1_roles(request: web.Request) -> web.Response:
        key = (request.query.get("owner__username", ""), request.query.get("name", ""))
        results = []
        if key in roles:
            results.append({"id": role_ids[key], "name": key[1], "github_user": key[0], "github_repo": key[1]})
        return web.json_response({"count": len(results), "next_link": None, "results": results})

    async def v1_versions(request: web.Request) -> web.Response:
        rid = int(request.match_info["id"])
        key = next(k for k, n in role_ids.items() if n == rid)
        base = f"http://{request.host}/roles/{key[0]}/{key[1]}"
        results = [{"name": v, "download_url": f"{base}/{v}.tar.gz"} for v in roles[key]]
        return web.json_response({"count": len(results), "next_link": None, "results": results})

    async def role_file(request: web.Request) -> web.FileResponse:
        m = request.match_info
        return web.FileResponse(root / "roles" / m["owner"] / m["name"] / m["file"])

    app = web.Application(middlewares=[count])
    app.router.add_get("/_stats", stats)
    app.router.add_get("/api/", api)
    app.router.add_get("/api/v3/collections/{ns}/{name}/versions/", versions)
    app.router.add_get("/api/v3/collections/{ns}/{name}/versions/{version}/", version)
    app.router.add_get("/download/{file}", download)
    app.router.add_get("/api/v1/roles/", v1_roles)
    app.router.add_get("/api/v1/roles/{id}/versions/", v1_versions)
    app.router.add_get("/roles/{owner}/{name}/{file}", role_file)
    return app


def main() -> None:
    root, portfile = Path(sys.argv[1]), Path(sys.argv[2])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    tmp = portfile.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.rename(portfile)
    web.run_app(make_app(root), sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()

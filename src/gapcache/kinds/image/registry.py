"""The registry mirror (listener ``registry``, port 5000): the OCI distribution spec, pull side.

- ``GET /v2/`` with ``Docker-Distribution-API-Version: registry/2.0``;
- ``GET/HEAD /v2/<name>/manifests/<tag|digest>``: the exact stored bytes, the stored media type,
  ``Docker-Content-Digest``;
- ``GET/HEAD /v2/<name>/blobs/<digest>`` with ``Range``;
- ``GET /v2/<name>/tags/list`` and ``GET /v2/_catalog`` with ``n``/``last`` pagination;
- errors as the spec's JSON (NAME_UNKNOWN, MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_INVALID).

Names keep the upstream host (``127.0.0.1_5001/team/app``, ``nvcr.io/nvidia/cuda``). containerd's
``?ns=<host>`` maps a short name back (``/v2/nvidia/cuda/manifests/x?ns=nvcr.io``), and the
prefix-less name (``nvidia/cuda``) is served too when only one upstream has it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from aiohttp import web

from ...blobs import BlobIndex, send_blob
from ...lock import Item
from ...names import DIGEST, REPO_RE, TAG_RE, host_component
from ...wire import Page

_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<what>manifests|blobs|tags)/(?P<ref>[^/]+)$")
MAX_NAME = 512
API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


@dataclass
class Repo:
    tags: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, str] = field(default_factory=dict)  # digest -> media type
    blobs: set[str] = field(default_factory=set)


def error(status: int, code: str, message: str, detail: object = None) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=API_HEADERS)


def short_names(names: list[str]) -> dict[str, str]:
    """Prefix-less aliases (``team/app`` for ``127.0.0.1_5001/team/app``) where unambiguous."""
    seen: dict[str, list[str]] = {}
    for n in names:
        seen.setdefault(n.split("/", 1)[1], []).append(n)
    return {short: full[0] for short, full in seen.items() if len(full) == 1 and short not in names}


class Registry:
    def __init__(self, items: list[Item], blobs: BlobIndex) -> None:
        self.blobs = blobs
        self.repos: dict[str, Repo] = {}
        for item in items:
            name = str(item.resolved["name"])
            repo = self.repos.setdefault(name, Repo())
            if "tag" in item.resolved:
                repo.tags[str(item.resolved["tag"])] = str(item.resolved["digest"])
            for art in item.artifacts:
                assert art.digest is not None
                if "/manifests/" in art.path:
                    repo.manifests[art.digest] = art.media_type
                else:
                    repo.blobs.add(art.digest)
        self.names = sorted(self.repos)
        self.aliases = short_names(self.names)

    def lookup(self, name: str, ns: str | None) -> str | None:
        if ns:
            host = "docker.io" if ns in ("docker.io", "registry-1.docker.io", "index.docker.io") else ns
            full = f"{host_component(host)}/{name}"
            if full in self.repos:
                return full
        if name in self.repos:
            return name
        return self.aliases.get(name)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        path = request.path
        if request.method not in ("GET", "HEAD"):
            return error(405, "UNSUPPORTED", "this mirror is read-only") if path.startswith("/v2/") else None
        if path in ("/v2/", "/v2"):
            return web.json_response({}, headers=API_HEADERS)
        if path == "/v2/_catalog":
            return self._page(request, "repositories", self.names, None)
        m = _PATH.match(path)
        if not m:
            return None if not path.startswith("/v2/") else error(404, "NAME_UNKNOWN", "unknown path")
        raw_name, what, ref = m.group("name"), m.group("what"), m.group("ref")
        if len(raw_name) > MAX_NAME or "%" in request.raw_path.split("?", 1)[0] or not REPO_RE.match(raw_name):
            return error(400, "NAME_INVALID", "invalid repository name")
        name = self.lookup(raw_name, request.query.get("ns"))
        if name is None:
            return error(404, "NAME_UNKNOWN", "repository name not known to registry", {"name": raw_name})
        repo = self.repos[name]
        if what == "tags":
            if ref != "list":
                return error(404, "NAME_UNKNOWN", "unknown path")
            return self._page(request, "tags", sorted(repo.tags), name)
        if what == "manifests":
            by_digest = DIGEST.match(ref) is not None  # by digest: immutable; by tag: a new load may move it
            digest = ref if by_digest else repo.tags.get(ref) if TAG_RE.match(ref) else None
            if digest is None or digest not in repo.manifests:
                return error(404, "MANIFEST_UNKNOWN", "manifest unknown", {"name": raw_name, "reference": ref})
            loc = self.blobs.get(digest)
            if loc is None:
                return error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            mt = repo.manifests[digest]
            return await send_blob(request, self.blobs, loc, mt, registry=True, immutable=by_digest)
        if not DIGEST.match(ref):
            return error(400, "DIGEST_INVALID", "invalid digest", {"digest": ref})
        loc = self.blobs.get(ref) if ref in repo.blobs else None
        if loc is None:
            return error(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": ref})
        return await send_blob(request, self.blobs, loc, "application/octet-stream", registry=True, immutable=True)

    def _page(self, request: web.BaseRequest, key: str, values: list[str], name: str | None) -> web.StreamResponse:
        last = request.query.get("last")
        if last:
            values = [v for v in values if v > last]
        try:
            n = int(request.query.get("n", "0"))
        except ValueError:
            return error(400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
        headers = dict(API_HEADERS)
        if 0 < n < len(values):
            values = values[:n]
            base = "/v2/_catalog" if name is None else f"/v2/{name}/tags/list"
            headers["Link"] = f'<{base}?n={n}&last={values[-1]}>; rel="next"'
        body: dict[str, object] = {key: values}
        if name is not None:
            body = {"name": name, **body}
        page = Page(json.dumps(body).encode(), "application/json; charset=utf-8", headers)
        return page.answer(request, reusable=False)  # a plain Response: rare

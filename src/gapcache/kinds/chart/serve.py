"""The chart mirror (listener ``charts``, port 8002): one Helm chart repository, ChartMuseum's paths.

- ``GET /index.yaml``: every chart in the lock, rendered from the index entries kept in the lock
  (metadata as the upstream published it, the digest of the archive served), each URL pointing at
  the address the client used (its ``Host``) or ``--public-url``; rendered once per base URL;
- ``GET /charts/<name>-<version>.tgz`` (and ``.prov``): the archives, byte-exact, with Range/ETag;
- ChartMuseum's read API: ``GET /api/charts``, ``/api/charts/<name>``,
  ``/api/charts/<name>/<version>`` (``latest`` too), JSON with relative URLs as ChartMuseum
  answers; an unknown chart or version is a 404 ``{"error": …}``;
- ``GET /health``: ``{"healthy": true}``.
Anything else is not this kind's (the listener answers 404 and records the miss).
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from ...blobs import BlobIndex, BlobLoc, public_base, send_blob
from ...lock import Item
from ...wire import Page
from .index import ChartVersion, chartmuseum_chart, chartmuseum_charts, chartmuseum_version, render_index

_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
_API = re.compile(r"^/api/charts(?:/(?P<name>[^/]+)(?:/(?P<version>[^/]+))?)?/?$")
MAX_BASES = 64  # rendered index.yaml bodies kept (one per address clients use)
YAML = "application/x-yaml"


def _api(request: web.BaseRequest, body: bytes) -> web.StreamResponse:
    return Page(body, "application/json; charset=utf-8").answer(request)


def _json(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def _not_found(what: str) -> web.Response:
    return _json(404, json.dumps({"error": f"{what} not found"}).encode())


class ChartRepo:
    def __init__(self, items: list[Item], blobs: BlobIndex, public_url: str | None = None) -> None:
        self.blobs = blobs
        self.public_url = public_url
        self.charts: list[ChartVersion] = []
        self.files: dict[str, tuple[BlobLoc, str]] = {}
        for item in items:
            served = {}
            for art in item.artifacts:
                loc = blobs.get(art.digest)
                if loc is not None:
                    served[art.path] = loc
                    self.files["/" + art.path] = (loc, art.media_type)
            r = item.resolved
            tgz = f"charts/{r['name']}-{r['version']}.tgz"
            if tgz not in served:
                continue  # not in this store: neither listed nor served
            entry = dict(r["entry"])
            entry["digest"] = served[tgz].digest
            self.charts.append(ChartVersion.from_entry(entry))
        self._index: dict[str, Page] = {}
        self._api_all = chartmuseum_charts(self.charts)

    def base(self, request: web.BaseRequest) -> str:
        """The URL clients reach this listener at: ``--public-url`` (a bare host gets the port the
        client used), else the request's Host; relative URLs if the Host is not a plain host."""
        if self.public_url or _HOST.match(request.host or ""):
            return public_base(request, self.public_url)  # https under TLS
        return ""

    def index_yaml(self, base: str) -> Page:
        page = self._index.get(base)
        if page is None:
            if len(self._index) >= MAX_BASES:
                self._index.clear()  # many Host headers (a scan): forget, never grow without bound
            page = self._index[base] = Page(render_index(self.charts, base), YAML)
        return page

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        if path == "/index.yaml":
            return self.index_yaml(self.base(request)).answer(request, reusable=False)  # the Host is in it
        if path == "/health":
            return _json(200, b'{"healthy":true}')
        hit = self.files.get(path)
        if hit is not None:
            return await send_blob(request, self.blobs, hit[0], hit[1], immutable=True)  # <name>-<version>.tgz
        m = _API.match(path)
        if m is None:
            return None
        name, version = m.group("name"), m.group("version")
        if name is None:
            return _api(request, self._api_all)
        if version is None:
            body = chartmuseum_chart(self.charts, name)
            return _api(request, body) if body is not None else _not_found("chart")
        body = chartmuseum_version(self.charts, name, version)
        return _api(request, body) if body is not None else _not_found("chart version")

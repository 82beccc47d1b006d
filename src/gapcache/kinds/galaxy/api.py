"""The Galaxy API subset ``ansible-galaxy`` (ansible-core 2.19) uses, served from the lock under
``/galaxy/`` on the files listener. Configure clients with ``[galaxy] server_list`` →
``url=http://MIRROR:8004/galaxy/``.

- ``GET /galaxy/`` — a small HTML page (not JSON), so ansible-galaxy looks for the API at
  ``/galaxy/api/``, as it does for any server URL;
- ``GET /galaxy/api/`` — discovery: ``{"available_versions": {"v1": "v1/", "v3": "v3/"}}``;
- collections (v3): ``api/v3/collections/<ns>/<name>/`` (the collection),
  ``…/versions/`` (every mirrored version, one page whatever ``limit``/``offset`` ask),
  ``…/versions/<version>/`` (``download_url``, ``artifact.sha256``/``size``/``filename``,
  ``metadata.dependencies``, ``namespace.name``, ``collection.name``, ``href``, no signatures);
- roles (v1): ``api/v1/roles/?owner__username=<owner>&name=<name>`` and
  ``api/v1/roles/<id>/versions/`` (each version with its ``download_url`` on the mirror);
- downloads: ``/galaxy/download/<ns>-<name>-<version>.tar.gz`` and
  ``/galaxy/download/roles/<owner>/<name>/<version>.tar.gz``; roles fetched by URL at
  ``/galaxy/roles/url/<host>/<path>``.

Absolute URLs are written with the address the client used (or ``--public-url``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import web

from ...blobs import BlobIndex, BlobLoc, public_base, send_blob
from ...lock import Item
from ...wire import Page

_COLL = re.compile(r"^/galaxy/api/v3/collections/([^/]+)/([^/]+)/(?:versions/(?:([^/]+)/)?)?$")
_ROLE_VERSIONS = re.compile(r"^/galaxy/api/v1/roles/(\d+)/versions/?$")
INDEX = b"<html><body><h1>gapcache Galaxy mirror</h1><p>API root: <a href='api/'>api/</a></p></body></html>\n"


@dataclass
class Collection:
    versions: dict[str, tuple[Item, BlobLoc]] = field(default_factory=dict)


class GalaxyApi:
    def __init__(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> None:
        self.blobs = blobs
        self.public_url = public_url
        self.stamp = parsedate_to_datetime(blobs.last_modified).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        self.collections: dict[tuple[str, str], Collection] = {}
        self.roles: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (owner, name) -> [(version, url path)]
        self.files: dict[str, BlobLoc] = {}
        for item in items:
            kind = item.resolved.get("type")
            for art in item.artifacts:
                loc = blobs.get(art.digest)
                if loc is None or not art.path.startswith("galaxy/"):
                    continue
                if kind == "collection":
                    r = item.resolved
                    key = (str(r["namespace"]), str(r["name"]))
                    self.collections.setdefault(key, Collection()).versions[str(r["version"])] = (item, loc)
                    self.files[f"/galaxy/download/{key[0]}-{key[1]}-{r['version']}.tar.gz"] = loc
                elif kind == "role":
                    r = item.resolved
                    url = f"/galaxy/download/roles/{r['owner']}/{r['name']}/{r['version']}.tar.gz"
                    self.roles.setdefault((str(r["owner"]), str(r["name"])), []).append((str(r["version"]), url))
                    self.files[url] = loc
                else:
                    self.files["/" + art.path] = loc
        self.role_ids = {key: n for n, key in enumerate(sorted(self.roles), start=1)}

    def _collection(self, base: str, ns: str, name: str, version: str | None) -> Any:
        coll = self.collections[(ns, name)]
        href = f"/galaxy/api/v3/collections/{ns}/{name}/"
        ordered = sorted(coll.versions, key=_semver, reverse=True)
        if version is None:
            return {"href": href, "namespace": ns, "name": name, "deprecated": False,
                    "versions_url": href + "versions/", "created_at": self.stamp, "updated_at": self.stamp,
                    "highest_version": {"href": f"{href}versions/{ordered[0]}/", "version": ordered[0]}}  # fmt: skip
        item, loc = coll.versions[version]
        r = item.resolved
        return {
            "href": f"{href}versions/{version}/", "namespace": {"name": ns}, "collection": {"name": name, "href": href},
            "name": name, "version": version, "download_url": f"{base}/galaxy/download/{ns}-{name}-{version}.tar.gz",
            "artifact": {"filename": r.get("filename") or f"{ns}-{name}-{version}.tar.gz",
                         "sha256": loc.digest.removeprefix("sha256:"), "size": loc.size},
            "metadata": {"dependencies": r.get("dependencies", {})}, "signatures": [],
            "created_at": self.stamp, "updated_at": self.stamp,
        }  # fmt: skip

    def _versions(self, ns: str, name: str) -> Any:
        href = f"/galaxy/api/v3/collections/{ns}/{name}/versions/"
        ordered = sorted(self.collections[(ns, name)].versions, key=_semver, reverse=True)
        data: list[dict[str, Any]] = [
            {"version": v, "href": f"{href}{v}/", "created_at": self.stamp, "updated_at": self.stamp,
             "requires_ansible": None, "marks": []}
            for v in ordered
        ]  # fmt: skip
        first = f"{href}?limit={max(len(data), 1)}&offset=0"
        return {"meta": {"count": len(data)}, "links": {"first": first, "previous": None, "next": None, "last": first},
                "data": data}  # fmt: skip

    def _roles(self, request: web.BaseRequest) -> Any:
        key = (request.query.get("owner__username", ""), request.query.get("name", ""))
        results = []
        if key in self.roles:
            rid = self.role_ids[key]
            results.append({"id": rid, "name": key[1], "namespace": key[0], "username": key[0],
                            "url": f"/galaxy/api/v1/roles/{rid}/",
                            "summary_fields": {"namespace": {"name": key[0]}}})  # fmt: skip
        return {"count": len(results), "next": None, "next_link": None, "previous": None, "results": results}

    def _role_versions(self, base: str, rid: int) -> Any | None:
        key = next((k for k, n in self.role_ids.items() if n == rid), None)
        if key is None:
            return None
        results = [{"name": v, "download_url": base + url} for v, url in sorted(self.roles[key])]
        return {"count": len(results), "next": None, "next_link": None, "previous": None, "results": results}

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        path = request.path
        if request.method not in ("GET", "HEAD") or not path.startswith("/galaxy"):
            return None
        if path in ("/galaxy", "/galaxy/"):
            return web.Response(body=INDEX, content_type="text/html")
        loc = self.files.get(path)
        if loc is not None:
            versioned = path.startswith("/galaxy/download/")  # <ns>-<name>-<version>; roles by URL may change
            return await send_blob(request, self.blobs, loc, "application/gzip", immutable=versioned)
        base = public_base(request, self.public_url)
        doc: Any = None
        if path in ("/galaxy/api", "/galaxy/api/"):
            doc = {"available_versions": {"v1": "v1/", "v3": "v3/"}, "current_version": "v1",
                   "description": "gapcache Galaxy mirror"}  # fmt: skip
        elif path.rstrip("/") == "/galaxy/api/v1/roles":
            doc = self._roles(request)
        elif m := _ROLE_VERSIONS.match(path):
            doc = self._role_versions(base, int(m.group(1)))
        elif m := _COLL.match(path):
            ns, name, version = m.group(1), m.group(2), m.group(3)
            coll = self.collections.get((ns, name))
            if coll is None or (version is not None and version not in coll.versions):
                return _not_found(f"{ns}.{name}" + (f":{version}" if version else ""))
            listing = path.endswith("/versions/") and version is None
            doc = self._versions(ns, name) if listing else self._collection(base, ns, name, version)
        if doc is None:
            return None
        page = Page(json.dumps(doc, sort_keys=True).encode(), "application/json; charset=utf-8")
        return page.answer(request, reusable=False)  # download URLs name the client's Host


def _not_found(what: str) -> web.Response:
    body = {"errors": [{"status": "404", "code": "not_found", "title": f"{what} is not in the mirror"}]}
    return web.Response(status=404, body=json.dumps(body).encode(), content_type="application/json")


def _semver(version: str) -> tuple[Any, ...]:
    from .resolve import semver_key

    return semver_key(version) or (0, 0, 0, 0, ())

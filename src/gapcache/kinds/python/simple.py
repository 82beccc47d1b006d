"""The PyPI mirror (listener ``pypi``, port 8003): the simple repository API.

- ``/simple/`` and ``/simple/<project>/`` as PEP 503 HTML or PEP 691 JSON, chosen by ``Accept``
  (HTML when the client does not say); names that are not normalised redirect (301) to the
  normalised form;
- file links ``/packages/<project>/<file>#sha256=…`` with ``data-requires-python`` and the PEP 658 /
  PEP 714 metadata attributes (``data-dist-info-metadata``, ``data-core-metadata``) when the
  ``.metadata`` file is in the mirror, so pip's resolver reads metadata instead of whole wheels;
- ``/packages/…`` files and their ``.metadata`` with Range, ETag, Last-Modified.
Pages are rendered once per project and answered from memory.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from aiohttp import web
from packaging.utils import canonicalize_name

from ...blobs import BlobIndex, BlobLoc, send_blob
from ...lock import Item
from ...wire import Page

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
_PROJECT = re.compile(r"^/simple/([^/]+)/?$")


@dataclass(frozen=True)
class File:
    filename: str
    digest: str
    size: int
    requires_python: str | None
    metadata: str | None


def negotiate(accept: str | None) -> str:
    """PEP 691 content negotiation: the best of JSON v1, HTML v1 and text/html (default HTML)."""
    if not accept:
        return "text/html"
    best, best_q = "text/html", -1.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        mt, q = fields[0].lower(), 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if mt in ("*/*", "application/*"):
            mt = "text/html"
        if mt in (JSON_V1, HTML_V1, "text/html") and q > best_q:
            best, best_q = mt, q
    return best if best_q > 0 else "none"


class SimpleIndex:
    def __init__(self, items: list[Item], blobs: BlobIndex) -> None:
        self.blobs = blobs
        self.projects: dict[str, list[File]] = {}
        self.packages: dict[str, tuple[BlobLoc, str]] = {}
        for item in items:
            project = str(canonicalize_name(str(item.resolved["project"])))
            info = item.resolved.get("files", {})
            for art in item.artifacts:
                loc = blobs.get(art.digest)
                if loc is None:
                    continue
                url = "/packages/" + art.path.removeprefix("pypi/")
                self.packages[url] = (loc, art.media_type)
                fname = art.path.rsplit("/", 1)[-1]
                if fname in info:
                    meta = info[fname].get("metadata")
                    self.projects.setdefault(project, []).append(
                        File(fname, loc.digest, loc.size, info[fname].get("requires_python"), meta)
                    )
        for files in self.projects.values():
            files.sort(key=lambda f: f.filename)
        self._pages: dict[tuple[str, str], bytes] = {}
        self._answers: dict[tuple[str, str], Page] = {}

    def _render(self, project: str | None, kind: str) -> bytes:
        key = (project or "", kind)
        page = self._pages.get(key)
        if page is not None:
            return page
        if project is None:
            names = sorted(self.projects)
            if kind == JSON_V1:
                doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
                page = json.dumps(doc).encode()
            else:
                links = "".join(f'<a href="/simple/{n}/">{html.escape(n)}</a><br/>\n' for n in names)
                page = f"<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.1\">" \
                       f"<title>Simple index</title></head><body>\n{links}</body></html>\n".encode()  # fmt: skip
        else:
            files = self.projects[project]
            if kind == JSON_V1:
                out = []
                for f in files:
                    entry: dict[str, object] = {
                        "filename": f.filename,
                        "url": f"/packages/{project}/{f.filename}",
                        "hashes": {"sha256": f.digest[7:]},
                        "size": f.size,
                    }
                    if f.requires_python:
                        entry["requires-python"] = f.requires_python
                    meta = {"sha256": f.metadata[7:]} if f.metadata else False
                    # PEP 714: only `core-metadata` in JSON (pip 22.3-23.0.1 crash on a
                    # `dist-info-metadata` object); HTML keeps both attributes below
                    entry["core-metadata"] = meta
                    out.append(entry)
                versions = sorted({v for f in files for v in [_version(f.filename)] if v})
                doc = {"meta": {"api-version": "1.1"}, "name": project, "files": out, "versions": versions}
                page = json.dumps(doc).encode()
            else:
                rows = []
                for f in files:
                    attrs = f' href="/packages/{project}/{html.escape(f.filename)}#sha256={f.digest[7:]}"'
                    if f.requires_python:
                        attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
                    if f.metadata:
                        attrs += f' data-dist-info-metadata="sha256={f.metadata[7:]}"'
                        attrs += f' data-core-metadata="sha256={f.metadata[7:]}"'
                    rows.append(f"<a{attrs}>{html.escape(f.filename)}</a><br/>\n")
                page = f"<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.1\">" \
                       f"<title>Links for {project}</title></head><body>\n<h1>Links for {project}</h1>\n" \
                       f"{''.join(rows)}</body></html>\n".encode()  # fmt: skip
        self._pages[key] = page
        return page

    def _page(self, project: str | None, request: web.BaseRequest) -> web.StreamResponse:
        kind = negotiate(request.headers.get("Accept"))
        if kind == "none":
            return web.Response(status=406, text="acceptable: application/vnd.pypi.simple.v1+json, text/html\n")
        key = (project or "", kind)
        page = self._answers.get(key)
        if page is None:
            ctype = "text/html; charset=utf-8" if kind == "text/html" else kind
            page = self._answers[key] = Page(self._render(project, kind), ctype, {"Vary": "Accept"})
        return page.answer(request)  # the same for the same target and Accept: kept by the listener

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        if path in ("/simple", "/simple/", "/"):
            return self._page(None, request)
        m = _PROJECT.match(path)
        if m:
            name = m.group(1)
            norm = str(canonicalize_name(name))
            if norm not in self.projects:
                return None
            if name != norm or not path.endswith("/"):
                return web.Response(status=301, headers={"Location": f"/simple/{norm}/"})
            return self._page(norm, request)
        hit = self.packages.get(path)
        if hit is not None:
            return await send_blob(request, self.blobs, hit[0], hit[1], immutable=True)  # versioned names
        return None


def _version(filename: str) -> str | None:
    from packaging.utils import parse_sdist_filename, parse_wheel_filename

    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except ValueError:
        return None

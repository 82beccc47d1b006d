"""The files mirror (listener ``files``, port 8004): ``/<host>/<path>`` like Kubespray's files_repo.

GET/HEAD with Content-Length, Content-Type, ETag (the digest), Last-Modified and Range; 404 for
anything the lock does not list; directory listings in the format of nginx's autoindex (so
``wget -r`` and humans can browse), rendered once and then answered from memory.

Caching: a file is ``immutable`` only where its name says its bytes never change (:data:`VERSIONED`,
by tree: packages, checksum-named metadata); every other file (``repomd.xml``, ``InRelease``,
``Packages*``, keys, a plain file such as ``stable.txt``) and every listing is revalidated
(``no-cache``, ETag, 304).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from .blobs import BlobIndex, BlobLoc, send_blob
from .lock import Item
from .names import FILES_PREFIX
from .wire import Page

# per tree (the lock's path prefix): the names whose bytes never change — packages carry their
# version in the name, yum's unique-md-filenames and apt's by-hash/ carry the checksum. A new
# load changes anything else at the same path (a subset regenerates repodata, Release, Packages).
VERSIONED: dict[str, re.Pattern[str]] = {
    "yum/": re.compile(r"\.(?:rpm|drpm)$|/repodata/[0-9a-f]{32,}-[^/]+$"),
    "apt/": re.compile(r"\.(?:deb|udeb|ddeb|dsc)$|/by-hash/[^/]+/[0-9a-f]{32,}$"),
}


@dataclass
class _Dir:
    dirs: set[str] = field(default_factory=set)
    files: dict[str, int] = field(default_factory=dict)


class FilesTree:
    """A browsable tree of the artifacts under ``prefix`` (files/, yum/, …), served at ``/``."""

    def __init__(self, items: list[Item], blobs: BlobIndex, prefix: str = FILES_PREFIX) -> None:
        self.blobs = blobs
        self.files: dict[str, tuple[BlobLoc, str, bool]] = {}  # url -> (blob, media type, immutable)
        self.dirs: dict[str, _Dir] = {"/": _Dir()}
        self._rendered: dict[str, Page] = {}
        versioned = VERSIONED.get(prefix)
        files, locs, cut = self.files, blobs.locs, len(prefix)
        last_parent, last_dir = "", self.dirs["/"]  # the lock is sorted: a directory's files come together
        for item in items:
            for art in item.artifacts:
                path = art.path
                if not path.startswith(prefix) or art.digest is None:
                    continue
                loc = locs.get(art.digest)
                if loc is None:
                    continue
                url = "/" + path[cut:]
                immutable = versioned is not None and versioned.search(url) is not None
                files[url] = (loc, art.media_type, immutable)
                parent, _, name = url.rpartition("/")
                if parent != last_parent:
                    last_parent, last_dir = parent, self._add_dir(parent + "/")
                last_dir.files[name] = loc.size

    def _add_dir(self, path: str) -> _Dir:
        d = self.dirs.get(path)
        if d is None:
            d = self.dirs[path] = _Dir()
            parent, _, name = path[:-1].rpartition("/")
            self._add_dir(parent + "/").dirs.add(name)
        return d

    def listing(self, path: str) -> Page:
        page = self._rendered.get(path)
        if page is None:
            body = render_autoindex(path, self.dirs[path], self.blobs.last_modified)
            page = self._rendered[path] = Page(body, "text/html; charset=utf-8")
        return page

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        hit = self.files.get(path)
        if hit is not None:
            loc, media_type, immutable = hit
            return await send_blob(request, self.blobs, loc, media_type, immutable=immutable)
        if path in self.dirs:
            return self.listing(path).answer(request)
        if path + "/" in self.dirs:
            return web.Response(status=301, headers={"Location": quote(path + "/")}, text="moved\n")
        return None


def render_autoindex(path: str, d: _Dir, last_modified: str) -> bytes:
    """An index page in the layout of nginx's autoindex."""
    title = html.escape(path)
    # nginx shows "01-Jan-2024 10:00"; the lock has no timestamps, so all entries share the load time
    from email.utils import parsedate_to_datetime

    stamp = parsedate_to_datetime(last_modified).strftime("%d-%b-%Y %H:%M")
    lines = [
        f"<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n"
        f'<h1>Index of {title}</h1><hr><pre><a href="../">../</a>\r\n'
    ]

    def row(name: str, href: str, size: str) -> str:
        shown = name if len(name) <= 50 else name[:47] + "..>"
        pad = " " * (51 - len(shown))
        return f'<a href="{quote(href)}">{html.escape(shown)}</a>{pad}{stamp} {size:>19}\r\n'

    for name in sorted(d.dirs):
        lines.append(row(name + "/", name + "/", "-"))
    for name in sorted(d.files):
        lines.append(row(name, name, str(d.files[name])))
    lines.append("</pre><hr></body>\r\n</html>\r\n")
    return "".join(lines).encode()

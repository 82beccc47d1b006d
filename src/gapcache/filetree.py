"""The files mirror (listener ``files``, port 8004): ``/<host>/<path>`` like Kubespray's files_repo.

GET/HEAD with Content-Length, Content-Type, ETag (the digest), Last-Modified and Range; 404 for
anything the lock does not list; directory listings in the format of nginx's autoindex (so
``wget -r`` and humans can browse), rendered once and then answered from memory.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from .blobs import BlobIndex, BlobLoc, send_blob
from .lock import Item
from .names import FILES_PREFIX
from .wire import Prebuilt, serialize_head


@dataclass
class _Dir:
    dirs: set[str] = field(default_factory=set)
    files: dict[str, int] = field(default_factory=dict)


class FilesTree:
    """A browsable tree of the artifacts under ``prefix`` (files/, yum/, …), served at ``/``."""

    def __init__(self, items: list[Item], blobs: BlobIndex, prefix: str = FILES_PREFIX) -> None:
        self.blobs = blobs
        self.files: dict[str, tuple[BlobLoc, str]] = {}
        self.dirs: dict[str, _Dir] = {"/": _Dir()}
        self._rendered: dict[str, bytes] = {}
        for item in items:
            for art in item.artifacts:
                if not art.path.startswith(prefix):
                    continue
                loc = blobs.get(art.digest)
                if loc is None:
                    continue
                url = "/" + art.path[len(prefix) :]
                self.files[url] = (loc, art.media_type)
                parent, _, name = url.rpartition("/")
                self._add_dir(parent + "/").files[name] = loc.size

    def _add_dir(self, path: str) -> _Dir:
        d = self.dirs.get(path)
        if d is None:
            d = self.dirs[path] = _Dir()
            parent, _, name = path[:-1].rpartition("/")
            self._add_dir(parent + "/").dirs.add(name)
        return d

    def listing(self, path: str) -> bytes:
        page = self._rendered.get(path)
        if page is None:
            page = self._rendered[path] = render_autoindex(path, self.dirs[path], self.blobs.last_modified)
        return page

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        hit = self.files.get(path)
        if hit is not None:
            loc, media_type = hit
            return await send_blob(request, self.blobs, loc, media_type)
        if path in self.dirs:
            page = self.listing(path)
            return Prebuilt(serialize_head(200, {"Content-Type": "text/html; charset=utf-8"}, len(page)), page)
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

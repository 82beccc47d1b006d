"""The apt mirror (listener ``repos``, port 8001, shared with yum): ``/<id>/…`` (the repository
tree), ``/<id>/key.gpg`` (the key that signs what is served: the upstream's for a full mirror, the
site key for a subset) and ``/<id>.sources`` (deb822, with the address the client used or
``--public-url``, and ``Signed-By: /etc/apt/keyrings/<id>.gpg``)."""

from __future__ import annotations

import posixpath

from aiohttp import web

from ...blobs import BlobIndex, public_base
from ...filetree import FilesTree
from ...lock import Item
from ...wire import Page
from .resolve import PREFIX
from .sources import render_sources

KEYRINGS = "/etc/apt/keyrings"


class AptRepos:
    def __init__(self, items: list[Item], blobs: BlobIndex, public_url: str | None = None) -> None:
        self.public_url = public_url
        self.tree = FilesTree(items, blobs, prefix=PREFIX)
        self.repos = {str(i.resolved["id"]): i for i in items}
        self._sources: dict[tuple[str, str], Page] = {}

    def sources_file(self, repo_id: str, base: str) -> str:
        r = self.repos[repo_id].resolved
        has_key = any(a.path == f"{PREFIX}{repo_id}/key.gpg" for a in self.repos[repo_id].artifacts)
        # a subset is signed by the site key; a full mirror keeps upstream's signature, which a
        # `trusted: true` entry may not have: only then does the client have to trust it blindly
        signed = r.get("mode") == "packages" or bool(r.get("verified"))
        keyfile = f"{KEYRINGS}/{repo_id}.gpg"
        head = [f"# gapcache mirror of {self.repos[repo_id].request.get('url', repo_id)} (apt repository {repo_id})"]
        if has_key and signed:
            head.append(f"# key: curl -fsSLo {keyfile} {base}/{repo_id}/key.gpg")
        trees = dict(r.get("trees") or {"": r["architectures"]})
        stanzas = []
        signed_by = keyfile if has_key and signed else None
        for tree, archs in trees.items():
            text = render_sources(f"{base}/{repo_id}/{tree}", list(r["suites"]), list(r["components"]),
                                  architectures=list(archs), signed_by=signed_by)  # fmt: skip
            if not signed:
                text += "Trusted: yes\n"
            stanzas.append(text)
        return "\n".join(head) + "\n" + "\n".join(stanzas)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        if path.endswith(".sources") and path.count("/") == 1 and path[1:-8] in self.repos:
            base = public_base(request, self.public_url)
            key = (path, base)
            page = self._sources.get(key)
            if page is None:
                page = Page(self.sources_file(path[1:-8], base).encode(), "text/plain; charset=utf-8")
                if len(self._sources) < 256:  # bounded: the Host header is the client's to choose
                    self._sources[key] = page
            return page.answer(request, reusable=False)
        if "/./" in path or path.endswith("/."):  # apt asks flat repos' `./…` files as written
            clean = posixpath.normpath(path) + ("/" if path.endswith("/") else "")
            return await self.tree.handle(request.clone(rel_url=clean))
        return await self.tree.handle(request)

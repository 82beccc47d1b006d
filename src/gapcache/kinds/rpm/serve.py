"""The yum mirror (listener ``repos``, port 8001): ``/<repoid>/…`` trees (the seed's layout),
``/<repoid>.repo`` with the mirror's address, and ``/gpgkeys/<name>``.

The ``.repo`` file keeps ``gpgcheck=1`` and ``repo_gpgcheck=1`` and lists the upstream's keys and,
for a subset, the site key that signed its new repodata — the seed's ``gpgcheck=0`` is not repeated.
"""

from __future__ import annotations

from aiohttp import web

from ...blobs import BlobIndex, public_base
from ...filetree import FilesTree
from ...lock import Item
from ...wire import Page


class YumRepos:
    def __init__(self, items: list[Item], blobs: BlobIndex, public_url: str | None = None) -> None:
        self.public_url = public_url
        self.tree = FilesTree(items, blobs, prefix="yum/")
        self.repos = {str(i.resolved["id"]): list(i.resolved.get("keys", [])) for i in items}
        # a full mirror of an unsigned repomd cannot ask dnf to check a signature it does not have
        self.signed = {str(i.resolved["id"]): bool(i.resolved.get("signed", True)) for i in items}
        self._pages: dict[tuple[str, str], Page] = {}

    def repo_file(self, repo_id: str, base: str) -> str:
        keys = " ".join(f"{base}/gpgkeys/{k}" for k in self.repos[repo_id])
        return (
            f"[{repo_id}]\nname={repo_id} (gapcache mirror)\nbaseurl={base}/{repo_id}/\nenabled=1\n"
            f"gpgcheck=1\nrepo_gpgcheck={int(self.signed[repo_id])}\ngpgkey={keys}\n"
        )

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        if path.endswith(".repo") and path.count("/") == 1 and path[1:-5] in self.repos:
            # --public-url (host or URL, this listener's port added to a bare host), else the Host the client used
            base = public_base(request, self.public_url)
            page = self._pages.get((path, base))
            if page is None:  # built once per repo and address (bounded: Hosts come from clients)
                if len(self._pages) > 1024:
                    self._pages.clear()
                page = self._pages[path, base] = Page(
                    self.repo_file(path[1:-5], base).encode(), "text/plain; charset=utf-8"
                )
            return page.answer(request, reusable=False)  # the client's Host is in it
        return await self.tree.handle(request)

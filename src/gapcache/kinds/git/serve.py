"""Git repositories over git's "dumb" HTTP protocol, read-only, on the files listener.

``/git/<host>/<path>.git`` (also without ``.git``) answers what ``git clone``/``fetch`` ask a
dumb server: ``info/refs`` and ``HEAD`` (rendered from the lock), ``objects/info/packs`` and
``objects/pack/pack-<name>.pack``/``.idx`` (stored blobs, with Range). A smart client's
``info/refs?service=git-upload-pack`` gets the plain ref list, which is how git recognises a dumb
server — so no git is needed on the offline host. ``objects/info/*alternates`` are empty. Loose-object
probes (``objects/xx/…``) are 404s (one per clone lands in ``misses.jsonl``): everything is in the
one pack, which git fetches next.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...blobs import BlobIndex, BlobLoc, send_blob
from ...lock import Artifact
from ...manifest.git import GIT_PREFIX
from ...wire import Page


def render_refs(resolved: dict[str, Any]) -> bytes:
    lines = []
    peeled: dict[str, str] = resolved.get("peeled", {})
    for ref, obj in sorted(resolved.get("refs", {}).items()):
        lines.append(f"{obj}\t{ref}\n")
        if ref in peeled:
            lines.append(f"{peeled[ref]}\t{ref}^{{}}\n")
    return "".join(lines).encode()


def _text(body: bytes) -> Page:
    return Page(body, "text/plain; charset=utf-8")


class GitRepos:
    """The repositories of some items (each with ``resolved`` as :func:`resolve.describe` writes it)."""

    def __init__(self, repos: list[tuple[dict[str, Any], list[Artifact]]], blobs: BlobIndex) -> None:
        self.blobs = blobs
        self.texts: dict[str, Page] = {}  # info/refs, HEAD, …: revalidated (a new load moves refs)
        self.packs: dict[str, tuple[BlobLoc, str]] = {}
        for resolved, arts in repos:
            locs = {a.path: (blobs.get(a.digest), a.media_type) for a in arts if a.path.startswith(GIT_PREFIX)}
            if not locs or any(loc is None for loc, _ in locs.values()):
                continue
            name = str(resolved["repo"])
            for base in {f"/git/{name}", f"/git/{name.removesuffix('.git')}"}:
                self.texts[base + "/info/refs"] = _text(render_refs(resolved))
                self.texts[base + "/HEAD"] = _text((str(resolved["head"]) + "\n").encode())
                self.texts[base + "/objects/info/packs"] = _text(f"P pack-{resolved['pack']}.pack\n\n".encode())
                for alternates in ("/objects/info/http-alternates", "/objects/info/alternates"):
                    self.texts[base + alternates] = _text(b"")  # none: asked by every dumb clone
                for path, (loc, mt) in locs.items():
                    assert loc is not None
                    self.packs[base + path[len(GIT_PREFIX) + len(name) :]] = (loc, mt)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse | None:
        if request.method not in ("GET", "HEAD") or not request.path.startswith("/git/"):
            return None
        path = request.path
        text = self.texts.get(path)
        if text is not None:
            return text.answer(request)
        hit = self.packs.get(path)
        if hit is not None:  # pack-<checksum>.pack/.idx: content-addressed
            return await send_blob(request, self.blobs, hit[0], hit[1], immutable=True)
        return None

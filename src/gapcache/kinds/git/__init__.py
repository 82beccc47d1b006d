"""Git repositories (DeepOps itself, its Kubespray submodule, roles kept in git).

Manifest section ``git:`` (``{url, ref, submodules}``): each ref is pinned to a commit, every
submodule recursively to the commit its superproject records. The connected side fetches their
history with the git CLI and packs it (one reproducible pack + idx per repository, ``source:
generated``); the mirror serves them with git's dumb HTTP protocol on the files listener at
``/git/<host>/<path>.git`` — no git needed on the offline host. Clients keep their URLs with
``git config --global url.http://MIRROR:8004/git/<host>/.insteadOf https://<host>/``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ...blobs import BlobIndex, Handler
from ...errors import GapcacheError
from ...lock import GENERATED, Item
from ...manifest.git import GitEntry
from ...store import Store
from ...tools import require_tool
from ..base import ResolveContext
from .resolve import GitResolver, repack
from .serve import GitRepos


def ensure_packs(items: list[Item], store: Store) -> None:
    """``build --locked`` on a fresh store: pack again what the store lacks (resolve kept the packs
    otherwise). The build then compares the digests with the lock's."""
    for item in items:
        if all(a.digest and store.has(a.digest) for a in item.artifacts if a.source == GENERATED):
            continue
        with tempfile.TemporaryDirectory(prefix="gapcache-git-") as scratch:
            made = repack(item.resolved, Path(scratch))
        for art in item.artifacts:
            data = made.get(art.path)
            if data is None or store.put_bytes(data) != art.digest:
                raise GapcacheError(
                    f"git {item.name}: packing the pinned commits again gave other bytes than the lock's "
                    "(another git version?); rebuild without --locked"
                )


def repos_handler(items: list[Item], blobs: BlobIndex) -> Handler:
    return GitRepos([(i.resolved, i.artifacts) for i in items if "pack" in i.resolved], blobs).handle


class GitKind:
    name = "git"
    listener = "files"

    async def resolve(self, section: list[GitEntry], ctx: ResolveContext) -> list[Item]:
        if not section:
            return []
        require_tool("git", "to mirror git repositories")
        resolver = GitResolver(self.name, ctx)
        await resolver.add(section)
        return await resolver.items()

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        ensure_packs(items, store)
        return items

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        return repos_handler(items, blobs)

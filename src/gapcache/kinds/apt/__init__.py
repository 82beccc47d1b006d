"""Debian/apt repositories (issue 11): whole repos byte-exact, or a dependency-closed subset,
re-signed with the site key; served on the ``repos`` listener (8001) beside yum.

Manifest section (see ``manifest/apt.py``)::

    apt:
      - id: cuda-ubuntu2204
        url: https://developer.download.example/compute/cuda/repos/ubuntu2204/x86_64/
        suites: "/"                      # flat; or [jammy, jammy-updates] with components: [main]
        keyring: https://…/3bf863cc.pub  # or a path; armored or binary
        mode: packages                   # or full
        packages: [cuda-drivers]

The building blocks: ``release`` verifies and parses (In)Release files (gpgv) and picks index
files; ``packages`` parses Packages indexes byte-exact; ``closure`` runs apt's own solver in an
isolated configuration; ``publish`` writes a signed, reproducible repository; ``sources`` renders
deb822 ``.sources``. The kind glue: ``resolve`` (upstream → artifacts, through the shared
downloader only), ``generate`` (the subset's signed metadata and ``key.gpg``, after fetch),
``serve`` (the HTTP routes).
"""

from __future__ import annotations

from ...blobs import BlobIndex, Handler
from ...lock import Item
from ...manifest.apt import AptRepo
from ...store import Store
from ..base import ResolveContext, publish_each


class AptKind:
    name = "apt"
    listener = "repos"

    async def resolve(self, section: list[AptRepo], ctx: ResolveContext) -> list[Item]:
        from .resolve import resolve_repo

        items = []
        for repo in section:
            item = await ctx.attempt(self.name, repo.id, resolve_repo(repo, ctx))
            if item is not None:
                items.append(item)
        return items

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        """A subset gets new Packages and Release files signed with the site key; every repo a
        binary ``key.gpg``."""
        from .generate import generate

        return publish_each(items, lambda item: generate(item, store), "apt metadata")

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .serve import AptRepos

        return AptRepos(items, blobs, public_url).handle

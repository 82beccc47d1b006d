"""Ansible Galaxy content: collections (with their dependencies) and roles.

Manifest section ``galaxy:`` (see :mod:`gapcache.manifest.galaxy`): an ansible-galaxy
``requirements.yml`` and/or inline ``collections``/``roles``. Collections are resolved to exact
versions through the Galaxy v3 API, dependencies included, and pinned to the server's sha256;
Galaxy roles through the v1 API at their pinned (or newest) version; roles kept in git are pinned
like ``git:`` entries; roles given by tarball URL are fetched as they are. The mirror speaks the
subset of the Galaxy API ``ansible-galaxy collection install`` and ``role install`` use, under
``/galaxy/`` on the files listener (:mod:`.api`), and serves git roles at ``/git/…``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import yaml
from pydantic import ValidationError

from ...blobs import BlobIndex, Handler
from ...errors import GapcacheError
from ...lock import Artifact, Item
from ...manifest.galaxy import CollectionReq, GalaxySection, RoleReq, coerce_collections
from ...manifest.git import GitEntry
from ...names import default_file_path
from ...store import Store
from ...tools import require_tool
from ..base import ResolveContext
from ..git import ensure_packs, repos_handler
from ..git.resolve import GitResolver
from .resolve import GalaxyClient, resolve_collections, role_version_key

GZIP = "application/gzip"


def read_requirements(path: str) -> tuple[list[CollectionReq], list[RoleReq]]:
    """ansible-galaxy's requirements.yml: ``{collections: […], roles: […]}``, or a list of roles."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GapcacheError(f"{path}: {exc}") from exc
    if data is None:
        return [], []
    if isinstance(data, list):
        data = {"roles": data}
    if not isinstance(data, dict):
        raise GapcacheError(f"{path}: expected a mapping with collections and roles, or a list of roles")
    try:
        raw: Any = coerce_collections(data.get("collections") or [])
        cols = [CollectionReq.model_validate(c) for c in raw]
        roles = [RoleReq.model_validate(r) for r in data.get("roles") or []]
    except (ValidationError, TypeError) as exc:
        raise GapcacheError(f"{path}: {exc}") from exc
    return cols, roles


class GalaxyKind:
    name = "galaxy"
    listener = "files"

    async def resolve(self, section: GalaxySection | None, ctx: ResolveContext) -> list[Item]:
        if section is None:
            return []
        collections, roles = list(section.collections), list(section.roles)
        if section.requirements:
            got = await ctx.attempt(self.name, f"requirements {section.requirements}", _read(section.requirements))
            if got is None:
                return []
            collections += got[0]
            roles += got[1]
        clients: dict[str, GalaxyClient] = {}

        def client(server: str | None) -> GalaxyClient:
            url = server or section.server
            url = url if url.endswith("/") else url + "/"
            return clients.setdefault(url, GalaxyClient(url, ctx.downloader))

        items: list[Item] = []
        by_server: dict[str, dict[str, str]] = {}
        for c in collections:
            specs = by_server.setdefault(client(c.source).server, {})
            specs[c.name] = c.version if c.name not in specs else f"{specs[c.name]},{c.version}".replace("*,", "")
        for server, wanted in sorted(by_server.items()):
            got_cols = await ctx.attempt(
                self.name, f"collections from {server}", resolve_collections(clients[server], wanted)
            )
            for fqcn, cv in (got_cols or {}).items():
                path = f"galaxy/collections/{cv.namespace}-{cv.name}-{cv.version}.tar.gz"
                art = Artifact(
                    path=path, source=cv.download_url, digest=f"sha256:{cv.sha256}", size=cv.size, media_type=GZIP
                )
                resolved = {"type": "collection", "namespace": cv.namespace, "name": cv.name, "version": cv.version,
                            "dependencies": dict(sorted(cv.dependencies.items())), "filename": cv.filename}  # fmt: skip
                request = {"name": fqcn, "version": wanted.get(fqcn, "(a dependency)"), "server": server}
                items.append(Item(kind=self.name, name=f"collection {fqcn}", request=request, resolved=resolved,
                                  artifacts=[art]))  # fmt: skip
        git_roles = [r for r in roles if r.kind() == "git"]
        for role in roles:
            if role.kind() == "galaxy":
                item = await ctx.attempt(self.name, f"role {role.src}", self._galaxy_role(role, client(None)))
            elif role.kind() == "url":
                item = self._url_role(role)
            else:
                continue
            if item is not None:
                items.append(item)
        if git_roles:
            require_tool("git", "to mirror roles kept in git")
            resolver = GitResolver(self.name, ctx)
            entries = []
            for r in git_roles:
                try:
                    entries.append(GitEntry(url=r.url(), ref=r.version or "HEAD", submodules=False))
                except ValidationError as exc:
                    ctx.fail(self.name, f"role {r.role_name()}", str(exc.errors()[0]["msg"]))
            await resolver.add(entries)
            items += await resolver.items()
        return items

    async def _galaxy_role(self, role: RoleReq, client: GalaxyClient) -> Item:
        record, versions = await client.role(role.src)
        names = [str(v.get("name")) for v in versions]
        if role.version:
            if versions and role.version not in names:
                raise GapcacheError(
                    f"role {role.src}: version {role.version!r} not found (available: {', '.join(names)})"
                )
            version = role.version
        elif names:
            version = max(names, key=role_version_key)
        else:
            version = str(record.get("github_branch") or "master")
        entry = next((v for v in versions if str(v.get("name")) == version), {})
        url = entry.get("download_url")
        if not url:
            url = f"https://github.com/{record['github_user']}/{record['github_repo']}/archive/{version}.tar.gz"
        owner, _, name = role.src.rpartition(".")
        resolved: dict[str, Any] = {"type": "role", "owner": owner, "name": name, "version": version}
        for key in ("github_user", "github_repo", "description"):
            if record.get(key):
                resolved[key] = str(record[key])
        art = Artifact(path=f"galaxy/roles/{owner}/{name}/{version}.tar.gz", source=urljoin(client.api or "", url),
                       media_type=GZIP)  # fmt: skip
        return Item(kind=self.name, name=f"role {role.src}", request=role.model_dump(exclude_none=True),
                    resolved=resolved, artifacts=[art])  # fmt: skip

    def _url_role(self, role: RoleReq) -> Item:
        art = Artifact(path=f"galaxy/roles/url/{default_file_path(role.url())}", source=role.url(), media_type=GZIP)
        resolved = {"type": "role-url", "name": role.role_name(), "version": role.version or ""}
        return Item(kind=self.name, name=f"role {role.role_name()}", request=role.model_dump(exclude_none=True),
                    resolved=resolved, artifacts=[art])  # fmt: skip

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        ensure_packs([i for i in items if "pack" in i.resolved], store)
        return items

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .api import GalaxyApi

        api = GalaxyApi(items, blobs, public_url).handle
        git = repos_handler(items, blobs)

        async def handle(request: Any) -> Any:
            resp = await api(request)
            return resp if resp is not None else await git(request)

        return handle


async def _read(path: str) -> tuple[list[CollectionReq], list[RoleReq]]:
    return read_requirements(path)

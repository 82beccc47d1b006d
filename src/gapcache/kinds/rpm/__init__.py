"""RPM (yum/dnf) repositories: whole repos byte-exact, or a dependency-closed subset.

Manifest section::

    yum:
      - id: cuda-rhel9-x86_64
        baseurl: https://…/cuda/repos/rhel9/x86_64/
        gpgkey: [https://…/D42D0685.pub]
        arch: [x86_64, noarch]
        mode: packages                  # or full
        packages: [cuda-drivers, nvidia-container-toolkit]
        base: [rhel9-baseos]            # ids whose packages count as installed (the OS media)
      - id: rhel9-baseos
        baseurl: file:///mnt/rhel9/BaseOS    # a mounted RHEL ISO (http(s):// too)
        mirror: false                   # its metadata for the closure only: not in the archive
      - id: rhel-9-appstream
        baseurl: https://cdn.redhat.example/content/dist/rhel9/9/x86_64/appstream/os
        sslclientcert: /etc/pki/entitlement/1234.pem      # dnf's options: the entitlement
        sslclientkey: /etc/pki/entitlement/1234-key.pem
        sslcacert: /etc/rhsm/ca/redhat-uep.pem

TLS: a repo's ``sslclientcert``/``sslclientkey``/``sslcacert``/``sslverify`` apply to every request
under its baseurl (or mirrorlist, metalink and the mirrors they name) and to its gpgkey URLs on the
same host (:mod:`gapcache.clienttls`); they are never written into the ``.repo`` files the mirror
serves. Verification: ``repomd.xml`` (and its ``.asc`` signature, checked with the repo's keys when
present) → each metadata file by its checksum → each package by the checksum in primary.
A full mirror keeps the upstream metadata byte-exact. A subset is closed under dependencies by
libsolv (``solv``, dnf's own solver) and gets new repodata from createrepo_c at build time, its
``repomd.xml`` signed with the site key (kept on the connected side; only the public key travels).
"""

from __future__ import annotations

import asyncio
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...blobs import BlobIndex, Handler
from ...clienttls import ClientTls, TlsClient
from ...errors import GapcacheError, HTTPStatusError, UsageError
from ...lock import Artifact, Item
from ...manifest.yum import YumRepo
from ...names import logical_path_error
from ...store import Store
from ..base import ResolveContext, publish_each
from .gpg import verify_signature
from .publish import UPSTREAM_MD, publish_subset
from .repomd import Pkg, decompress, parse_primary, parse_repomd, sha256_of, solve_closure


@dataclass
class RepoMeta:
    repo: YumRepo
    baseurl: str
    repomd: bytes
    signature: bytes | None
    keys: list[tuple[str, bytes]]
    files: dict[str, tuple[str, str, int | None]]
    primary: bytes  # uncompressed
    packages: list[Pkg]


async def candidate_baseurls(repo: YumRepo, ctx: ResolveContext) -> list[str]:
    """The baseurl, or the mirrors a mirrorlist (one URL per line) or metalink (XML) names."""
    if repo.baseurl:
        return [repo.baseurl.rstrip("/") + "/"]
    if repo.mirrorlist:
        text = (await ctx.downloader.get_bytes(repo.mirrorlist, max_size=1 << 20)).decode(errors="replace")
        urls = [line.strip() for line in text.splitlines() if line.strip().startswith(("http://", "https://"))]
    else:
        assert repo.metalink is not None
        root = ET.fromstring(await ctx.downloader.get_bytes(repo.metalink, max_size=4 << 20))
        urls = [
            (u.text or "").strip().removesuffix("repodata/repomd.xml")
            for u in root.iter()
            if u.tag.endswith("}url") and (u.text or "").strip().startswith(("http://", "https://"))
        ]
    if not urls:
        raise GapcacheError(f"{repo.id}: the {'mirrorlist' if repo.mirrorlist else 'metalink'} names no mirror")
    tls = tls_client(repo)
    if tls is not None:  # the mirrors the list names get the repo's certificate too
        for u in urls:
            ctx.downloader.client_tls.add(u.rstrip("/") + "/", tls, exclusive=False)
    return [u.rstrip("/") + "/" for u in urls]


def tls_client(repo: YumRepo) -> TlsClient | None:
    """The repo's TLS settings for the downloader (None: it has none)."""
    if not repo.tls_files() and repo.sslverify:
        return None
    return TlsClient(f"yum repo {repo.id}", repo.sslclientcert, repo.sslclientkey, repo.sslcacert, repo.sslverify)


def register_tls(repos: list[YumRepo], client_tls: ClientTls) -> list[YumRepo]:
    """Give the downloader each repo's TLS settings for its URL prefixes (baseurl, mirrorlist,
    metalink; gpgkey URLs on those hosts); returns the repos with relative TLS paths made absolute
    (from the current directory: a manifest read from a file has them from its folder already).
    Files that do not make a client context are a UsageError naming the repo (exit 2)."""
    out = []
    for repo in repos:
        try:
            repo = repo.with_base_dir(Path.cwd())
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        out.append(repo)
        tls = tls_client(repo)
        if tls is None:
            continue
        sources = [u for u in (repo.baseurl, repo.mirrorlist, repo.metalink) if u]
        for url in sources:
            client_tls.add(url.rstrip("/") + "/" if url == repo.baseurl else url, tls)
        hosts = {urlsplit(u).netloc.lower() for u in sources}
        for key in repo.gpgkey:
            if urlsplit(key).netloc.lower() in hosts:
                client_tls.add(key, tls, exclusive=False)
    return out


def register_locked_tls(items: list[Item], client_tls: ClientTls) -> None:
    """``build --locked``: each yum item's TLS settings (from its request) for the URLs it fetches."""
    for item in items:
        if item.kind != "rpm" or not any(k.startswith("ssl") for k in item.request):
            continue
        try:
            repo = YumRepo.model_validate(item.request)
        except ValueError as exc:
            raise UsageError(f"{item.name}: {exc}") from exc
        tls = tls_client(repo)
        if tls is not None:
            for art in item.artifacts:
                if art.source.startswith(("http://", "https://")):
                    client_tls.add(art.source, tls, exclusive=False)


def _refused_hint(repo: YumRepo, exc: GapcacheError) -> str:
    """What a 400/403 from an https upstream most likely means for this repo."""
    if not (isinstance(exc, HTTPStatusError) and exc.status in (400, 403) and exc.url.startswith("https://")):
        return ""
    if repo.sslclientcert:
        return (
            f" (the server refused the client certificate sslclientcert {repo.sslclientcert}: not one it "
            "accepts, or not entitled to this repo)"
        )
    return " (does this repo need a client certificate? Red Hat's CDN does: set sslclientcert and sslclientkey)"


async def fetch_repo_meta(repo: YumRepo, ctx: ResolveContext) -> RepoMeta:
    dl = ctx.downloader
    repomd = b""
    errors = []
    for base in await candidate_baseurls(repo, ctx):
        try:
            repomd = await dl.get_bytes(base + "repodata/repomd.xml", max_size=16 << 20)
            break
        except GapcacheError as exc:
            errors.append(str(exc) + _refused_hint(repo, exc))
    else:
        raise GapcacheError(f"{repo.id}: no mirror answered: {'; '.join(errors)}")
    keys = []
    for url in repo.gpgkey:
        keys.append((url.rstrip("/").rsplit("/", 1)[-1], await dl.get_bytes(url, max_size=1 << 20)))
    signature = None
    try:
        signature = await dl.get_bytes(base + "repodata/repomd.xml.asc", max_size=1 << 20)
    except HTTPStatusError as exc:
        if exc.status != 404:
            raise
    if signature is not None:
        if not keys:
            raise GapcacheError(f"{repo.id}: repomd.xml is signed but the repo lists no gpgkey")
        await asyncio.to_thread(verify_signature, repomd, signature, [k for _, k in keys], f"{repo.id} repomd.xml")
    elif keys and repo.repo_gpgcheck:
        raise GapcacheError(
            f"{repo.id}: repomd.xml is not signed ({base}repodata/repomd.xml.asc: 404) although the repo lists "
            "gpgkey; set `repo_gpgcheck: false` for this repo to mirror its metadata unsigned"
        )
    files = parse_repomd(repomd)
    if "primary" not in files:
        raise GapcacheError(f"{repo.id}: repomd.xml has no primary metadata")
    for href, _, _ in files.values():
        if logical_path_error(href) or href.startswith("/"):
            raise GapcacheError(f"{repo.id}: repomd.xml names an unsafe location {href!r}")
    primary = decompress(await fetch_checked(dl, base, files["primary"], repo.id), files["primary"][0])
    pkgs = [p for p in parse_primary(primary) if p.arch in repo.arch]
    for p in pkgs:
        if logical_path_error(p.href):
            raise GapcacheError(f"{repo.id}: primary names an unsafe package location {p.href!r}")
    return RepoMeta(repo, base, repomd, signature, keys, files, primary, pkgs)


async def fetch_checked(dl: Any, base: str, entry: tuple[str, str, int | None], repo_id: str) -> bytes:
    href, sha, _ = entry
    data: bytes = await dl.get_bytes(base + href, max_size=1 << 30)
    if sha256_of(data) != f"sha256:{sha}":
        raise GapcacheError(f"{repo_id}: {href} does not match its checksum in repomd.xml")
    return data


class RpmKind:
    name = "rpm"
    listener = "repos"

    async def resolve(self, section: list[YumRepo], ctx: ResolveContext) -> list[Item]:
        section = register_tls(section, ctx.downloader.client_tls)  # before any request; exit 2 if bad
        metas: dict[str, RepoMeta] = {}
        for repo in section:
            meta = await ctx.attempt(self.name, repo.id, fetch_repo_meta(repo, ctx))
            if meta is not None:
                metas[repo.id] = meta
        items = []
        for repo in section:
            if repo.id in metas and repo.mirror:  # the closure is CPU work: off the event loop
                item = await ctx.attempt(self.name, repo.id, asyncio.to_thread(self._item, metas[repo.id], metas, ctx))
                items += [item] if item is not None else []
        return items

    def _item(self, meta: RepoMeta, metas: dict[str, RepoMeta], ctx: ResolveContext) -> Item:
        repo = meta.repo
        arts: list[Artifact] = []
        keys: list[str] = []  # below yum/gpgkeys/: one folder per repo, so two repos' `…/gpg` never collide
        for i, ((name, data), url) in enumerate(zip(meta.keys, repo.gpgkey, strict=True)):
            key = f"{repo.id}/{name}" if f"{repo.id}/{name}" not in keys else f"{repo.id}/{i}-{name}"
            keys.append(key)
            arts.append(Artifact(path=f"yum/gpgkeys/{key}", source=url, digest=ctx.keep(data), size=len(data),
                                 media_type="application/pgp-keys"))  # fmt: skip
        if repo.mode == "full":
            pkgs = meta.packages
            md_url = meta.baseurl + "repodata/repomd.xml"
            arts.append(Artifact(path=f"yum/{repo.id}/repodata/repomd.xml", source=md_url, digest=ctx.keep(meta.repomd),
                                 size=len(meta.repomd), media_type="application/xml"))  # fmt: skip
            if meta.signature is not None:
                arts.append(Artifact(path=f"yum/{repo.id}/repodata/repomd.xml.asc",
                                     source=meta.baseurl + "repodata/repomd.xml.asc", digest=ctx.keep(meta.signature),
                                     size=len(meta.signature), media_type="application/pgp-signature"))  # fmt: skip
            for href, sha, size in meta.files.values():
                arts.append(Artifact(path=f"yum/{repo.id}/{href}", source=meta.baseurl + href, digest=f"sha256:{sha}",
                                     size=size, media_type="application/octet-stream"))  # fmt: skip
        else:
            with tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch:
                primaries = {rid: m.primary for rid, m in metas.items()}
                pkgs = solve_closure(primaries, meta.packages, repo, Path(scratch))
            if not pkgs:  # createrepo_c would fail on it; say why instead
                asked = ", ".join(repo.packages) or "(no `packages:` given)"
                where = f" (base: {', '.join(repo.base)})" if repo.base else ""
                raise GapcacheError(
                    f"{repo.id}: the subset is empty: {asked}: nothing of this repo is needed, the base repos "
                    f"already provide it{where}; drop the repo, or list packages this repo has"
                )
            if not repo.newest_only:  # every version of what the closure needs
                wanted = {(p.name, p.arch) for p in pkgs}
                pkgs = sorted({*pkgs, *(p for p in meta.packages if (p.name, p.arch) in wanted)}, key=lambda p: p.href)
            # the upstream's groups and modules, fetched like any artifact (not served: publish filters them
            # to the subset), so `build --locked` can regenerate the repodata on a fresh store
            for mdtype in ("group", "modules"):
                if mdtype in meta.files:
                    href, sha, size = meta.files[mdtype]
                    name = href.rsplit("/", 1)[-1]
                    suffix = name[name.index(".") :] if "." in name else ""  # decompress by it in publish
                    arts.append(Artifact(path=f"{UPSTREAM_MD}{repo.id}/{mdtype}.upstream{suffix}",
                                         source=meta.baseurl + href, digest=f"sha256:{sha}", size=size))  # fmt: skip
        for p in pkgs:
            arts.append(Artifact(path=f"yum/{repo.id}/{p.href}", source=meta.baseurl + p.href,
                                 digest=f"sha256:{p.sha256}", size=p.size, media_type="application/x-rpm"))  # fmt: skip
        resolved: dict[str, Any] = {
            "id": repo.id, "mode": repo.mode, "keys": keys,
            "packages": [f"{p.name}-{p.evr}.{p.arch}" for p in pkgs],
            # what the .repo file's repo_gpgcheck says: a subset is always signed (by the site key)
            "signed": repo.mode == "packages" or meta.signature is not None,
        }  # fmt: skip
        request = repo.model_dump(exclude_none=True)
        if repo.sslverify:
            del request["sslverify"]  # the default: locks of repos without TLS options keep their bytes
        return Item(kind=self.name, name=repo.id, request=request, resolved=resolved, artifacts=arts)

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        """A subset gets repodata from createrepo_c, its repomd.xml signed with the site key."""

        def make(item: Item) -> Item:
            return publish_subset(item, store) if item.resolved.get("mode") == "packages" else item

        return publish_each(items, make, "repodata")

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .serve import YumRepos

        return YumRepos(items, blobs, public_url).handle

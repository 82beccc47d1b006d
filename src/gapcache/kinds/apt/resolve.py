"""Resolving one ``apt:`` entry: signed Release files → Packages indexes → artifacts.

Everything goes through the shared downloader; nothing is written into the store (fetched
metadata is kept with ``ctx.keep``). Verification: InRelease (or Release + Release.gpg) with gpgv
against the entry's keyring, each index by its size and SHA256 in the Release file, and — at fetch
time, by the shared machinery — each .deb by its SHA256 in the index.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import HTTPStatusError
from ...lock import Artifact, Item
from ...manifest.apt import AptRepo
from ...names import logical_path_error
from ..base import ResolveContext
from .closure import resolve_closure
from .errors import AptError, SignatureError
from .packages import PackageRecord, parse_packages
from .release import (
    COMPRESSIONS,
    IndexRef,
    Release,
    check_index,
    packages_indexes,
    parse_release,
    release_dir,
    release_paths,
    verify_inrelease,
    verify_release,
)

PREFIX = "apt/"  # served paths: apt/<id>/… is /<id>/… on the repos listener
UPSTREAM_KEYS = "apt-upstream/"  # the upstream keyring: kept (key.gpg is derived from it), not served
DEB_TYPE = "application/vnd.debian.binary-package"
RELEASE_FIELDS = ("Origin", "Label", "Suite", "Codename", "Date", "Description")


@dataclass
class SuiteMeta:
    """One suite of one upstream URL: its Release files as fetched and the parsed Release."""

    url: str
    suite: str
    release: Release
    files: dict[str, bytes]  # InRelease / Release / Release.gpg (those that exist and check out)
    verified: bool


@dataclass
class Index:
    suite: str
    component: str | None
    arch: str
    ref: IndexRef
    raw: bytes  # as fetched (compressed), checked against the Release file
    data: bytes  # decompressed


@dataclass
class Group:
    """The architectures fetched from one URL; ``tree`` is where a full mirror of it is served."""

    url: str
    archs: list[str]
    tree: str
    suites: dict[str, SuiteMeta] = field(default_factory=dict)
    indexes: list[Index] = field(default_factory=list)


def groups_of(repo: AptRepo) -> list[Group]:
    """Architectures grouped by URL; the main URL's tree is the repo root, another URL's (Ubuntu's
    ports) is served at ``<arch>/`` below it in a full mirror (its own signed tree)."""
    by_url: dict[str, list[str]] = {}
    for arch in repo.architectures:
        by_url.setdefault(repo.url_for(arch), []).append(arch)
    return [Group(url, archs, "" if url == repo.url else f"{archs[0]}/") for url, archs in by_url.items()]


async def _optional(ctx: ResolveContext, url: str, max_size: int = 64 << 20) -> bytes | None:
    try:
        return await ctx.downloader.get_bytes(url, max_size=max_size)
    except HTTPStatusError as exc:
        if exc.status in (403, 404, 410):
            return None
        raise


def clearsigned_text(inrelease: bytes) -> bytes:
    """The text of a clearsigned message, unverified (only for ``trusted: true``)."""
    lines = inrelease.split(b"\n")
    try:
        start = lines.index(b"", lines.index(b"-----BEGIN PGP SIGNED MESSAGE-----")) + 1
        end = lines.index(b"-----BEGIN PGP SIGNATURE-----", start)
    except ValueError as exc:
        raise AptError("InRelease is not a clearsigned message") from exc
    body = [ln[2:] if ln.startswith(b"- ") else ln for ln in lines[start:end]]
    return b"\n".join(body) + b"\n"


async def load_keyring(repo: AptRepo, ctx: ResolveContext) -> tuple[str, bytes] | None:
    """(source URL, bytes) of the entry's keyring: fetched from a URL, or read from a path now."""
    if repo.keyring is None:
        return None
    if repo.keyring.startswith(("http://", "https://")):
        return repo.keyring, await ctx.downloader.get_bytes(repo.keyring, max_size=16 << 20)
    path = Path(repo.keyring).expanduser().resolve()
    try:
        return path.as_uri(), path.read_bytes()
    except OSError as exc:
        raise AptError(f"{repo.id}: keyring {repo.keyring}: {exc.strerror}") from exc


async def fetch_suite(repo: AptRepo, group: Group, suite: str, key: bytes | None, ctx: ResolveContext) -> SuiteMeta:
    inrel_path, rel_path, gpg_path = release_paths(suite)
    base = group.url
    files: dict[str, bytes] = {}
    inrelease = await _optional(ctx, base + inrel_path)
    release = sig = None
    if inrelease is None or repo.mode == "full":
        release = await _optional(ctx, base + rel_path)
        if release is not None:
            sig = await _optional(ctx, base + gpg_path)
    if inrelease is None and release is None:
        raise AptError(f"{repo.id}: {base}{release_dir(suite)}: neither InRelease nor Release exists")
    parsed: Release | None = None
    problem: SignatureError | None = None
    if key is not None:
        try:
            if inrelease is not None:
                parsed = await asyncio.to_thread(verify_inrelease, inrelease, key, f"{repo.id}: {base}{inrel_path}")
                files["InRelease"] = inrelease
            if release is not None and sig is not None:
                detached = await asyncio.to_thread(verify_release, release, sig, key, f"{repo.id}: {base}{gpg_path}")
                parsed = parsed or detached
                files["Release"], files["Release.gpg"] = release, sig
            elif inrelease is None:
                raise SignatureError(f"{repo.id}: {base}{rel_path} is not signed (no InRelease, no Release.gpg)")
        except SignatureError as exc:
            problem = exc
    if parsed is not None and release is not None and "Release" not in files and release == parsed.raw:
        files["Release"] = release  # the same text InRelease signs
    if problem is not None or key is None:
        if not repo.trusted:
            raise problem or SignatureError(f"{repo.id}: no keyring to verify {base}{inrel_path}")
        text = release if release is not None else clearsigned_text(inrelease or b"")
        parsed = parse_release(text, None, f"{repo.id}: {base}{release_dir(suite)}Release")
        files = {n: b for n, b in (("InRelease", inrelease), ("Release", release), ("Release.gpg", sig)) if b}
    assert parsed is not None
    return SuiteMeta(base, suite, parsed, files, problem is None and key is not None)


async def fetch_index(repo: AptRepo, meta: SuiteMeta, comp: str | None, arch: str, ctx: ResolveContext) -> Index:
    refs = packages_indexes(meta.release, comp, arch)
    folder = meta.url + release_dir(meta.suite)
    what = f"{repo.id}: {folder}"
    if not refs:
        raise AptError(f"{what}Release lists no Packages index for {(comp + '/') if comp else ''}{arch}")
    for ref in refs:
        for path in [p for p in (ref.by_hash, ref.path) if p]:
            raw = await _optional(ctx, folder + path, max_size=1 << 30)
            if raw is not None:
                return Index(meta.suite, comp, arch, ref, raw, check_index(ref, raw, what))
    raise AptError(f"{what}: none of {', '.join(r.path for r in refs)} could be fetched")


def deb_artifact(repo: AptRepo, url: str, tree: str, rec: PackageRecord) -> Artifact:
    path = posixpath.normpath(rec.filename)
    logical = f"{PREFIX}{repo.id}/{tree}{path}"
    if rec.filename.startswith("/") or path.startswith("..") or logical_path_error(logical):
        raise AptError(f"{repo.id}: {rec.package} {rec.version} has an unsafe Filename {rec.filename!r}")
    if not rec.sha256:
        raise AptError(f"{repo.id}: {rec.package} {rec.version} has no SHA256 in its Packages index")
    return Artifact(path=logical, source=url + path, digest=f"sha256:{rec.sha256}", size=rec.size, media_type=DEB_TYPE)


def add(arts: dict[str, Artifact], art: Artifact, repo_id: str) -> None:
    """One artifact per path; the same path with other bytes (an arch-all .deb that differs between
    two archives) is an error naming it."""
    old = arts.setdefault(art.path, art)
    if old.digest != art.digest:
        raise AptError(f"{repo_id}: {art.path} comes from two places with different SHA256 "
                       f"({old.source}, {art.source})")  # fmt: skip


async def resolve_repo(repo: AptRepo, ctx: ResolveContext) -> Item:
    keyring = await load_keyring(repo, ctx)
    key = keyring[1] if keyring else None
    groups = groups_of(repo)
    comps: list[str | None] = list(repo.components) if not repo.flat else [None]
    for g in groups:
        for suite in repo.suites:
            g.suites[suite] = await fetch_suite(repo, g, suite, key, ctx)
            fetched: dict[str | None, Index] = {}
            for comp in comps:
                for arch in g.archs:
                    if repo.flat and comp in fetched:  # one Packages for every architecture
                        i = fetched[comp]
                        g.indexes.append(Index(i.suite, i.component, arch, i.ref, i.raw, i.data))
                        continue
                    fetched[comp] = await fetch_index(repo, g.suites[suite], comp, arch, ctx)
                    g.indexes.append(fetched[comp])
    if repo.mode == "full":
        arts, resolved = await full_mirror(repo, groups, ctx)
    else:
        arts, resolved = await asyncio.to_thread(subset, repo, groups, ctx)
    if keyring is not None and repo.mode == "full":  # key.gpg is derived from it (a subset: the site key)
        arts[f"{UPSTREAM_KEYS}{repo.id}/keyring"] = Artifact(
            path=f"{UPSTREAM_KEYS}{repo.id}/keyring", source=keyring[0], digest=ctx.keep(keyring[1]),
            size=len(keyring[1]), media_type="application/pgp-keys")  # fmt: skip
    first = groups[0].suites
    release = {s: {k: m.release.fields[k] for k in RELEASE_FIELDS if k in m.release.fields} for s, m in first.items()}
    resolved.update(
        id=repo.id, mode=repo.mode, flat=repo.flat, suites=list(repo.suites), components=list(repo.components),
        architectures=list(repo.architectures), keyring=keyring is not None,
        verified=all(m.verified for g in groups for m in g.suites.values()),
        release=release,
    )  # fmt: skip
    request = repo.model_dump(exclude_none=True)
    return Item(kind="apt", name=repo.id, request=request, resolved=resolved, artifacts=list(arts.values()))


Resolved = tuple[dict[str, Artifact], dict[str, Any]]


async def full_mirror(repo: AptRepo, groups: list[Group], ctx: ResolveContext) -> Resolved:
    """Upstream metadata byte-exact (Release files, the chosen indexes in every compression the
    server has, their by-hash names, English translations) and every .deb they list."""
    arts: dict[str, Artifact] = {}
    for g in groups:
        top = f"{PREFIX}{repo.id}/{g.tree}"
        for suite, meta in g.suites.items():
            folder = release_dir(suite)
            for name, data in meta.files.items():
                art = Artifact(path=f"{top}{folder}{name}", source=f"{g.url}{folder}{name}", digest=ctx.keep(data),
                               size=len(data), media_type="text/plain")  # fmt: skip
                add(arts, art, repo.id)
            wanted: list[IndexRef] = []
            for index in [i for i in g.indexes if i.suite == suite]:
                wanted += packages_indexes(meta.release, index.component, index.arch)
            for comp in repo.components:
                for c in COMPRESSIONS:
                    path = f"{comp}/i18n/Translation-en{c}"
                    if path in meta.release.sha256:
                        sha, size = meta.release.sha256[path]
                        by_hash = f"{comp}/i18n/by-hash/SHA256/{sha}" if meta.release.acquire_by_hash else None
                        wanted.append(IndexRef(path, sha, size, by_hash))
            fetched = {i.ref.path: i.raw for i in g.indexes if i.suite == suite}
            for ref in {r.path: r for r in wanted}.values():
                digest = f"sha256:{ref.sha256}"
                if ref.path in fetched:
                    digest = ctx.keep(fetched[ref.path])
                elif not await exists(ctx, f"{g.url}{folder}{ref.path}"):
                    continue  # listed but not served (Debian lists the uncompressed Packages)
                for path in [p for p in (ref.path, ref.by_hash) if p]:
                    add(arts, Artifact(path=f"{top}{folder}{path}", source=f"{g.url}{folder}{ref.path}",
                                       digest=digest, size=ref.size), repo.id)  # fmt: skip
        seen: set[bytes] = set()
        for index in g.indexes:
            if index.raw in seen:
                continue
            seen.add(index.raw)
            for rec in parse_packages(index.data, f"{repo.id}: {index.ref.path}"):
                add(arts, deb_artifact(repo, g.url, g.tree, rec), repo.id)
    trees = {g.tree: g.archs for g in groups}
    debs = sum(1 for a in arts.values() if a.media_type == DEB_TYPE)
    return arts, {"trees": trees, "debs": debs}


async def exists(ctx: ResolveContext, url: str) -> bool:
    try:
        await ctx.downloader.head_size(url)
        return True
    except HTTPStatusError as exc:
        if exc.status in (403, 404, 410):
            return False
        raise


def subset(repo: AptRepo, groups: list[Group], ctx: ResolveContext) -> Resolved:
    """The closure per architecture (apt's own solver, isolated), the chosen stanzas kept byte-exact
    in the lock for ``publish`` to write the new, signed indexes from."""
    arts: dict[str, Artifact] = {}
    indexes: dict[str, list[str]] = {}
    names: set[str] = set()
    for g in groups:
        for arch in g.archs:
            mine = [i for i in g.indexes if i.arch == arch]
            for i in mine:
                indexes.setdefault(f"{i.suite}|{i.component or ''}|{arch}", [])
            chosen = resolve_closure([i.data for i in mine], repo.packages, arch, base=repo.base,
                                     recommends=repo.recommends, workdir=ctx.scratch, what=repo.id)  # fmt: skip
            for c in chosen:
                rec, i = c.record, mine[c.index]
                add(arts, deb_artifact(repo, g.url, "", rec), repo.id)
                try:
                    stanza = rec.raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise AptError(f"{repo.id}: the Packages stanza of {rec.package} is not UTF-8") from exc
                indexes[f"{i.suite}|{i.component or ''}|{arch}"].append(stanza)
                names.add(f"{rec.package}_{rec.version}_{rec.architecture}")
    return arts, {"indexes": {k: sorted(v) for k, v in sorted(indexes.items())}, "packages": sorted(names)}

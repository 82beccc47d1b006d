"""The connected side: manifest → resolve → fetch into the store → lock → archive."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .archive import PackResult, lock_path_beside, pack
from .auth import Auth
from .errors import DiskFull, EnvironmentProblem, Failure, describe
from .fetch import Downloader, FetchJob
from .kinds import KINDS, ResolveContext
from .lock import GENERATED, Artifact, Item, Lock, share_fields_set
from .manifest import Manifest
from .progress import NullProgress, Progress
from .scratch import check_scratch
from .store import Store, atomic_write, check_space, lock_file, unlock_file

if TYPE_CHECKING:  # the bootstrap kind (and the Python kind under it) is loaded only when used
    from .kinds.bootstrap import BootstrapOptions


def _default_auth() -> Auth:
    from .auth import RegistryAuth

    return RegistryAuth()


@dataclass
class BuildOptions:
    store: Path
    out: Path | None = None
    concurrency: int = 8
    retries: int = 5
    split_size: int | None = None
    since: Lock | None = None
    compress: str | None = None
    progress: Progress = field(default_factory=NullProgress)
    strict_platforms: bool = False  # a requested platform an image lacks fails the build
    auth: Auth | None = field(default_factory=_default_auth)
    upstreams: dict[str, str] = field(default_factory=dict)  # --upstream HOST=URL (over the manifest's)
    sign_key: Path | None = None  # --sign: ed25519 private key (signing.py)
    # gapcache itself for the offline host (kinds/bootstrap): off in the library, on in `gapcache build`
    bootstrap: BootstrapOptions | None = None


@dataclass
class BuildResult:
    items: list[Item]
    failures: list[Failure]
    lock: Lock | None = None
    packed: PackResult | None = None
    transferred: int = 0
    lock_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    signer: str | None = None  # the signing key's fingerprint (--sign)

    @property
    def ok(self) -> bool:
        return not self.failures


async def resolve(
    manifest: Manifest, downloader: Downloader, *, probe_sizes: bool = False, bootstrap: BootstrapOptions | None = None
) -> tuple[list[Item], list[Failure], dict[str, bytes]]:
    """Every kind resolves its own section; an item that cannot be resolved is reported, not fatal.
    The bootstrap kind's "section" is ``bootstrap`` (build options, not the manifest).

    Returns the items, the failures and the metadata the kinds kept (by digest): nothing is written
    into the store here, so a plan leaves it untouched.
    """
    check_scratch("resolve")
    with tempfile.TemporaryDirectory(prefix="gapcache-resolve-") as scratch:
        ctx = ResolveContext(downloader=downloader, scratch=Path(scratch), probe_sizes=probe_sizes)
        items: list[Item] = []
        for kind in KINDS.values():
            section = bootstrap if kind.name == "bootstrap" else manifest.section(kind.name)
            items += await kind.resolve(section, ctx)
    return items, ctx.failures, ctx.kept


async def plan(manifest: Manifest, opts: BuildOptions) -> BuildResult:
    """Resolve (metadata only, sizes probed with HEAD) without downloading any content."""
    store = Store(opts.store)
    async with Downloader(
        store,
        concurrency=opts.concurrency,
        retries=opts.retries,
        auth=opts.auth,
        read_only=True,
        upstreams={**manifest.upstreams, **opts.upstreams},
    ) as dl:
        items, failures, _ = await resolve(manifest, dl, probe_sizes=True, bootstrap=opts.bootstrap)
    lacking = missing_platforms(items)
    if opts.strict_platforms:
        failures += lacking
    return BuildResult(items=items, failures=failures, warnings=[f"{f.item}: {f.reason}" for f in lacking])


async def build(manifest: Manifest | None, opts: BuildOptions, locked: Lock | None = None) -> BuildResult:
    """Resolve (or take ``locked``), fetch every artifact, and pack the archive if all succeeded."""
    store = Store(opts.store)
    signer = None
    if opts.sign_key is not None:  # cryptography is loaded only to sign; a bad key fails before fetching
        from .signing import load_private_key

        signer = load_private_key(opts.sign_key)
    store.ensure()
    async with Downloader(
        store,
        concurrency=opts.concurrency,
        retries=opts.retries,
        progress=opts.progress,
        auth=opts.auth,
        upstreams={**(manifest.upstreams if manifest else {}), **opts.upstreams},
    ) as dl:
        if locked is not None:
            items, failures = list(locked.items), list[Failure]()
            from .kinds.rpm import register_locked_tls

            register_locked_tls(items, dl.client_tls)  # the entitlement certificates the lock names
        else:
            assert manifest is not None
            items, failures, kept = await resolve(manifest, dl, bootstrap=opts.bootstrap)
            for data in kept.values():
                store.put_bytes(data)
        missing = {
            (a.digest or a.source): a.size or 0
            for i in items
            for a in i.artifacts
            if a.source != GENERATED and not (a.digest and store.has(a.digest, a.size))
        }
        needed = sum(missing.values())
        del missing  # 100,000 entries: not kept through the build
        check_space(opts.store, needed)
        opts.progress.begin("fetch", sum(len(i.artifacts) for i in items), needed or None)
        try:
            fetched, fetch_failures, transferred = await _fetch_all(dl, items)
        except DiskFull:
            _drop_unowned_partials(store)
            raise
        finally:
            opts.progress.end()
            await asyncio.to_thread(store.sync)  # what was fetched is durable before anything refers to it
    publish_failures: list[Failure] = []
    published: list[Item] = []
    check_scratch("publish")  # createrepo_c, apt indexes, GnuPG homes work there
    for kind in KINDS.values():
        mine = [i for i in fetched if i.kind == kind.name]
        try:
            published += kind.publish(mine, store)
        except EnvironmentProblem:
            raise
        except Exception as exc:
            publish_failures.append(Failure(f"{kind.name} (generated metadata)", describe(exc)))
    if locked is not None:
        publish_failures += generated_drift(locked, published)
    fetched = published
    result = BuildResult(items=fetched, failures=failures + fetch_failures + publish_failures, transferred=transferred)
    result.warnings = name_collisions(fetched) + [f"{f.item}: {f.reason}" for f in missing_platforms(fetched)]
    if opts.strict_platforms:
        result.failures += missing_platforms(fetched)
    if not result.ok or opts.out is None:
        return result
    lock = locked if locked is not None else Lock.build(fetched)
    result.lock = lock
    signature = None
    if signer is not None:
        from .signing import fingerprint, sig_path, sign

        signature = sign(signer, lock.to_bytes())
    result.packed = pack(
        lock,
        store,
        opts.out,
        split_size=opts.split_size,
        since=opts.since,
        compress=opts.compress,
        progress=opts.progress,
        signature=signature,
    )
    result.lock_path = lock_path_beside(opts.out)
    atomic_write(result.lock_path, result.packed.lock_bytes)
    if signer is not None and signature is not None:
        result.signer = fingerprint(signer.public_key())
        atomic_write(sig_path(result.lock_path), signature)
        if result.packed.toc is not None:
            atomic_write(sig_path(result.packed.toc), sign(signer, result.packed.toc.read_bytes()))
    return result


def _drop_unowned_partials(store: Store) -> None:
    """After a full disk: remove the partial downloads no process is writing (this build's, cancelled,
    and leftovers of killed ones) — never those another build sharing the store holds locked."""
    names = {p.name.removesuffix(".lock").removesuffix(".validator") for p in store.tmp.glob("partial-*")}
    for partial in (store.tmp / n for n in sorted(names)):
        lock = partial.with_name(partial.name + ".lock")
        fd = lock_file(lock)
        if fd is None:
            continue  # another build is writing it
        try:
            partial.unlink(missing_ok=True)
            partial.with_name(partial.name + ".validator").unlink(missing_ok=True)
        finally:
            unlock_file(lock, fd)


def generated_drift(locked: Lock, items: list[Item]) -> list[Failure]:
    """``build --locked``: bytes gapcache generates again (subset repodata, metadata files) must be
    the ones the lock pins; if not, say which and why it can happen, instead of "not in the store"."""
    pinned = {a.path: a.digest for i in locked.items for a in i.artifacts if a.source == GENERATED}
    out = []
    for item in items:
        for a in item.artifacts:
            if a.source == GENERATED and a.path in pinned and pinned[a.path] != a.digest:
                why = (
                    f"generated {a.path} is {a.digest}, the lock pins {pinned[a.path]} "
                    "(another site key or tool version?); rebuild without --locked"
                )
                out.append(Failure(f"{item.kind} {item.name}", why))
    return out


def missing_platforms(items: list[Item]) -> list[Failure]:
    """Images that lack a requested platform (an amd64-only image asked for amd64 and arm64)."""
    return [
        Failure(f"image {i.name}", f"no {', '.join(i.resolved['missing_platforms'])} variant (requested)")
        for i in items
        if i.kind == "image" and i.resolved.get("missing_platforms")
    ]


def name_collisions(items: list[Item]) -> list[str]:
    """Images whose prefix-less name is claimed by two upstreams: only full names will be served."""
    by_short: dict[str, set[str]] = {}
    for i in items:
        if i.kind == "image":
            full = str(i.resolved["name"])
            by_short.setdefault(full.split("/", 1)[1], set()).add(full)
    return [
        f"image name {short!r} exists on several upstreams ({', '.join(sorted(fulls))}): the mirror serves "
        "only the full names for it"
        for short, fulls in sorted(by_short.items())
        if len(fulls) > 1
    ]


M = TypeVar("M", Artifact, Item)


def _copy(model: M, **update: object) -> M:
    """``model_copy`` sharing the copy's set of field names (lock.share_fields_set: ~230 bytes each)."""
    copied = model.model_copy(update=update)
    share_fields_set(copied)
    return copied


def _accept(media_type: str) -> str | None:
    return media_type if media_type.endswith("+json") else None


async def _fetch_all(dl: Downloader, items: list[Item]) -> tuple[list[Item], list[Failure], int]:
    """Fetch every artifact of ``items``; returns the fetched items (in order), the failures and the
    bytes transferred.

    A bounded pool of workers takes the items from one shared iterator (the downloader's own limit
    still bounds the transfers): no task, job or result is kept per item (100,000 files), and each
    item is replaced in ``items`` by its fetched copy (the same object when nothing changed)."""
    transferred = 0
    failed: dict[int, Failure] = {}
    todo = iter(enumerate(items))

    async def one(item: Item) -> Item:
        nonlocal transferred
        arts: list[Artifact] = []
        # an item's artifacts (a repository's 1,000 packages, an image's layers) are fetched together,
        # up to the downloader's concurrency; a JSON document type (OCI/Docker manifests and indexes) is
        # asked for by its media type: a registry answers a manifest request by Accept
        jobs = [
            FetchJob(
                a.source,
                a.digest,
                a.size,
                label=a.path,
                accept=a.media_type if a.media_type.endswith("+json") else None,
            )
            for a in item.artifacts
            if a.source != GENERATED
        ]
        done = iter(await dl.fetch_many(jobs))
        del jobs
        for art in item.artifacts:
            if art.source == GENERATED:  # produced by the kind's publish step, not downloaded
                arts.append(art)
                continue
            res = next(done)
            transferred += res.transferred
            same = res.digest == art.digest and res.size == art.size
            arts.append(art if same else _copy(art, digest=res.digest, size=res.size))
        if all(a is b for a, b in zip(arts, item.artifacts, strict=True)):
            return item
        return _copy(item, artifacts=arts)

    async def worker() -> None:
        for n, item in todo:
            try:
                items[n] = await one(item)
            except EnvironmentProblem:
                raise
            except Exception as exc:
                failed[n] = Failure(f"{item.kind} {item.name}", describe(exc))

    workers = [asyncio.ensure_future(worker()) for _ in range(min(len(items), max(4 * dl.concurrency, 32)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for t in workers:
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*workers, return_exceptions=True)
        raise
    ok = [item for n, item in enumerate(items) if n not in failed]
    return ok, [failed[n] for n in sorted(failed)], transferred

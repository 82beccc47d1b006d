"""``gapcache push --to REGISTRY[/PREFIX]``: copy every image of an archive or a loaded root into an
existing registry (Harbor, Quay, distribution…), digests preserved.

Blobs the target already has (HEAD) are skipped; a blob already pushed to another repository in
this run is cross-mounted (``?mount=&from=``); the rest is uploaded monolithically (POST, then
PUT with ``?digest=``). Child manifests go before their index, each PUT by digest with its exact
bytes and media type; tags last. Authentication: the same :class:`RegistryAuth` as build.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp

from .auth import RegistryAuth, answer_401
from .blobs import BlobIndex, BlobLoc
from .errors import GapcacheError, HTTPStatusError, UsageError
from .lock import Item, Lock
from .names import REPO_RE
from .progress import NullProgress, Progress
from .store import read_range


@dataclass
class PushResult:
    images: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    manifests: int = 0
    failures: list[str] = field(default_factory=list)


def parse_target(target: str) -> tuple[str, str]:
    """``harbor.example.com/mirror`` → (host, "mirror")."""
    host, _, prefix = target.strip("/").partition("/")
    if not host or (prefix and not REPO_RE.match(prefix)):
        raise UsageError(f"--to {target!r}: expected REGISTRY[/PREFIX], e.g. harbor.local:443/mirror")
    return host, prefix


async def _chunks(loc: BlobLoc, progress: Progress, key: str) -> AsyncIterator[bytes]:
    chunks = read_range(loc.path, loc.offset, loc.size, what=f"blob {loc.digest}")
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        progress.advance(key, len(chunk))
        yield chunk


class Pusher:
    def __init__(
        self, target: str, blobs: BlobIndex, *, insecure: bool, auth: RegistryAuth, progress: Progress, jobs: int = 4
    ) -> None:
        host, self.prefix = parse_target(target)
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.blobs = blobs
        self.auth = auth
        self.progress = progress
        self.result = PushResult()
        self.pushed_to: dict[str, str] = {}  # digest -> a repository that has it now
        self.sem = asyncio.Semaphore(jobs)
        self.session: aiohttp.ClientSession

    def repo(self, item: Item) -> str:
        name = str(item.resolved["name"])
        return f"{self.prefix}/{name}" if self.prefix else name

    async def request(
        self, method: str, url: str, *, body: Callable[[], Any] | None = None, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """One request with registry auth: answer a 401 challenge once, then retry. ``body`` makes
        the request body afresh for each attempt (a streamed upload cannot be sent twice)."""
        for attempt in (False, True):
            resp = await self.session.request(
                method,
                url,
                headers={**(headers or {}), **self.auth.headers(url)},
                allow_redirects=False,
                data=body() if body is not None else None,
            )
            if resp.status != 401 or attempt:
                return resp
            resp.release()
            await answer_401(self.auth, url, resp.headers, self.session, "for the target registry")
        raise AssertionError("unreachable")

    async def push_blob(self, repo: str, loc: BlobLoc) -> None:
        url = f"{self.base}/v2/{repo}/blobs/{loc.digest}"
        async with self.sem:
            resp = await self.request("HEAD", url)
            resp.release()
            if resp.status == 200:
                self.result.blobs_skipped += 1
                self.pushed_to.setdefault(loc.digest, repo)
                return
            start = f"{self.base}/v2/{repo}/blobs/uploads/"
            source = self.pushed_to.get(loc.digest)
            if source and source != repo:
                resp = await self.request("POST", start + "?" + urlencode({"mount": loc.digest, "from": source}))
                resp.release()
                if resp.status == 201:
                    self.result.blobs_mounted += 1
                    return
            else:
                resp = await self.request("POST", start)
                resp.release()
            if resp.status != 202 or "Location" not in resp.headers:
                raise HTTPStatusError(start, resp.status, "cannot start an upload")
            location = urljoin(self.base, resp.headers["Location"])
            sep = "&" if "?" in location else "?"
            await self.blobs.open(loc)  # verified before a byte leaves: a corrupt blob is never pushed
            self.progress.start(loc.digest, f"{repo}@{loc.digest[:19]}", loc.size)
            resp = await self.request(
                "PUT",
                f"{location}{sep}digest={loc.digest}",
                body=lambda: _chunks(loc, self.progress, loc.digest),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(loc.size)},
            )
            resp.release()
            self.progress.finish(loc.digest, resp.status == 201)
            if resp.status != 201:
                raise HTTPStatusError(location, resp.status, f"upload of {loc.digest} refused")
            self.result.blobs_uploaded += 1
            self.result.bytes_uploaded += loc.size
            self.pushed_to[loc.digest] = repo

    async def put_manifest(self, repo: str, ref: str, loc: BlobLoc, media_type: str) -> None:
        body = await self.blobs.open(loc)  # verified
        if body is None:  # larger than the in-memory cache keeps
            body = b"".join(read_range(loc.path, loc.offset, loc.size, what=f"manifest {loc.digest}"))
        url = f"{self.base}/v2/{repo}/manifests/{ref}"
        resp = await self.request("PUT", url, body=lambda: body, headers={"Content-Type": media_type})
        resp.release()
        if resp.status not in (200, 201):
            raise HTTPStatusError(url, resp.status, "manifest refused")
        self.result.manifests += 1

    async def push_image(self, item: Item) -> None:
        repo = self.repo(item)
        top = str(item.resolved["digest"])
        arts = item.artifacts
        await asyncio.gather(*(self.push_blob(repo, self._loc(a.digest)) for a in arts if "/blobs/" in a.path))
        manifests = [a for a in arts if "/manifests/" in a.path]
        for a in manifests:  # children first: an index may only refer to manifests that exist
            if a.digest != top:
                await self.put_manifest(repo, str(a.digest), self._loc(a.digest), a.media_type)
        top_art = next(a for a in manifests if a.digest == top)
        await self.put_manifest(repo, top, self._loc(top), top_art.media_type)
        if "tag" in item.resolved:
            await self.put_manifest(repo, str(item.resolved["tag"]), self._loc(top), top_art.media_type)
        self.result.images += 1

    def _loc(self, digest: str | None) -> BlobLoc:
        loc = self.blobs.get(digest)
        if loc is None:
            raise GapcacheError(f"blob {digest} is not in the source")
        return loc

    async def run(self, lock: Lock) -> PushResult:
        images = [i for i in lock.items if i.kind == "image"]
        self.progress.begin("push", len(images), None)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=30, sock_read=300)) as session:
            self.session = session
            for item in images:
                try:
                    await self.push_image(item)
                except (GapcacheError, aiohttp.ClientError, OSError) as exc:
                    self.result.failures.append(f"{item.name}: {exc}")
        self.progress.end()
        return self.result


async def push(
    lock: Lock,
    blobs: BlobIndex,
    target: str,
    *,
    insecure: bool = False,
    auth: RegistryAuth | None = None,
    progress: Progress | None = None,
) -> PushResult:
    pusher = Pusher(target, blobs, insecure=insecure, auth=auth or RegistryAuth(), progress=progress or NullProgress())
    return await pusher.run(lock)

"""The one downloader. Nothing else in gapcache opens a connection to an upstream.

- parallel (``concurrency`` transfers at once, within one item too: :meth:`Downloader.fetch_many`), one
  aiohttp session with pooled connections, ``trust_env`` (proxies, ~/.netrc) only when there are any;
- retries with exponential backoff, only for transient failures: connection errors and resets,
  timeouts, a body cut short, 5xx, 408, and 429 (honouring ``Retry-After``);
- resume: bytes already received sit in ``tmp/partial-<key>``; the next attempt (in this run or
  after a crash) asks for the rest with ``Range`` and continues the hash where it stopped;
- builds sharing a store: ``partial-<key>`` is written only under a ``flock`` on ``partial-<key>.lock`` (gone
  on kill -9); another build waits for it (a pinned blob ≤ 256 KiB no build holds: a private file, no lock);
- every byte hashed while streaming; a blob enters the store only if its sha256 matched;
- a blob already in the store is never downloaded again; for URLs without a pinned digest the
  last ETag/Last-Modified is kept so a re-run asks with ``If-None-Match``/``If-Modified-Since``;
- credentials through one hook (:class:`Auth`): headers for a URL, and a chance to answer a 401
  challenge (registries' bearer tokens) before the request is tried again;
- client TLS per URL prefix (:class:`~gapcache.clienttls.ClientTls`, ``client_tls``): a client
  certificate and CA for every request under a registered prefix; a refused certificate fails at once.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

import aiohttp

from .auth import Auth, answer_401
from .clienttls import ClientTls
from .errors import DigestMismatch, DiskFull, FetchError, HTTPStatusError
from .fileurl import read_if_file
from .httpmeta import content_range_start, describe_error, env_matters, one_read, parse_retry_after, validator_of
from .progress import NullProgress, Progress
from .sources import SourceJournal
from .store import CHUNK, Store, check_space, hash_chunks, lock_file, read_range, try_lock, unlock_file
from .upstreams import rewriter

T = TypeVar("T")
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class FetchJob:
    url: str
    digest: str | None = None
    size: int | None = None
    label: str = ""
    accept: str | None = None  # e.g. an OCI manifest's media type: registries answer by Accept


@dataclass(frozen=True)
class FetchResult:
    digest: str
    size: int
    transferred: int


class _Transient(Exception):
    def __init__(
        self, reason: str, *, progressed: bool = False, retry_after: float | None = None, got: int = 0
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.progressed = progressed
        self.retry_after = retry_after
        self.got = got


class _Mismatch(Exception):
    def __init__(self, actual: str, resumed: bool) -> None:
        super().__init__(actual)
        self.actual = actual
        self.resumed = resumed


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


class Downloader:
    def __init__(
        self,
        store: Store,
        *,
        concurrency: int = 8,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 300.0,
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        progress: Progress | None = None,
        auth: Auth | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        read_only: bool = False,
        lock_wait: float = 3600.0,
        upstreams: Mapping[str, str] | None = None,
        client_tls: ClientTls | None = None,
    ) -> None:
        self.store = store
        self.client_tls = client_tls if client_tls is not None else ClientTls()  # kinds may add prefixes
        self._url = rewriter(upstreams)  # DESIGN "Upstreams": where a request goes; names and auth keep the URL
        self.read_only = read_only  # metadata only (a plan): nothing is written into the store
        self.lock_wait = lock_wait  # how long to wait for another build's download of the same blob
        self.concurrency = concurrency
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.max_retry_after = max_retry_after
        self.timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout)
        self.progress: Progress = progress or NullProgress()
        self.auth, self.sleep = auth, sleep
        self._sem = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[str, asyncio.Future[FetchResult]] = {}
        self._shown, self._challenged = dict[str, int](), dict[str, int]()  # bytes shown per label; 401s per URL

    async def __aenter__(self) -> Downloader:
        connector = aiohttp.TCPConnector(limit=self.concurrency * 2, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            trust_env=env_matters(),  # proxies and ~/.netrc on the connected side (when there are any)
            auto_decompress=False,  # bytes are hashed exactly as the upstream stores them
            headers={"User-Agent": "gapcache", "Accept-Encoding": "identity"},
        )
        if not self.read_only:
            self.store.ensure()
            self.store.remove_stale_temps()
        self._sources = SourceJournal(self.store.root / "sources.jsonl", read_only=self.read_only)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._sources.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Downloader used outside 'async with'")
        return self._session

    def _headers(self, url: str) -> dict[str, str]:
        return dict(self.auth.headers(url)) if self.auth is not None else {}

    async def _answer_401(self, url: str, resp: aiohttp.ClientResponse, tried: bool) -> None:
        """On a 401: let the auth hook answer the challenge (once), else fail with the 401."""
        if tried:
            raise HTTPStatusError(url, 401, "unauthorized (check credentials)")
        await answer_401(self.auth, url, resp.headers, self.session)
        raise _Transient("authenticated; retrying", progressed=True, retry_after=0)

    # ---- public API -------------------------------------------------------------------------

    async def fetch(self, job: FetchJob) -> FetchResult:
        """Make the blob ``job`` describes present in the store; returns its digest and size.

        Two jobs for the same blob at once share one transfer.
        """
        key = job.digest or job.url
        if job.digest and self.store.has(job.digest, job.size):
            return FetchResult(job.digest, self.store.path(job.digest).stat().st_size, 0)
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing)
        fut: asyncio.Future[FetchResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            async with self._sem:
                result = await self._fetch(job)
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def fetch_many(self, jobs: Sequence[FetchJob]) -> list[FetchResult]:
        """:meth:`fetch` every job (one item's artifacts), up to ``concurrency`` at once; results in the
        jobs' order. The first failure cancels the rest and is raised."""
        if len(jobs) < 2:  # one file of a files manifest: no worker task
            return [await self.fetch(job) for job in jobs]
        results: list[FetchResult | None] = [None] * len(jobs)
        todo = iter(enumerate(jobs))

        async def worker() -> None:
            for i, job in todo:  # one shared iterator: no task per job (100,000 packages, bounded memory)
                results[i] = await self.fetch(job)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, len(jobs)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return [r for r in results if r is not None]

    async def head_size(self, url: str) -> int | None:
        """Size of ``url`` from a HEAD request (None when the upstream does not say)."""
        if urlsplit(self._url(url)).scheme == "file":
            return os.stat(url2pathname(urlsplit(self._url(url)).path)).st_size  # a str: no interned Path parts

        async def once() -> int | None:
            hdrs, ssl = self._headers(url), self.client_tls.context(url)
            async with self.session.head(self._url(url), headers=hdrs, allow_redirects=True, ssl=ssl) as resp:
                self._raise_for_status(url, resp)
                return resp.content_length

        return await self._retrying(url, once)

    async def get_bytes(self, url: str, *, max_size: int = 256 << 20) -> bytes:
        """Small metadata for resolvers (index files, manifests), with the same retry rules."""
        return (await self.get(url, max_size=max_size))[0]

    async def get(
        self, url: str, headers: Mapping[str, str] | None = None, *, max_size: int = 256 << 20
    ) -> tuple[bytes, dict[str, str]]:
        """GET small metadata: the body and the response headers (auth and retries; file:// read)."""
        challenged = False

        async def once() -> tuple[bytes, dict[str, str]]:
            nonlocal challenged
            hdrs, ssl = {**self._headers(url), **(headers or {})}, self.client_tls.context(url)
            async with self.session.get(self._url(url), headers=hdrs, ssl=ssl) as resp:
                if resp.status == 401:
                    was, challenged = challenged, True
                    await self._answer_401(url, resp, was)
                self._raise_for_status(url, resp)
                body = bytearray()
                async for chunk in resp.content.iter_chunked(READ_CHUNK):
                    body += chunk
                    if len(body) > max_size:
                        raise FetchError(url, f"response larger than {max_size} bytes")
                return bytes(body), dict(resp.headers)

        return await (read_if_file(url, self._url(url), max_size) or self._retrying(url, once))

    # ---- machinery --------------------------------------------------------------------------

    def _raise_for_status(self, url: str, resp: aiohttp.ClientResponse) -> None:
        if resp.status in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {resp.status}", retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if resp.status >= 400:
            raise HTTPStatusError(url, resp.status, resp.reason or "")

    async def _retrying(self, url: str, once: Callable[[], Awaitable[T]]) -> T:
        failures = 0
        while True:
            try:
                return await once()
            except _Transient as exc:
                if not exc.progressed:
                    failures += 1
                await self._wait(url, max(failures, 1), exc)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                if (fatal := self.client_tls.fatal(url, exc)) is not None:
                    raise fatal from exc
                failures += 1
                await self._wait(url, failures, _Transient(describe_error(exc)))
            except aiohttp.InvalidURL as exc:
                raise FetchError(url, "invalid URL") from exc
            except aiohttp.ClientError as exc:  # e.g. a response that is not HTTP
                raise FetchError(url, describe_error(exc)) from exc

    async def _wait(self, url: str, failures: int, exc: _Transient) -> None:
        if failures > self.retries:
            raise FetchError(url, f"{exc.reason} (gave up after {self.retries} retries)")
        if exc.retry_after is not None:
            delay = min(exc.retry_after, self.max_retry_after)
        else:
            delay = min(self.backoff * 2 ** (failures - 1), self.max_backoff)
            delay *= 0.75 + random.random() / 2  # jitter: 8 parallel retries do not stampede
        await self.sleep(delay)

    async def _fetch(self, job: FetchJob) -> FetchResult:
        label = job.label or job.url
        self.progress.start(label, label, job.size)
        try:
            if urlsplit(self._url(job.url)).scheme == "file":
                result = await asyncio.to_thread(self._copy_local, job)
                self.progress.advance(label, result.transferred)
            else:
                result = await self._download(job, label)
        except BaseException as exc:
            self.progress.finish(label, False, str(exc))
            raise
        finally:
            self._shown.pop(label, None)
        self.progress.finish(label, True)
        return result

    def _copy_local(self, job: FetchJob) -> FetchResult:
        src = url2pathname(urlsplit(self._url(job.url)).path)  # a str: a Path would intern every name (100,000 files)
        fd, name = tempfile.mkstemp(dir=self.store.tmp, prefix=f"local-{os.getpid()}-")
        tmp = Path(name)
        try:
            try_lock(fd)
            with os.fdopen(fd, "wb") as fout:
                digest = hash_chunks(read_range(src), fout.write)
            if job.digest and digest != job.digest:
                raise DigestMismatch(job.url, job.digest, digest)
            size = tmp.stat().st_size
            self.store.commit(tmp, digest, durable=False)
            return FetchResult(digest, size, size)
        except FileNotFoundError as exc:
            raise FetchError(job.url, "no such file") from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(str(self.store.root)) from exc
            raise FetchError(job.url, exc.strerror or str(exc)) from exc
        finally:
            tmp.unlink(missing_ok=True)

    async def _download(self, job: FetchJob, label: str) -> FetchResult:
        partial = self.store.tmp / f"partial-{_key(job.url, job.digest or '')}"
        lock, delay, waited = partial.with_name(partial.name + ".lock"), 0.02, False
        if job.digest and (job.size or READ_CHUNK + 1) <= READ_CHUNK and not lock.exists():  # pinned, one read,
            # no build at it: no lock file (2 of its 4 file-system operations); two starting at once each fetch it
            return await self._download_locked(job, label, partial.with_name(f"local-{os.getpid()}-{partial.name[8:]}"))
        give_up = time.monotonic() + self.lock_wait
        while (fd := lock_file(lock)) is None:  # another build sharing the store is fetching it
            waited = True
            if job.digest and self.store.has(job.digest, job.size):
                break
            if time.monotonic() > give_up:  # that build is stuck: do not wait for ever
                raise FetchError(job.url, f"another build has held {lock} for {self.lock_wait:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        try:
            if job.digest and self.store.has(job.digest, job.size):  # it was fetched meanwhile
                return FetchResult(job.digest, self.store.path(job.digest).stat().st_size, 0)
            if waited and job.digest is None:
                self._sources.refresh(job.url)  # its validators: a 304 instead of a second download
            return await self._download_locked(job, label, partial)
        finally:
            if fd is not None:
                unlock_file(lock, fd)

    async def _download_locked(self, job: FetchJob, label: str, partial: Path) -> FetchResult:
        fruitless, total_attempts, restarted, transferred = 0, 0, False, 0  # fruitless: in a row, nothing received
        while True:
            total_attempts += 1
            try:
                result, got = await self._attempt(job, label, partial)
                return FetchResult(result.digest, result.size, transferred + got)
            except _Mismatch as exc:
                _drop_partial(partial)
                if exc.resumed and not restarted:
                    restarted = True  # the partial may have come from another version: start over once
                    continue
                assert job.digest is not None
                raise DigestMismatch(job.url, job.digest, exc.actual) from None
            except _Transient as exc:
                transferred += exc.got
                fruitless = 0 if exc.progressed else fruitless + 1
                if total_attempts > 10 * (self.retries + 1):
                    raise FetchError(job.url, f"{exc.reason} (gave up after {total_attempts} attempts)") from None
                await self._wait(job.url, max(fruitless, 1), exc)
            except OSError as exc:
                _drop_partial(partial)
                if exc.errno == errno.ENOSPC:
                    raise DiskFull(str(self.store.root)) from exc
                raise

    async def _attempt(self, job: FetchJob, label: str, partial: Path) -> tuple[FetchResult, int]:
        challenged = self._challenged.get(job.url, 0) >= 3  # tokens expire: a few fresh ones per URL
        h = hashlib.sha256()
        had_partial = partial.exists()
        offset = partial.stat().st_size if had_partial else 0
        validator_file = partial.with_name(partial.name + ".validator")
        validator = validator_file.read_text() if offset and validator_file.exists() else None
        if offset and job.digest is None and not validator:
            # nothing proves the rest of an unpinned URL belongs to these bytes: start over
            _drop_partial(partial)
            offset = 0
        if offset:
            await asyncio.to_thread(_hash_into, h, partial)
        headers = self._headers(job.url)
        if job.accept:
            headers["Accept"] = job.accept
        cached = self._sources.get(job.url) if job.digest is None and not offset else None
        if cached and self.store.has(cached["digest"], cached["size"]):
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
        else:
            cached = None
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:  # the rest only if the resource is still the one we started (else a 200)
                headers["If-Range"] = validator
        got, ssl = 0, self.client_tls.context(job.url)
        try:
            async with self.session.get(self._url(job.url), headers=headers, ssl=ssl) as resp:
                if resp.status == 401:
                    self._challenged[job.url] = self._challenged.get(job.url, 0) + 1
                    await self._answer_401(job.url, resp, challenged)
                if resp.status == 304 and cached is not None:
                    return FetchResult(cached["digest"], cached["size"], 0), 0
                if resp.status == 416 and offset:
                    if job.size is not None and offset == job.size:
                        return await self._complete(job, partial, h, offset, resp), 0
                    _drop_partial(partial)
                    raise _Transient("server refused the resume range; starting over", progressed=True)
                self._raise_for_status(job.url, resp)
                if resp.status == 206 and offset:
                    start = content_range_start(resp.headers.get("Content-Range"))
                    if start != offset:
                        _drop_partial(partial)
                        raise _Transient("unexpected Content-Range; starting over", progressed=True)
                    mode = "ab"
                else:
                    offset, h, mode = 0, hashlib.sha256(), "wb"
                    # a resume after a crash needs it; a body of one read is never resumed (saves 2 file ops)
                    small = one_read(resp.status, resp.content_length, READ_CHUNK)
                    if value := "" if small else validator_of(resp.headers):
                        validator_file.write_text(value)
                    elif had_partial:
                        validator_file.unlink(missing_ok=True)
                # what the display shows for this item always equals the bytes on disk
                self.progress.advance(label, offset - self._shown.get(label, 0))
                self._shown[label] = offset
                limit = job.size
                if resp.content_length is not None and resp.content_length > CHUNK:
                    check_space(self.store.tmp, resp.content_length)  # smaller ones fit in the margin
                with open(partial, mode, buffering=0) as f:  # chunks of up to READ_CHUNK: no buffer
                    async for chunk in resp.content.iter_chunked(READ_CHUNK):
                        f.write(chunk)
                        h.update(chunk)
                        got += len(chunk)
                        self._shown[label] = offset + got
                        self.progress.advance(label, len(chunk))
                        if limit is not None and offset + got > limit:
                            raise FetchError(job.url, f"upstream sent more than the expected {limit} bytes")
                return await self._complete(job, partial, h, offset + got, resp), got
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
            if (fatal := self.client_tls.fatal(job.url, exc)) is not None:
                raise fatal from exc
            raise _Transient(describe_error(exc), progressed=got > 0, got=got) from exc
        except aiohttp.ClientError as exc:  # e.g. a response that is not HTTP
            _drop_partial(partial)
            raise FetchError(job.url, describe_error(exc)) from exc
        except FetchError:
            _drop_partial(partial)
            raise

    async def _complete(
        self,
        job: FetchJob,
        partial: Path,
        h: hashlib._Hash,
        size: int,
        resp: aiohttp.ClientResponse,
    ) -> FetchResult:
        digest = "sha256:" + h.hexdigest()
        if job.digest and digest != job.digest:
            raise _Mismatch(digest, resumed=resp.status in (206, 416))
        on_disk = partial.stat().st_size
        if on_disk != size:  # what was hashed is not what is on disk: never name it by that digest
            _drop_partial(partial)
            raise _Transient(f"{partial.name}: {on_disk} bytes on disk, not {size}; start over", progressed=True)
        if job.size is not None and size != job.size:
            _drop_partial(partial)
            raise FetchError(job.url, f"size mismatch: expected {job.size} bytes, got {size}")
        self.store.commit(partial, digest, durable=False)  # made durable by Store.sync() after the batch
        if not one_read(resp.status, resp.content_length, READ_CHUNK):  # else none was written, nor left
            partial.with_name(partial.name + ".validator").unlink(missing_ok=True)
        if job.digest is None:
            record = {"url": job.url, "digest": digest, "size": size}
            if resp.headers.get("ETag"):
                record["etag"] = resp.headers["ETag"]
            if resp.headers.get("Last-Modified"):
                record["last_modified"] = resp.headers["Last-Modified"]
            self._sources.remember(record)
        return FetchResult(digest, size, size)


def _drop_partial(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    partial.with_name(partial.name + ".validator").unlink(missing_ok=True)


def _hash_into(h: hashlib._Hash, path: Path) -> None:
    for chunk in read_range(path):
        h.update(chunk)

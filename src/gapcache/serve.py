"""The mirror server: one asyncio process (or ``--workers N`` identical ones), read-only.

Each kind answers its protocol's requests on its listener (DESIGN "Serving"):
``registry 5000``, ``repos 8001``, ``charts 8002``, ``pypi 8003``, ``files 8004``.

A blob is located as ``(file, offset, length)`` — a store blob is ``(path, 0, size)``, an archive
member is ``(part, data offset, size)`` — so serving from an archive needs no second code path.
Every blob is hashed against its digest before its first byte is served by a process; small blobs
are then answered from memory, large ones go out with ``sendfile`` (zero copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from .archive import resolve_parts
from .blobs import CHECKS, BlobIndex, Handler, MissLog
from .errors import EnvironmentProblem, GapcacheError, UsageError
from .history import find_lock
from .kinds import KINDS
from .lock import Item, Lock
from .root import Root
from .tls import ca_handler, server_context
from .wire import HEALTH, HEALTH_HEAD, AccessLog, Answers, FastRequestHandler, Prebuilt, Stats, render_metrics

log = logging.getLogger("gapcache.serve")

LISTENERS: dict[str, int] = {"registry": 5000, "repos": 8001, "charts": 8002, "pypi": 8003, "files": 8004}


class Listener:
    """One port: the kinds that serve on it, asked in turn; a request none answers is a 404 and a
    recorded miss. aiohttp's low-level server (no router, no middlewares): every request here is
    GET or HEAD of an immutable thing, and the hot path is short — an answer that depends only on
    the target (a verified small blob, a manifest by tag, an index page) is kept in :attr:`answers`
    and given again straight from the parser (:class:`~gapcache.wire.FastRequestHandler`).
    Every listener answers the health probes (:data:`~gapcache.wire.HEALTH`); ``files`` also
    ``/metrics`` (Prometheus: the counters of every listener in :attr:`peers`)."""

    def __init__(self, name: str, handlers: list[Handler], misses: MissLog) -> None:
        self.name = name
        self.answers = Answers()
        self.stats = Stats()
        self.peers: dict[str, Listener] = {name: self}
        self._handlers = handlers
        self.misses = misses

    @property
    def handlers(self) -> list[Handler]:
        return self._handlers

    @handlers.setter
    def handlers(self, handlers: list[Handler]) -> None:  # a new lock: forget the old answers
        self._handlers = handlers
        self.answers.clear()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path in HEALTH or (request.path == "/metrics" and self.name == "files"):
            if request.method not in ("GET", "HEAD"):
                return web.Response(status=405, headers={"Allow": "GET, HEAD"}, text="read-only mirror\n")
            if request.path in HEALTH:  # kept: probes are then answered from the parser
                self.answers.keep(request, ok := Prebuilt(HEALTH_HEAD, b"ok\n"))
                return ok
            body, ctype = render_metrics({n: p.stats for n, p in self.peers.items()}, CHECKS)
            return web.Response(body=body, headers={"Content-Type": ctype, "Cache-Control": "no-store"})
        handlers = self._handlers  # a new lock may swap them while this request awaits its answer
        for handler in handlers:  # a handler answers its protocol's way, or passes (None)
            resp: web.StreamResponse | None = await handler(request)
            if resp is not None:
                if type(resp) is Prebuilt and self._handlers is handlers:  # never keep an old lock's answer
                    self.answers.keep(request, resp)
                elif resp.status == 404:  # e.g. a registry's MANIFEST_UNKNOWN: still something the site lacks
                    self._miss(request)
                return resp
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"}, text="read-only mirror\n")
        self._miss(request)
        return web.Response(status=404, text="404 not found\n")

    def _miss(self, request: web.BaseRequest) -> None:
        self.stats.misses += 1
        self.misses.record(self.name, request.raw_path, 404, request.remote)


# ---- hostile clients: header timeout, connection cap, bounded log lines ------------------------------


BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n"
    b"Retry-After: 5\r\nConnection: close\r\n\r\nbusy: too many connections\n"
)


def default_max_connections() -> int:
    """Half the descriptors this process may open: a connection streaming a large blob holds two
    (the socket and the file), and the listeners, logs and libraries need a few."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(16, (soft - 64) // 2) if soft != resource.RLIM_INFINITY else 1 << 20


class ConnectionGuard:
    """One per process, shared by its listeners — nginx's ``client_header_timeout`` and
    ``worker_connections``: a connection that has not sent a complete request header within
    ``header_timeout`` of connecting is closed; past ``max_connections`` the oldest connection
    that has not sent a request yet is closed to make room, and if every connection is busy the
    new one gets a quick 503 (``Retry-After``) — so a flood of silent or slow clients never takes
    the last descriptors and normal clients keep being served. (Idle time between requests is
    aiohttp's ``keepalive_timeout``.)"""

    def __init__(self, header_timeout: float, max_connections: int) -> None:
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.open = 0
        self.lingering = 0  # refused connections not closed yet
        self.fresh: OrderedDict[RequestHandler, asyncio.TimerHandle | None] = OrderedDict()  # oldest first
        self._said = 0.0

    def admit(self, handler: RequestHandler, transport: asyncio.Transport) -> bool:
        if self.open >= self.max_connections:
            if self.fresh:
                victim, timer = self.fresh.popitem(last=False)
                if timer is not None:
                    timer.cancel()
                victim.force_close()
                self._say("closing connections that sent no request")
            else:
                self._refuse(handler, transport)
                return False
        self.open += 1
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.header_timeout, self._expire, handler) if self.header_timeout > 0 else None
        self.fresh[handler] = timer
        return True

    def _refuse(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        """503 and FIN at once; the socket is closed a moment later, so that the client reads the
        answer rather than a reset for the request it may be sending (up to a budget of sockets)."""
        transport.write(BUSY)
        handler.close()  # parse nothing from it
        self._say("answering 503")
        loop = asyncio.get_running_loop()
        if self.lingering >= max(16, self.max_connections // 8):  # flooded: no descriptors to spare
            loop.call_soon(handler.force_close)  # once aiohttp has started its side of the connection
            return
        if transport.can_write_eof():
            transport.write_eof()
        self.lingering += 1
        loop.call_later(1.0, self._unlinger, handler)

    def _unlinger(self, handler: RequestHandler) -> None:
        self.lingering -= 1
        handler.force_close()

    def requested(self, handler: RequestHandler) -> None:
        timer = self.fresh.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def closed(self, handler: RequestHandler) -> None:
        self.requested(handler)
        self.open -= 1

    def _expire(self, handler: RequestHandler) -> None:
        if self.fresh.pop(handler, None) is not None:
            handler.force_close()

    def _say(self, what: str) -> None:
        now = time.monotonic()
        if now - self._said > 60:
            self._said = now
            log.warning("%d connections open (--max-connections): %s", self.open, what)


class GuardedServer(web.Server):
    """aiohttp's low-level server, with every connection admitted by a :class:`ConnectionGuard`
    (through the ``connection_made``/``connection_lost`` calls a RequestHandler makes on its server,
    and the documented ``request_factory``, which sees each request start)."""

    def __init__(self, handler: Listener, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(handler, request_factory=self._request, **kwargs)
        self._guard = guard
        self._admitted: set[RequestHandler] = set()
        self._answers = handler.answers
        self._stats = handler.stats

    def __call__(self) -> RequestHandler:
        return FastRequestHandler(
            self,
            answers=self._answers,
            stats=self._stats,
            on_request=self._guard.requested,
            loop=self._loop,
            **self._kwargs,
        )

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if self._guard.admit(handler, transport):
            self._admitted.add(handler)
            super().connection_made(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        if handler in self._admitted:
            self._admitted.discard(handler)
            self._guard.closed(handler)
        super().connection_lost(handler, exc)

    def _request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        self._guard.requested(protocol)
        return web.BaseRequest(message, payload, protocol, writer, task, asyncio.get_running_loop())


# ---- the server ---------------------------------------------------------------------------------------


@dataclass
class ServeConfig:
    root: Path | None = None
    archive: list[Path] = field(default_factory=list)
    bind: str = "0.0.0.0"
    ports: dict[str, int] = field(default_factory=lambda: dict(LISTENERS))
    public_url: str | None = None
    workers: int = 1
    access_log: bool = True
    loop: str = "uvloop"
    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    max_connections: int | None = None  # None: from the fd limit (default_max_connections)
    # site features (cli_site, tls.py, history.py): an older lock of the root, and TLS
    lock: str | None = None  # serve this lock (sha256 prefix or file), not `current` (and do not follow it)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None  # published at /ca.crt on the files listener


@dataclass
class Mirror:
    """Everything a worker needs to answer requests, built once from the lock."""

    lock: Lock
    blobs: BlobIndex
    misses: MissLog
    public_url: str | None
    listeners: dict[str, Listener]


def open_source(config: ServeConfig) -> tuple[Lock, BlobIndex, Path | None]:
    if config.archive:
        blobs, lock = BlobIndex.from_archive(resolve_parts(config.archive))
        return lock, blobs, None
    assert config.root is not None
    root = Root(config.root)
    lock = find_lock(root, config.lock)[1] if config.lock else root.current_lock()
    return lock, BlobIndex.from_root(root, lock), root.misses


def make_apps(config: ServeConfig) -> Mirror:
    lock, blobs, misses_path = open_source(config)
    misses = MissLog(misses_path)
    by_kind: dict[str, list[Item]] = {}
    for item in lock.items:
        by_kind.setdefault(item.kind, []).append(item)
    listeners: dict[str, Listener] = {}
    for kind in KINDS.values():
        if not config.ports.get(kind.listener, 0):
            continue
        listener = listeners.setdefault(kind.listener, Listener(kind.listener, [], misses))
        listener.handlers.append(kind.handler(by_kind.get(kind.name, []), blobs, config.public_url))
    for listener in listeners.values():
        listener.peers = listeners  # /metrics on files counts every listener
    if config.tls_ca is not None and "files" in listeners:
        listeners["files"].handlers.insert(0, ca_handler(config.tls_ca))
    return Mirror(lock, blobs, misses, config.public_url, listeners)


def _listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def run_worker(config: ServeConfig, sockets: dict[str, socket.socket], ready: Callable[[], None]) -> None:
    mirror = make_apps(config)
    guard = ConnectionGuard(config.header_timeout, config.max_connections or default_max_connections())
    runners = []
    tls_context = server_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
    for name, listener in mirror.listeners.items():
        if name not in sockets:  # nothing of this kind in the lock
            continue
        server = GuardedServer(
            listener,
            guard,
            keepalive_timeout=config.keepalive_timeout,
            access_log=logging.getLogger(f"gapcache.access.{name}") if config.access_log else None,
            access_log_class=AccessLog,
        )
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        site = web.SockSite(runner, sockets[name], ssl_context=tls_context)
        await site.start()
        runners.append(runner)
    ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    following = config.root and not config.lock
    watcher = asyncio.ensure_future(_follow_current(config, mirror, set(sockets))) if following else None
    flusher = asyncio.ensure_future(_flush_misses(mirror.misses))
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        flusher.cancel()
        for r in runners:
            await r.cleanup()
        mirror.misses.close()


async def _flush_misses(misses: MissLog) -> None:
    while True:
        await asyncio.sleep(misses.flush_every)
        misses.flush()


async def _follow_current(config: ServeConfig, mirror: Mirror, bound: set[str], interval: float = 1.0) -> None:
    """Serve a newly loaded lock without a restart: when ``current`` changes (``gapcache load``
    switched it), rebuild the handlers and swap them in; requests in flight finish on the old ones."""
    assert config.root is not None
    current = Root(config.root).current_file

    def stamp() -> tuple[int, int, str]:
        st = current.stat()
        return (st.st_mtime_ns, st.st_ino, current.read_text())

    seen = stamp()
    while True:
        await asyncio.sleep(interval)
        try:
            now = stamp()
            if now == seen:
                continue
            fresh = await asyncio.to_thread(make_apps, config)
        except (OSError, GapcacheError) as exc:
            log.warning("not switching to the new lock: %s", exc)
            continue
        seen = now
        fresh.misses.close()  # the running listeners keep appending to the log they opened
        for name, listener in fresh.listeners.items():
            if name in mirror.listeners:
                mirror.listeners[name].handlers = listener.handlers
        missing = set(active_listeners(config, fresh.lock)) - bound
        if missing:
            log.warning(
                "the new lock has content for %s: restart gapcache serve to open them", ", ".join(sorted(missing))
            )
        log.info("now serving %s", now[2].strip())


def _worker_main(config: ServeConfig, bound: dict[str, int]) -> None:
    _setup_logging(config)
    sockets = {n: _listen_socket(config.bind, p, True) for n, p in bound.items()}
    _run_loop(config.loop, run_worker(config, sockets, lambda: None))


def _run_loop(loop: str, coro: Coroutine[Any, Any, None]) -> None:
    """uvloop by default: measured here ~25% more small requests/s than asyncio's loop, and large
    bodies still stream at nginx's speed (bench/RESULTS.md)."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - a dependency on Linux
            pass
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)


def _setup_logging(config: ServeConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def active_listeners(config: ServeConfig, lock: Lock) -> dict[str, int]:
    """The listeners to open: those whose content types are in the lock (and not disabled)."""
    present = {i.kind for i in lock.items}
    used = {k.listener for k in KINDS.values() if k.name in present} | ({"files"} if config.tls_ca else set())
    return {n: p for n, p in config.ports.items() if p and n in used}


def serve(config: ServeConfig, on_ready: Callable[[dict[str, int]], None] | None = None) -> None:
    """Bind the listeners, start the workers, and serve until SIGINT/SIGTERM."""
    mirror = make_apps(config)  # fail early (bad root, nothing loaded) before binding anything
    _raise_fd_limit()
    listeners = active_listeners(config, mirror.lock)
    if not listeners:
        raise UsageError("nothing to serve: the lock has no content for the enabled listeners")
    reuse = config.workers > 1
    sockets: dict[str, socket.socket] = {}
    for name, port in listeners.items():
        try:
            sockets[name] = _listen_socket(config.bind, port, reuse)
        except OSError as exc:
            for s in sockets.values():
                s.close()
            raise EnvironmentProblem(
                f"cannot listen on {config.bind}:{port} ({name}): {exc.strerror}; "
                f"choose another port with --port {name}=N or disable it with --port {name}=0"
            ) from exc
    bound = {n: s.getsockname()[1] for n, s in sockets.items()}
    _setup_logging(config)
    procs: list[multiprocessing.context.ForkProcess] = []
    if config.workers > 1:
        ctx = multiprocessing.get_context("fork")
        for _ in range(config.workers - 1):
            proc = ctx.Process(target=_worker_main, args=(config, bound), daemon=True)
            proc.start()
            procs.append(proc)

    def ready() -> None:
        if on_ready is not None:
            on_ready(bound)

    try:
        _run_loop(config.loop, run_worker(config, sockets, ready))
    finally:
        for proc in procs:
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.join(5)


def _raise_fd_limit() -> None:
    """Many concurrent clients need many descriptors: lift the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

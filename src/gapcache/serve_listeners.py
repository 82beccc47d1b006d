"""The listeners of a serving process: what answers on each port (:class:`Listener`), the aiohttp
server around it (:class:`GuardedServer`), and the ports open in this process (:class:`Sites`),
which can open one more while serving — a newly loaded lock with content for a listener that was
not open (``load --add`` of images beside files) is served without a restart.

With ``--workers N`` every worker opens its own socket with ``SO_REUSEPORT`` on the same port,
when it sees the new lock: no worker depends on another, and the kernel spreads connections over
the workers that are listening.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from .blobs import CHECKS, Handler, MissLog
from .serve_guard import ConnectionGuard
from .wire import HEALTH, HEALTH_HEAD, AccessLog, Answers, FastRequestHandler, Prebuilt, SetInfo, Stats, render_metrics

log = logging.getLogger("gapcache.serve")


class Listener:
    """One port: the kinds that serve on it, asked in turn; a request none answers is a 404 and a
    recorded miss. aiohttp's low-level server (no router, no middlewares): every request here is
    GET or HEAD of an immutable thing, and the hot path is short — an answer that depends only on
    the target (a verified small blob, a manifest by tag, an index page) is kept in :attr:`answers`
    and given again straight from the parser (:class:`~gapcache.wire.FastRequestHandler`).
    Every listener answers the health probes (:data:`~gapcache.wire.HEALTH`); ``files`` also
    ``/metrics`` (Prometheus: the counters of every listener in :attr:`peers`, and the served
    sets, :attr:`sets`)."""

    def __init__(self, name: str, handlers: list[Handler], misses: MissLog) -> None:
        self.name = name
        self.answers = Answers()
        self.stats = Stats()
        self.peers: dict[str, Listener] = {name: self}
        self._handlers = handlers
        self.misses = misses
        # what the lock served is made of (sets.json): read at the first scrape, not at start-up
        self.sets: Callable[[], Sequence[SetInfo]] = tuple

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
            sets = await asyncio.to_thread(self.sets)
            body, ctype = render_metrics({n: p.stats for n, p in self.peers.items()}, CHECKS, sets)
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


def listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Sites:
    """The listeners open in this process: one aiohttp runner and site per socket, all sharing one
    :class:`ConnectionGuard`. ``server_options``: keyword arguments for each :class:`GuardedServer`
    (keep-alive timeout, access log and its format)."""

    def __init__(
        self,
        listeners: dict[str, Listener],
        guard: ConnectionGuard,
        tls_context: ssl.SSLContext | None,
        access_log: bool,
        **server_options: Any,
    ) -> None:
        self.listeners = listeners
        self.guard = guard
        self.tls_context = tls_context
        self.access_log = access_log
        self.server_options = server_options
        self.runners: dict[str, web.ServerRunner] = {}

    @property
    def open(self) -> set[str]:
        return set(self.runners)

    async def start(self, name: str, sock: socket.socket) -> None:
        """Serve the listener ``name`` on ``sock`` (bound and listening)."""
        server = GuardedServer(
            self.listeners[name],
            self.guard,
            access_log=logging.getLogger(f"gapcache.access.{name}") if self.access_log else None,
            access_log_class=AccessLog,
            **self.server_options,
        )
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        try:
            await web.SockSite(runner, sock, ssl_context=self.tls_context).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.runners[name] = runner

    async def open_more(self, host: str, ports: dict[str, int], reuse_port: bool) -> dict[str, int]:
        """Bind and serve the listeners of ``ports`` not open yet; those opened (name → port). A port
        that cannot be bound (in use) is a warning naming the listener and the port; the caller
        tries again later."""
        opened = {}
        for name, port in ports.items():
            if name in self.runners or name not in self.listeners:
                continue
            try:
                sock = listen_socket(host, port, reuse_port)
            except OSError as exc:
                log.warning(
                    "the lock has content for the %s listener, but %s:%d cannot be opened (%s): it is not "
                    "served; free the port (or restart with --port %s=N) — tried again at the next load",
                    name, host, port, exc.strerror or exc, name,
                )  # fmt: skip
                continue
            try:
                await self.start(name, sock)
            except OSError as exc:  # pragma: no cover - a bound socket that cannot be served
                sock.close()
                log.warning("cannot serve the %s listener on %s:%d: %s", name, host, port, exc)
                continue
            opened[name] = port
        return opened

    async def close(self) -> None:
        for runner in self.runners.values():
            await runner.cleanup()
        self.runners.clear()

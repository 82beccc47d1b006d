"""Hostile clients: header timeout, connection cap — one :class:`ConnectionGuard` per serving
process, shared by its listeners (used by :class:`~gapcache.serve_listeners.GuardedServer`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("gapcache.serve")

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

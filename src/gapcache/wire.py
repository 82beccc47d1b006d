"""What runs per request around aiohttp's parser: answers serialised once, and given again without
building a request, a task or a response object.

- :class:`Prebuilt`: a whole answer (status line, fixed headers, body) serialised in advance and
  sent in one write with the Date and Connection lines;
- :class:`Answers`: the reusable answers a listener gave (they depend only on the request target,
  and on Accept), bounded, keyed by ``(target, Accept)``;
- :class:`FastRequestHandler`: aiohttp's connection protocol, unchanged but for one step — a
  parsed GET/HEAD whose answer is in :class:`Answers` (no Range, no conditional header, HTTP/1.1
  keep-alive, nothing queued or running on the connection, the client reading) is answered at
  once; anything else goes through aiohttp as before (handlers, verification, logging).

Only answers a handler built from verified bytes are ever kept, so nothing is served here that
was not checked first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from email.utils import formatdate
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger, AbstractStreamWriter
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler

MAX_LOGGED = 512  # characters of a client-chosen path or request line written to a log
_REASONS = {200: "OK"}
_SERVER = b"Server: gapcache\r\n"
_CTL = re.compile(r"[\x00-\x1f\x7f]")
# request headers that make an answer depend on more than the target: never answered from Answers
CONDITIONAL = ("Range", "If-Range", "If-None-Match", "If-Match", "If-Modified-Since", "If-Unmodified-Since")
_date: list[Any] = [0, b""]


def serialize_head(status: int, headers: Mapping[str, str], length: int) -> bytes:
    """``HTTP/1.1 STATUS REASON`` and the fixed header lines of a response with a ``length``-byte body
    (no Date, no Connection, no blank line: they are added when sent)."""
    fields = [f"{k}: {v}" for k, v in headers.items()]
    if any(_CTL.search(f) for f in fields):
        raise ValueError(f"a control character in a response header: {fields!r}")
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", *fields, f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _date_line() -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    line: bytes = _date[1]
    return line


def _wire(head: bytes, body: bytes, conn: bytes = b"") -> bytes:
    return b"".join((head, _date_line(), _SERVER, conn, b"\r\n", body))


class Prebuilt(web.StreamResponse):
    """A whole answer serialised in advance (``head`` from :func:`serialize_head`, ``body``).
    ``reusable``: it depends only on the request target (and on Accept), so a listener may keep it
    in its :class:`Answers`."""

    def __init__(self, head: bytes, body: bytes, status: int = 200, reusable: bool = True) -> None:
        super().__init__(status=status)
        self.head = head
        self.payload = body
        self.reusable = reusable

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        self._eof_sent = True
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection lost")
        keep = request.keep_alive
        self._keep_alive = keep
        conn = b"Connection: close\r\n" if not keep else b"" if request.version[1] else b"Connection: keep-alive\r\n"
        data = _wire(self.head, b"" if request.method == "HEAD" else self.payload, conn)
        self._body_length = len(data)
        transport.write(data)
        writer = request._payload_writer
        await writer.drain()  # waits only when the client does not read (transport paused)
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class Answers:
    """The reusable answers a listener gave: ``(target, Accept) → (head, body)``. Bounded (forgotten
    all at once past ``max_bytes`` of bodies or ``max_entries``); cleared when the handlers change."""

    def __init__(self, max_bytes: int = 64 << 20, max_entries: int = 50_000) -> None:
        self.table: dict[tuple[str, str | None], tuple[bytes, bytes]] = {}
        self.bytes = 0
        self.max_bytes = max_bytes
        self.max_entries = max_entries

    def clear(self) -> None:
        self.table = {}
        self.bytes = 0

    def keep(self, request: web.BaseRequest, resp: Prebuilt) -> None:
        if not resp.reusable or resp.status != 200 or request.method not in ("GET", "HEAD"):
            return
        h = request.headers
        if any(c in h for c in CONDITIONAL):
            return
        key = (request.raw_path, h.get("Accept"))
        if key in self.table:
            return
        if self.bytes + len(resp.payload) > self.max_bytes or len(self.table) >= self.max_entries:
            self.clear()
        self.table[key] = (resp.head, resp.payload)
        self.bytes += len(resp.payload)

    def find(self, msg: RawRequestMessage) -> tuple[bytes, bytes] | None:
        h = msg.headers
        hit = self.table.get((msg.path, h.get("Accept")))
        if hit is None or any(c in h for c in CONDITIONAL):
            return None
        return hit


class AccessLog(AbstractAccessLogger):
    """``ADDR "REQUEST LINE" STATUS BYTES "USER-AGENT" SECONDS``, what the client chose cut short."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.line(request.remote, request.method, request.raw_path, request.version, request.headers, response, time)

    def line(self, remote: str | None, method: str, target: str, version: Any, headers: Mapping[str, str],
             response: web.StreamResponse | tuple[int, int], seconds: float) -> None:  # fmt: skip
        status, length = response if isinstance(response, tuple) else (response.status, response.body_length)
        line = f"{method} {target} HTTP/{version.major}.{version.minor}"
        agent = headers.get("User-Agent", "-")
        self.logger.info(
            '%s "%s" %s %s "%s" %.6fs', remote, line[:MAX_LOGGED], status, length, agent[: MAX_LOGGED // 2], seconds
        )


class _Filter:
    """The connection's parser, with the messages :class:`FastRequestHandler` answers taken out."""

    __slots__ = ("_handler", "_parser")

    def __init__(self, parser: Any, handler: FastRequestHandler) -> None:
        self._parser = parser
        self._handler = handler

    def feed_data(self, data: bytes) -> tuple[list[Any], bool, bytes]:
        messages, upgraded, tail = self._parser.feed_data(data)
        if messages and not upgraded:
            n = self._handler.answer_now(messages)
            if n:
                messages = messages[n:]
        return messages, upgraded, tail

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


class FastRequestHandler(RequestHandler):
    """aiohttp's protocol, answering from :class:`Answers` what it can as soon as it is parsed."""

    def __init__(
        self, manager: web.Server, *, answers: Answers, on_request: Callable[[RequestHandler], None], **kw: Any
    ) -> None:
        super().__init__(manager, **kw)
        self._answers = answers
        self._on_request = on_request
        self._remote: str | None = None
        self._parser = _Filter(self._parser, self)  # type: ignore[assignment]

    def answer_now(self, messages: list[Any]) -> int:
        """Answer the leading messages found in :attr:`_answers`; how many were answered."""
        waiter = self._waiter
        if waiter is None or waiter.done() or self._messages:  # something before them is not answered yet
            return 0
        transport = self.transport
        answered = 0
        for msg, payload in messages:
            if (
                self._paused  # the client is not reading: let aiohttp wait for it
                or transport is None
                or transport.is_closing()
                or type(msg) is not RawRequestMessage
                or msg.method not in ("GET", "HEAD")
                or msg.should_close
                or msg.upgrade
                or msg.version != HttpVersion11
                or payload is not EMPTY_PAYLOAD
            ):
                break
            hit = self._answers.find(msg)
            if hit is None:
                break
            head, body = hit
            data = _wire(head, b"" if msg.method == "HEAD" else body)
            transport.write(data)
            answered += 1
            if self._logging_enabled and isinstance(self.access_logger, AccessLog):
                if self._remote is None:
                    peer = transport.get_extra_info("peername")
                    self._remote = str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer)
                log = self.access_logger
                log.line(self._remote, msg.method, msg.path, msg.version, msg.headers, (200, len(data)), 0.0)
        if answered:
            self._request_count += answered
            if self._manager is not None:
                self._manager.requests_count += answered
            for _ in range(answered):
                self._parser.message_consumed()  # type: ignore[union-attr]
            self._on_request(self)
            loop = self._loop
            self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
            if self._keepalive_handle is None and self._keepalive_timeout > 0:
                self._keepalive_handle = loop.call_at(self._next_keepalive_close_time, self._process_keepalive)
        return answered

"""What runs per request around aiohttp's parser: answers serialised once, and given again without
building a request, a task or a response object.

- :class:`Prebuilt`: a whole answer (status line, fixed headers, body) serialised in advance and
  sent in one write with the Date and Connection lines;
- :class:`Answers`: the reusable answers a listener gave (they depend only on the request target,
  and on Accept), bounded, keyed by ``(target, Accept)``;
- :class:`Page`: a generated answer whose bytes change with a new load (an index, a listing, a
  ``.repo`` file): an ETag from its bytes, ``Cache-Control: no-cache`` and a 304 to a matching
  ``If-None-Match`` — what is content-addressed or versioned is :data:`IMMUTABLE` instead;
- :class:`FastRequestHandler`: aiohttp's connection protocol, unchanged but for one step — a
  parsed GET/HEAD whose answer is in :class:`Answers` (no Range, no conditional header, HTTP/1.1
  keep-alive, nothing queued or running on the connection, the client reading) is answered at
  once; anything else goes through aiohttp as before (handlers, verification, logging);
- :class:`Stats`: a listener's counters (plain integers: nothing on the hot path but additions),
  rendered for Prometheus by :func:`render_metrics` with the served sets (:class:`SetInfo`);
  :data:`HEALTH`, the health probes;
- :class:`AccessLog`: one line per answer, nginx's ``combined`` format or JSON (``--log-format``),
  the same from aiohttp and from the fast path.

Only answers a handler built from verified bytes are ever kept, so nothing is served here that
was not checked first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate
from typing import Any, NamedTuple

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
# HTTP caching, decided per path by the kind that serves it: content-addressed or versioned paths
# (blobs by digest, packages, wheels, chart archives, git packs) never change; anything a new load
# may change (indexes, repodata, manifests by tag, listings, repo files) is revalidated by its ETag
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


def cache_control(immutable: bool) -> str:
    return IMMUTABLE if immutable else REVALIDATE


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` against ``etag`` (weak comparison, ``*``)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


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


class Page:
    """A generated answer that changes with a new load: ``body``, an ETag from its bytes,
    :data:`REVALIDATE`, and a 304 when the client already has it. Build once where the body is
    kept; :meth:`answer` per request."""

    __slots__ = ("_headers", "body", "content_type", "etag", "head")

    def __init__(self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        self._headers = {**(headers or {}), "ETag": self.etag, "Cache-Control": REVALIDATE}
        self.head = serialize_head(200, {"Content-Type": content_type, **self._headers}, len(body))

    def answer(self, request: web.BaseRequest, reusable: bool = True) -> web.StreamResponse:
        """``reusable``: the body depends only on the target and Accept (not on the Host): a
        :class:`Prebuilt` the listener keeps; else an ordinary ``web.Response``."""
        if etag_matches(request.headers.get("If-None-Match"), self.etag):
            return web.Response(status=304, headers=self._headers)
        if not reusable:
            return web.Response(body=self.body, headers={"Content-Type": self.content_type, **self._headers})
        return Prebuilt(self.head, self.body)


HEALTH = frozenset(("/-/healthy", "/healthz"))  # answered 200 by every listener, from memory
HEALTH_HEAD = serialize_head(200, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}, 3)


class Stats:
    """What one listener answered since the process started."""

    __slots__ = ("bytes", "errors", "misses", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.errors = 0  # answers with a 5xx status (a blob that failed verification, a crash)
        self.misses = 0


class SetInfo(NamedTuple):
    """One set of the lock being served (``sets.json``): its name, its own lock, when it was loaded
    (ISO 8601, or empty) and the bytes of its blobs."""

    name: str
    lock: str
    loaded: str
    bytes: int


def render_metrics(
    stats: Mapping[str, Stats], blobs: Mapping[str, int], sets: Sequence[SetInfo] = ()
) -> tuple[bytes, str]:
    """Prometheus text exposition of the listeners' counters, the blob checks (``verified``,
    ``corrupt``) of this process and the served sets: (body, content type)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    class Collector:
        def collect(self) -> Any:
            for name, doc, attr in (
                ("gapcache_http_requests", "Requests answered, per listener", "requests"),
                ("gapcache_http_response_bytes", "Bytes sent (headers and bodies), per listener", "bytes"),
                ("gapcache_http_errors", "Answers with a 5xx status, per listener", "errors"),
                ("gapcache_misses", "Requests the mirror could not answer (misses.jsonl), per listener", "misses"),
            ):
                family = CounterMetricFamily(name, doc, labels=["listener"])
                for listener, s in sorted(stats.items()):
                    family.add_metric([listener], getattr(s, attr))
                yield family
            for what in ("verified", "corrupt"):
                yield CounterMetricFamily(
                    f"gapcache_blobs_{what}", f"Blobs hashed before serving that were found {what}", blobs.get(what, 0)
                )
            info = InfoMetricFamily("gapcache_served_set", "The sets served (gapcache ls --root), one per set")
            size = GaugeMetricFamily("gapcache_served_set_bytes", "Bytes of the blobs of each set", labels=["name"])
            for one in sets:
                info.add_metric([], {"name": one.name, "lock": one.lock, "loaded": one.loaded})
                size.add_metric([one.name], one.bytes)
            yield info
            yield size
            yield GaugeMetricFamily("gapcache_served_sets", "How many sets are served", len(sets))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


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
        if key in self.table or len(resp.payload) > self.max_bytes // 8:  # a big body: not worth a flush
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


_clf: list[Any] = [0, ""]


def _clf_time() -> str:
    now = int(time.time())
    if now != _clf[0]:
        _clf[0], _clf[1] = now, time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
    stamp: str = _clf[1]
    return stamp


_iso: list[Any] = [0, ""]


def _iso_time(now: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-10-10T13:55:36.123Z``."""
    sec = int(now)
    if sec != _iso[0]:
        _iso[0], _iso[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_iso[1]}.{int((now - sec) * 1000):03d}Z"


LOG_FORMATS = ("clf", "json")


class AccessLog(AbstractAccessLogger):
    """One line per answer. ``clf`` (default): the Combined Log Format (nginx's ``combined``) and
    the seconds taken:
    ``ADDR - - [10/Oct/2026:13:55:36 +0000] "REQUEST LINE" STATUS BYTES "REFERER" "USER-AGENT" SECONDS``;
    ``json``: one JSON object per line with ``time`` (ISO 8601, UTC), ``remote``, ``method``,
    ``path``, ``protocol``, ``status``, ``bytes``, ``duration`` (seconds), ``referer``,
    ``user_agent`` and ``listener`` (from the logger's name, ``gapcache.access.<listener>``).
    What the client chose is cut short either way."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self.json = log_format == "json"
        self.listener = logger.name.rpartition(".")[2]

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.line(request.remote, request.method, request.raw_path, request.version, request.headers, response, time)

    def line(self, remote: str | None, method: str, target: str, version: Any, headers: Mapping[str, str],
             response: web.StreamResponse | tuple[int, int], seconds: float) -> None:  # fmt: skip
        status, length = response if isinstance(response, tuple) else (response.status, response.body_length)
        agent = headers.get("User-Agent", "-")[: MAX_LOGGED // 2]
        referer = headers.get("Referer", "-")[: MAX_LOGGED // 2]
        if self.json:
            entry = {
                "time": _iso_time(time.time()),
                "remote": remote,
                "method": method[:32],
                "path": target[:MAX_LOGGED],
                "protocol": f"HTTP/{version.major}.{version.minor}",
                "status": status,
                "bytes": length,
                "duration": round(seconds, 6),
                "referer": referer,
                "user_agent": agent,
                "listener": self.listener,
            }
            self.logger.info("%s", json.dumps(entry))
            return
        line = f"{method} {target} HTTP/{version.major}.{version.minor}"
        self.logger.info(
            '%s - - [%s] "%s" %s %s "%s" "%s" %.6fs',
            remote, _clf_time(), line[:MAX_LOGGED], status, length, referer, agent, seconds,
        )  # fmt: skip


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
        self,
        manager: web.Server,
        *,
        answers: Answers,
        stats: Stats,
        on_request: Callable[[RequestHandler], None],
        **kw: Any,
    ) -> None:
        super().__init__(manager, **kw)
        self._answers = answers
        self._stats = stats
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
            self._stats.bytes += len(data)
            if self._logging_enabled and isinstance(self.access_logger, AccessLog):
                if self._remote is None:
                    peer = transport.get_extra_info("peername")
                    self._remote = str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer)
                log = self.access_logger
                log.line(self._remote, msg.method, msg.path, msg.version, msg.headers, (200, len(data)), 0.0)
        if answered:
            self._stats.requests += answered
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

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse, time: float | None) -> None:
        """Called by aiohttp once an answer is sent: counted, then logged (unless ``--no-access-log``)."""
        stats = self._stats
        stats.requests += 1
        stats.bytes += response.body_length
        if response.status >= 500:
            stats.errors += 1
        if self._logging_enabled:
            super().log_access(request, response, time)

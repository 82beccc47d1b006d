"""The mirror server: one asyncio process (or ``--workers N`` identical ones), read-only.

Each kind answers its protocol's requests on its listener (DESIGN "Serving"):
``registry 5000``, ``repos 8001``, ``charts 8002``, ``pypi 8003``, ``files 8004``.

A blob is located as ``(file, offset, length)`` — a store blob is ``(path, 0, size)``, an archive
member is ``(part, data offset, size)`` — so serving from an archive needs no second code path.
Every blob is hashed against its digest before its first byte is served by a process; small blobs
are then answered from memory, large ones go out with ``sendfile`` (zero copy).

The handlers are built once, before anything is bound (a bad root fails early): the first worker
serves with them and the other workers, forked, inherit them. ``serve --root`` follows
``current``: a new lock swaps the handlers in each worker, and opens a listener whose content
type the new lock brings (:mod:`~gapcache.serve_listeners`). The listeners themselves, the
connection guard and the access log are in :mod:`~gapcache.serve_listeners`,
:mod:`~gapcache.serve_guard` and :mod:`~gapcache.wire`.

Start-up is bounded by the lock (100,000 items: ~3 s to the first answer): it is parsed once with
the cyclic collector paused, an archive's lock is named by the sha256 of its bytes (never
serialised again), and what was built is frozen out of later collections (``gc.freeze``) before
any worker forks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .archive import resolve_parts
from .blobs import BlobIndex, MissLog
from .errors import EnvironmentProblem, GapcacheError, UsageError
from .history import find_lock
from .kinds import KINDS
from .lock import Item, Lock, gc_paused, read_lock
from .root import Root
from .serve_guard import BUSY, ConnectionGuard, default_max_connections
from .serve_listeners import GuardedServer, Listener, Sites, listen_socket
from .tls import ca_handler, server_context
from .wire import SetInfo

__all__ = [  # what callers (and tests) import from here
    "BUSY", "LISTENERS", "ConnectionGuard", "GuardedServer", "Listener", "Mirror", "ServeConfig",
    "default_max_connections", "make_apps", "open_source", "serve",
]  # fmt: skip

log = logging.getLogger("gapcache.serve")

LISTENERS: dict[str, int] = {"registry": 5000, "repos": 8001, "charts": 8002, "pypi": 8003, "files": 8004}
Stamp = tuple[int, int, str]  # ``current``: mtime, inode, content


@dataclass
class ServeConfig:
    root: Path | None = None
    archive: list[Path] = field(default_factory=list)
    bind: str = "0.0.0.0"
    ports: dict[str, int] = field(default_factory=lambda: dict(LISTENERS))
    public_url: str | None = None
    workers: int = 1
    access_log: bool = True
    log_format: str = "clf"  # access log lines: "clf" (nginx's combined) or "json" (wire.AccessLog)
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
    stamp: Stamp | None = None  # of ``current`` when the lock was read (None: not following it)


@dataclass
class _Source:
    lock: Lock
    blobs: BlobIndex
    misses: Path | None
    lock_name: str  # <sha256>.json


def _open(config: ServeConfig) -> _Source:
    if config.archive:
        blobs, lock = BlobIndex.from_archive(resolve_parts(config.archive))
        # the sha256 of the lock's bytes as the archive holds them (not of the lock serialised again:
        # that took seconds at 100,000 items)
        return _Source(lock, blobs, None, blobs.lock_sha256 + ".json")
    assert config.root is not None
    root = Root(config.root)
    if config.lock:
        name, lock = find_lock(root, config.lock)
    else:
        name = root.current_name()
        lock = read_lock(root.locks / name)
    return _Source(lock, BlobIndex.from_root(root, lock), root.misses, name)


def open_source(config: ServeConfig) -> tuple[Lock, BlobIndex, Path | None]:
    src = _open(config)
    return src.lock, src.blobs, src.misses


def served_sets(config: ServeConfig, lock: Lock, lock_name: str) -> list[SetInfo]:
    """The sets the served lock is made of (``sets.json``, as ``gapcache ls --root`` lists them);
    an archive served in place is one set named after its file. Never fatal: /metrics only."""
    from . import sets

    try:
        if config.archive:
            return [SetInfo(sets.set_name(config.archive), lock_name, "", lock.total_size())]
        assert config.root is not None
        return [SetInfo(m.name, m.lock, m.loaded, m.size) for m in sets.members_of(Root(config.root), lock_name)]
    except (GapcacheError, OSError) as exc:
        log.warning("the served sets are not in /metrics: %s", exc)
        return []


def _stamp(current: Path) -> Stamp:
    st = current.stat()
    return (st.st_mtime_ns, st.st_ino, current.read_text())


def make_apps(config: ServeConfig) -> Mirror:
    """The handlers of every listener, from the lock (the cyclic collector paused meanwhile: the
    lock's models, the blob index and the trees hold no cycles — :func:`~gapcache.lock.gc_paused`)."""
    with gc_paused():
        return _make_apps(config)


def _make_apps(config: ServeConfig) -> Mirror:
    stamp = None
    if config.root is not None and not config.lock:  # following `current`: its stamp before the lock is
        with contextlib.suppress(OSError):  # read, so that a switch while building is seen by the follower
            stamp = _stamp(Root(config.root).current_file)
    src = _open(config)
    misses = MissLog(src.misses)
    by_kind: dict[str, list[Item]] = {}
    for item in src.lock.items:
        by_kind.setdefault(item.kind, []).append(item)
    listeners: dict[str, Listener] = {}
    for kind in KINDS.values():
        if not config.ports.get(kind.listener, 0):
            continue
        listener = listeners.setdefault(kind.listener, Listener(kind.listener, [], misses))
        listener.handlers.append(kind.handler(by_kind.get(kind.name, []), src.blobs, config.public_url))
    sets = functools.cache(functools.partial(served_sets, config, src.lock, src.lock_name))  # at a scrape
    for listener in listeners.values():
        listener.peers = listeners  # /metrics on files counts every listener
        listener.sets = sets
    if config.tls_ca is not None and "files" in listeners:
        listeners["files"].handlers.insert(0, ca_handler(config.tls_ca))
    return Mirror(src.lock, src.blobs, misses, config.public_url, listeners, stamp)


async def run_worker(
    config: ServeConfig, mirror: Mirror, sockets: dict[str, socket.socket], ready: Callable[[], None], first: bool
) -> None:
    """Serve ``mirror`` on ``sockets`` (bound by this process) until SIGINT/SIGTERM. ``first``: the
    worker that says what changes (the others only warn)."""
    guard = ConnectionGuard(config.header_timeout, config.max_connections or default_max_connections())
    tls_context = server_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
    sites = Sites(
        mirror.listeners,
        guard,
        tls_context,
        config.access_log,
        keepalive_timeout=config.keepalive_timeout,
        access_log_format=config.log_format,
    )
    for name, sock in sockets.items():
        await sites.start(name, sock)
    ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.ensure_future(_follow_current(config, mirror, sites, first)) if mirror.stamp else None
    flusher = asyncio.ensure_future(_flush_misses(mirror.misses))
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        flusher.cancel()
        await sites.close()
        mirror.misses.close()


async def _flush_misses(misses: MissLog) -> None:
    while True:
        await asyncio.sleep(misses.flush_every)
        misses.flush()


async def _follow_current(
    config: ServeConfig, mirror: Mirror, sites: Sites, first: bool, interval: float = 1.0
) -> None:
    """Serve a newly loaded lock without a restart: when ``current`` changes (``gapcache load``,
    ``load --add``, ``remove``, ``rollback`` switched it), rebuild the handlers and swap them in
    (requests in flight finish on the old ones), and open the listeners the new lock has content
    for that are not open yet (a port in use: a warning, tried again at the next change)."""
    assert config.root is not None and mirror.stamp is not None
    current = Root(config.root).current_file
    seen = mirror.stamp
    reuse = config.workers > 1
    while True:
        await asyncio.sleep(interval)
        try:
            if _stamp(current) == seen:
                continue
            fresh = await asyncio.to_thread(make_apps, config)
        except (OSError, GapcacheError) as exc:
            log.warning("not switching to the new lock: %s", exc)
            continue
        assert fresh.stamp is not None
        seen = fresh.stamp
        fresh.misses.close()  # the running listeners keep appending to the log they opened
        for name, listener in fresh.listeners.items():
            if name in mirror.listeners:
                mirror.listeners[name].handlers = listener.handlers
                mirror.listeners[name].sets = listener.sets
        if first:
            log.info("now serving %s", seen[2].strip())
        wanted = {n: p for n, p in active_listeners(config, fresh.lock).items() if n not in sites.open}
        if wanted:
            opened = await sites.open_more(config.bind, wanted, reuse)
            for name, port in opened.items():
                if first:
                    log.info("the new lock has content for the %s listener: now open on %s:%d", name, config.bind, port)


def _worker_main(config: ServeConfig, mirror: Mirror, bound: dict[str, int], parent: int) -> None:
    """A forked worker: ``mirror`` is the parent's, inherited; its own sockets on the same ports.
    It ends with the parent, however the parent ends (a SIGTERM before the parent's loop handles
    signals, a SIGKILL): an orphan would keep answering on the ports."""
    with contextlib.suppress(AttributeError, OSError):  # Linux: SIGTERM when the parent dies
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that
        return
    _setup_logging(config)
    sockets = {n: listen_socket(config.bind, p, True) for n, p in bound.items()}
    _run_loop(config.loop, run_worker(config, mirror, sockets, lambda: None, first=False))


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


class _JsonLines(logging.Formatter):
    """``--log-format json``: the access lines are JSON already; every other line becomes one too
    (``time``, ``level``, ``message``), so that the whole log parses line by line."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith("gapcache.access."):
            return record.getMessage()
        entry = {"time": self.formatTime(record), "level": record.levelname.lower(), "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _setup_logging(config: ServeConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines() if config.log_format == "json" else logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def active_listeners(config: ServeConfig, lock: Lock) -> dict[str, int]:
    """The listeners to open: those whose content types are in the lock (and not disabled)."""
    present = {i.kind for i in lock.items}
    used = {k.listener for k in KINDS.values() if k.name in present} | ({"files"} if config.tls_ca else set())
    return {n: p for n, p in config.ports.items() if p and n in used}


def serve(config: ServeConfig, on_ready: Callable[[dict[str, int], Lock], None] | None = None) -> None:
    """Bind the listeners, start the workers, and serve until SIGINT/SIGTERM. ``on_ready``: called
    once the first worker serves, with the ports bound and the lock served."""
    mirror = make_apps(config)  # fail early (bad root, nothing loaded) before binding anything
    gc.collect(0)  # what make_apps let go (made while the collector was paused: all in the young generation)
    gc.freeze()  # what was built stays: collections skip it (and forked workers do not touch its pages)
    _raise_fd_limit()
    listeners = active_listeners(config, mirror.lock)
    if not listeners:
        raise UsageError("nothing to serve: the lock has no content for the enabled listeners")
    reuse = config.workers > 1
    sockets: dict[str, socket.socket] = {}
    for name, port in listeners.items():
        try:
            sockets[name] = listen_socket(config.bind, port, reuse)
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
        for _ in range(config.workers - 1):  # each inherits `mirror`: the handlers are not built again
            proc = ctx.Process(target=_worker_main, args=(config, mirror, bound, os.getpid()), daemon=True)
            proc.start()
            procs.append(proc)

    def ready() -> None:
        if on_ready is not None:
            on_ready(bound, mirror.lock)

    try:
        _run_loop(config.loop, run_worker(config, mirror, sockets, ready, first=True))
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

"""The miss log of a serving process (``misses.jsonl``): what the mirrors could not answer.

Moved out of :mod:`~gapcache.blobs` (which re-exports :class:`MissLog`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

from .wire import MAX_LOGGED

log = logging.getLogger("gapcache.serve")


class MissLog:
    """``misses.jsonl``: one JSON line per request the mirrors could not answer (time, listener,
    path, status, client address), appended with O_APPEND (safe across workers) — and bounded whatever clients do.

    A path is cut to :data:`MAX_LOGGED` characters. The first miss of a (listener, path, status, client) is
    written at once; repeats are counted and written every ``flush_every`` seconds as one line with
    ``count`` (the repeats since the line before). The file stops growing at ``max_bytes`` (said
    once in the server log); misses are recorded again if it is truncated or rotated by copy.
    """

    MAX_KEYS = 4096  # distinct misses counted in memory between flushes

    def __init__(self, path: Path | None, max_bytes: int = 64 << 20, flush_every: float = 60.0) -> None:
        self.fd: int | None = None
        self.path = path
        self.max_bytes = max_bytes
        self.flush_every = flush_every
        self._repeats: dict[tuple[str, str, int, str | None], int] = {}
        self._flushed = time.monotonic()
        self._full = False
        if path is not None:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                log.warning("cannot write %s: %s (misses will not be recorded)", path, exc)

    def close(self) -> None:
        if self.fd is not None:
            self.flush()
            os.close(self.fd)
            self.fd = None

    def record(self, listener: str, path: str, status: int, client: str | None = None) -> None:
        if self.fd is None:
            return
        key = (listener, path[:MAX_LOGGED], status, client)
        seen = self._repeats.get(key)
        if seen is not None:
            self._repeats[key] = seen + 1
        else:
            if len(self._repeats) >= self.MAX_KEYS:
                self.flush(forget=True)
            self._repeats[key] = 0
            self._write([self._line(key, 1)])
        if time.monotonic() - self._flushed >= self.flush_every:
            self.flush()

    def flush(self, forget: bool = False) -> None:
        """Write the repeats counted since the last flush; forget the misses that did not repeat."""
        self._flushed = time.monotonic()
        lines = [self._line(key, n) for key, n in self._repeats.items() if n]
        self._repeats = {} if forget else {key: 0 for key, n in self._repeats.items() if n}
        self._write(lines)

    @staticmethod
    def _line(key: tuple[str, str, int, str | None], count: int) -> bytes:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "listener": key[0],
            "path": key[1],
            "status": key[2],
        }
        if key[3] is not None:
            entry["client"] = key[3]
        if count > 1:
            entry["count"] = count
        return (json.dumps(entry, sort_keys=True) + "\n").encode()

    def _write(self, lines: list[bytes]) -> None:
        if self.fd is None or not lines:
            return
        data = b"".join(lines)
        with contextlib.suppress(OSError):
            if os.fstat(self.fd).st_size + len(data) > self.max_bytes:
                if not self._full:
                    log.warning("%s reached %d bytes: no more misses are recorded", self.path, self.max_bytes)
                self._full = True
                return
            self._full = False
            os.write(self.fd, data)

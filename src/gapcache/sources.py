"""``sources.jsonl`` in the build store: the HTTP validators of unpinned URLs.

One line per unpinned URL fetched (url, digest, size, ETag, Last-Modified), so a re-run asks with
``If-None-Match``/``If-Modified-Since`` instead of downloading again. Appended without fsync (a
lost line only costs a re-download), compacted on close.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from .store import atomic_write


class SourceJournal:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.lines = 0
        with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict) and {"url", "digest", "size"} <= rec.keys():
                        self.records[rec["url"]] = rec
                        self.lines += 1
        self.fd: int | None = None
        if not read_only:
            with contextlib.suppress(OSError):
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def get(self, url: str) -> dict[str, Any] | None:
        return self.records.get(url)

    def refresh(self, url: str) -> None:
        """Take the latest line for ``url`` from the file: another build sharing the store may have
        fetched it since this journal was read."""
        with contextlib.suppress(OSError), open(self.path, encoding="utf-8") as f:
            for line in f:
                if url not in line:
                    continue
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict) and rec.get("url") == url and {"digest", "size"} <= rec.keys():
                        self.records[url] = rec

    def remember(self, record: dict[str, Any]) -> None:
        self.records[record["url"]] = record
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.fd, (json.dumps(record, sort_keys=True) + "\n").encode())
                self.lines += 1

    def close(self) -> None:
        if self.fd is None:
            return
        os.close(self.fd)
        self.fd = None
        if self.lines > 2 * len(self.records) + 100:
            data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records.values())
            with contextlib.suppress(OSError):
                atomic_write(self.path, data.encode())

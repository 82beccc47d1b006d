"""``file://`` sources for the downloader's small-metadata ``get`` (a mounted RHEL ISO, a local repo).

:func:`read_if_file` gives a coroutine reading the file when the URL is ``file://`` (``None``
otherwise, and the downloader goes out over HTTP). A missing file is an HTTP 404, as a web server
would answer, so callers that probe optional files (``repomd.xml.asc``) behave the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .errors import FetchError, HTTPStatusError


def read_if_file(url: str, actual: str, max_size: int) -> Coroutine[Any, Any, tuple[bytes, dict[str, str]]] | None:
    """``url`` as named (for messages), ``actual`` after upstream rewriting; ``None`` unless file://."""
    parts = urlsplit(actual)
    if parts.scheme != "file":
        return None
    return asyncio.to_thread(_read, url, Path(url2pathname(parts.path)), max_size)


def _read(url: str, path: Path, max_size: int) -> tuple[bytes, dict[str, str]]:
    try:
        with open(path, "rb") as f:
            data = f.read(max_size + 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise HTTPStatusError(url, 404, "Not Found") from exc
    except OSError as exc:
        raise FetchError(url, exc.strerror or str(exc)) from exc
    if len(data) > max_size:
        raise FetchError(url, f"response larger than {max_size} bytes")
    return data, {}

"""Reading what an HTTP exchange says: ``Retry-After``, ``Content-Range``, a one-line description
of a client error, the validator a resume checks (used by the downloader); whether the environment
names proxies or a netrc file at all."""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def env_matters() -> bool:
    """Whether proxies or a netrc file are configured: what aiohttp's ``trust_env`` reads. Without
    them ``trust_env`` only costs two worker-thread hops per request (a netrc lookup and a proxy
    lookup that re-read the environment and the file each time), so the downloader leaves it off."""
    if any(k in ("http", "https", "ws", "wss") for k in urllib.request.getproxies()):
        return True
    netrc = os.environ.get("NETRC")
    if netrc is not None:
        return True
    try:
        return (Path.home() / ".netrc").exists()
    except RuntimeError:  # no home directory
        return False


def validator_of(headers: Mapping[str, str]) -> str:
    """What identifies a response for a later ``If-Range`` (a strong ETag, else Last-Modified; "" if none)."""
    etag = headers.get("ETag", "")
    return etag if etag and not etag.startswith("W/") else headers.get("Last-Modified", "")


def one_read(status: int, length: int | None, limit: int) -> bool:
    """A whole body (200) of at most ``limit`` bytes: never resumed, so no validator is kept for it."""
    return status == 200 and length is not None and length <= limit

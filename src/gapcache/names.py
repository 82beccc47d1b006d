"""Logical names: where an artifact lives in the mirror, derived from its upstream identity.

DESIGN "Names": files keep ``<host>/<path>``; an upstream port is written ``<host>_<port>``
(``_`` cannot appear in a host name, so this is unambiguous).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

HEX64 = re.compile(r"^[0-9a-f]{64}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def host_component(url: str) -> str:
    """``https://dl.k8s.io:8443/x`` → ``dl.k8s.io_8443``; the default port is dropped."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None and port != default:
        return f"{host}_{port}"
    return host


def default_file_path(url: str) -> str:
    """The logical path (below ``files/``) a downloaded file keeps: host + URL path."""
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    if parts.scheme == "file":
        return f"local/{path}"
    return f"{host_component(url)}/{path}"


def logical_path_error(path: str) -> str | None:
    """Why ``path`` cannot be a logical path (relative, clean, no traversal), or None."""
    if not path:
        return "empty path"
    if path.startswith("/"):
        return f"{path!r} is absolute"
    if _BAD_CHARS.search(path):
        return f"{path!r} contains a control character or backslash"
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return f"{path!r} has an empty, '.' or '..' segment"
    if len(path) > 4096:
        return "path longer than 4096 characters"
    return None


def split_digest(digest: str) -> str:
    """``sha256:<hex>`` → ``<hex>`` (validated)."""
    if not DIGEST.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest[7:]

"""Upstreams (DESIGN "Upstreams"): fetch a host's content from another base URL.

``upstreams: {dl.k8s.io: https://artifactory.example/dl-k8s}`` sends every request for
``https://dl.k8s.io/release/v1.35.4/bin/linux/amd64/kubeadm`` to
``https://artifactory.example/dl-k8s/release/v1.35.4/bin/linux/amd64/kubeadm``. Only the request
changes: the lock, the logical names and the served paths keep the original host, so a site proxy
(Artifactory, Nexus) or a test fixture on 127.0.0.1 stands in for the Internet without changing
what the offline side sees.

A key is a host as it appears in URLs (``dl.k8s.io``, ``harbor.lan:5000``); ``docker.io`` also
covers Docker Hub's API host ``registry-1.docker.io``. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

from .manifest import upstream_error

_ALIASES = {"registry-1.docker.io": "docker.io", "index.docker.io": "docker.io"}


def parse_upstream_option(text: str) -> tuple[str, str]:
    """``HOST=URL`` (the ``--upstream`` option) → ``(host, url)``; ValueError when malformed."""
    host, sep, base = text.partition("=")
    host, base = host.strip().lower(), base.strip()
    if not sep:
        raise ValueError(f"--upstream {text!r}: expected HOST=URL")
    problem = upstream_error(host, base)
    if problem:
        raise ValueError(f"--upstream {text!r}: {problem}")
    return host, base


def _netloc_key(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port is not None else host


def rewrite(url: str, upstreams: Mapping[str, str] | None) -> str:
    """The URL to request for ``url``: its host's base URL from ``upstreams`` + the original path
    and query, or ``url`` itself when its host has no entry."""
    if not upstreams or "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    key = _netloc_key(url)
    host = key.split(":", 1)[0] if parts.port is not None else key
    base = upstreams.get(key) or upstreams.get(host)
    if base is None and host in _ALIASES:
        base = upstreams.get(_ALIASES[host])
    if base is None:
        return url
    b = urlsplit(base)
    path = b.path.rstrip("/") + (parts.path or "/")
    return urlunsplit((b.scheme, b.netloc, path, parts.query, ""))


def rewriter(upstreams: Mapping[str, str] | None) -> Callable[[str], str]:
    """``rewrite`` bound to one map: the downloader's ``_url`` (where a request for a URL goes;
    names and auth keep the original URL)."""
    ups = dict(upstreams or {})
    return lambda url: rewrite(url, ups)

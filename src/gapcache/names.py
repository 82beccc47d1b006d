"""Logical names: where an artifact lives in the mirror, derived from its upstream identity.

DESIGN "Names": files keep ``<host>/<path>``; an upstream port is written ``<host>_<port>``
(``_`` cannot appear in a host name, so this is unambiguous).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

HEX64 = re.compile(r"^[0-9a-f]{64}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
FILES_PREFIX = "files/"  # the logical paths of plain files, served at / on the files listener
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def host_component(url_or_host: str) -> str:
    """The one spelling of an upstream host in logical names: lower case, a non-default port written
    ``_<port>``. ``https://dl.k8s.io:8443/x`` → ``dl.k8s.io_8443``; a registry host ``Harbor.LAN:5000``
    → ``harbor.lan_5000``, ``quay.io:443`` → ``quay.io`` (registries speak https)."""
    url = url_or_host if "://" in url_or_host else f"https://{url_or_host}"
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


def check_repo_id(repo_id: str) -> str:
    """A yum or apt repo id: it names a folder on the repos listener (``/<id>/``) and ``<id>.repo``."""
    if not repo_id or not all(c.isalnum() or c in "-_." for c in repo_id) or repo_id.startswith("."):
        raise ValueError("repo id: letters, digits, '-', '_' and '.' only")
    return repo_id


def split_digest(digest: str) -> str:
    """``sha256:<hex>`` → ``<hex>`` (validated)."""
    if not DIGEST.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest[7:]


# ---- container image references ------------------------------------------------------------

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
HOST_RE = re.compile(r"^(?:localhost|[A-Za-z0-9.-]+\.[A-Za-z0-9-]+|[A-Za-z0-9.-]+:\d+|\[[0-9a-fA-F:]+\](?::\d+)?)$")
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")


@dataclass(frozen=True)
class ImageRef:
    """A normalised reference: ``host`` as users write it, ``repo`` path, tag and/or digest."""

    host: str
    repo: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """Repository name in the mirror: upstream host first, ``:`` written ``_``."""
        return f"{host_component(self.host)}/{self.repo}"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    def __str__(self) -> str:
        out = f"{self.host}/{self.repo}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_ref(text: str) -> ImageRef:
    """Docker's normalisation: ``ubuntu`` → docker.io/library/ubuntu:latest."""
    ref = text.strip()
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not DIGEST.match(digest):
            raise ValueError(f"{text!r}: digest must be sha256:<64 hex>")
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        if not TAG_RE.match(tag):
            raise ValueError(f"{text!r}: invalid tag {tag!r}")
    first, sep, rest = ref.partition("/")
    if sep and (("." in first or ":" in first or first == "localhost") and HOST_RE.match(first)):
        host, repo = first, rest
    else:
        host, repo = DOCKER_HUB, ref
    if host in ("index.docker.io", DOCKER_HUB_API):
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    if not REPO_RE.match(repo) or len(repo) > 255:
        raise ValueError(f"{text!r}: invalid repository name {repo!r}")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(host, repo, tag, digest)


def validate_platforms(v: list[str]) -> list[str]:
    for p in v:
        if p != "all" and not PLATFORM_RE.match(p):
            raise ValueError(f"platform {p!r}: expected os/arch[/variant] (e.g. linux/arm64) or all")
    return v


def platform_matches(wanted: list[str], platform: dict[str, Any] | None) -> bool:
    if "all" in wanted:
        return True
    if not platform:
        return False
    os_, arch, variant = platform.get("os"), platform.get("architecture"), platform.get("variant")
    for w in wanted:
        parts = w.split("/")
        if parts[0] == os_ and parts[1] == arch and (len(parts) < 3 or parts[2] == variant):
            return True
    return False

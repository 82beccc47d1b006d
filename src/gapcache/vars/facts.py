"""What ``gapcache vars`` generates from: the mirror's addresses and what a lock actually holds.

:class:`Mirrors` is where the nodes reach the mirrors (one or more hosts, in the order a node
should try them; the ports of ``gapcache serve --port NAME=N``; http or https). :class:`Facts`
is the lock read for the things nodes are pointed at: served files with their upstream URLs,
upstream registries and image repositories, yum and apt repositories, Python projects, charts.
Nothing here looks at blobs: a lock alone is enough.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import GapcacheError, UsageError
from ..lock import Item, Lock, read_lock
from ..names import DOCKER_HUB, DOCKER_HUB_API, FILES_PREFIX, parse_ref
from ..serve import LISTENERS

PLACEHOLDER = "specify-ip-here"  # the seed's placeholder; the shell vars refuse to be sourced with it
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$")


@dataclass(frozen=True)
class Mirrors:
    """Where nodes reach the mirrors: ``hosts`` in order (the first is the primary)."""

    hosts: tuple[str, ...] = (PLACEHOLDER,)
    ports: dict[str, int] = field(default_factory=lambda: dict(LISTENERS))
    scheme: str = "http"
    ca: str | None = None  # https: where the nodes keep the mirror's CA (``serve --tls auto``'s ROOT/tls/ca.crt)

    @property
    def host(self) -> str:
        return self.hosts[0]

    @property
    def placeholder(self) -> bool:
        return self.host == PLACEHOLDER

    def on(self, listener: str) -> bool:
        return self.ports.get(listener, 0) > 0

    def hostport(self, listener: str, host: str | None = None) -> str:
        return f"{host or self.host}:{self.ports[listener]}"

    def url(self, listener: str, host: str | None = None) -> str:
        return f"{self.scheme}://{self.hostport(listener, host)}"

    def urls(self, listener: str) -> list[str]:
        return [self.url(listener, h) for h in self.hosts]


def parse_hosts(values: list[str]) -> tuple[str, ...]:
    """``--mirror-host A,B --mirror-host C`` → (A, B, C); each a host name or address, no port."""
    hosts: list[str] = []
    for v in values:
        for h in (x.strip() for x in v.split(",")):
            if not h:
                continue
            if not _HOST.match(h):
                raise UsageError(f"--mirror-host {h!r}: expected a host name or address (no scheme, no port)")
            if h not in hosts:
                hosts.append(h)
    return tuple(hosts) or (PLACEHOLDER,)


def parse_ports(values: list[str]) -> dict[str, int]:
    """``--port NAME=N`` as ``gapcache serve`` takes it (0 disables a listener)."""
    ports = dict(LISTENERS)
    for v in values:
        name, sep, num = v.partition("=")
        if not sep or name not in LISTENERS or not num.isdigit() or int(num) > 65535:
            raise UsageError(f"--port {v!r}: expected NAME=PORT with NAME one of {', '.join(LISTENERS)}")
        ports[name] = int(num)
    return ports


@dataclass(frozen=True)
class ServedFile:
    path: str  # below the files listener: <host>/<path>
    source: str  # the upstream URL it was fetched from


@dataclass(frozen=True)
class Image:
    registry: str  # the upstream host as users write it: nvcr.io, docker.io, harbor.lan:5000
    server: str  # scheme://host of its API (https://registry-1.docker.io)
    name: str  # the repository in the mirror: <host_component>/<repo>
    repo: str  # the repository below the registry: nvidia/cuda, library/ubuntu
    tag: str | None
    digest: str

    @property
    def upstream(self) -> str:
        """``registry/repo`` as users write it (``docker.io/library/ubuntu``)."""
        return f"{self.registry}/{self.repo}"

    @property
    def host_dir(self) -> str:
        """The first component of the mirror name (``nvcr.io``, ``harbor.lan_5000``)."""
        return self.name.split("/", 1)[0]


@dataclass(frozen=True)
class YumRepo:
    id: str
    upstream: str  # baseurl, mirrorlist or metalink as the manifest gave it
    keys: tuple[str, ...]  # below /gpgkeys/: <id>/<name>
    upstream_keys: tuple[str, ...]
    signed: bool


@dataclass(frozen=True)
class AptRepo:
    id: str
    upstream: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    trees: tuple[tuple[str, tuple[str, ...]], ...] = (("", ()),)  # sub-tree → its architectures
    signed: bool = True  # the mirror serves /<id>/key.gpg and what it serves is signed with it


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    repo: str  # the upstream repository URL ("" when unknown)


@dataclass
class Facts:
    files: list[ServedFile] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    yum: list[YumRepo] = field(default_factory=list)
    apt: list[AptRepo] = field(default_factory=list)
    python: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    git_hosts: list[str] = field(default_factory=list)  # upstream base URLs of git repos: https://github.com/
    galaxy: bool = False

    def registries(self) -> dict[str, str]:
        """Every upstream registry in the lock, sorted, with its API server URL."""
        return dict(sorted({i.registry: i.server for i in self.images}.items()))


def _strs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return ()


def _image(item: Item) -> Image:
    ref = parse_ref(str(item.request["ref"]))
    source = next((a.source for a in item.artifacts if "://" in a.source), "")
    parts = urlsplit(source)
    if parts.scheme and parts.netloc:
        server = f"{parts.scheme}://{parts.netloc}"
    else:
        server = f"https://{DOCKER_HUB_API if ref.host == DOCKER_HUB else ref.host}"
    tag = item.resolved.get("tag")
    return Image(ref.host, server, str(item.resolved["name"]), ref.repo, str(tag) if tag else None,
                 str(item.resolved["digest"]))  # fmt: skip


def facts_of(lock: Lock) -> Facts:
    facts = Facts()
    for item in lock.items:
        req, res = item.request, item.resolved
        if item.kind == "file":
            for a in item.artifacts:
                if a.path.startswith(FILES_PREFIX):
                    facts.files.append(ServedFile(a.path[len(FILES_PREFIX) :], a.source))
        elif item.kind == "image":
            facts.images.append(_image(item))
        elif item.kind == "rpm":
            upstream = str(req.get("baseurl") or req.get("mirrorlist") or req.get("metalink") or "")
            facts.yum.append(YumRepo(str(res.get("id", item.name)), upstream, _strs(res.get("keys")),
                                     _strs(req.get("gpgkey")), bool(res.get("signed", True))))  # fmt: skip
        elif item.kind == "apt":
            rid = str(res.get("id") or item.name)
            archs = _strs(res.get("architectures"))
            trees = res.get("trees") or {"": list(archs)}
            has_key = any(a.path == f"apt/{rid}/key.gpg" for a in item.artifacts)
            facts.apt.append(AptRepo(
                rid, str(req.get("url") or ""), _strs(res.get("suites")), _strs(res.get("components")), archs,
                tuple((str(t), _strs(a)) for t, a in dict(trees).items()),
                has_key and (res.get("mode") == "packages" or bool(res.get("verified"))),
            ))  # fmt: skip
        elif item.kind == "python":
            facts.python.append(str(res.get("project", item.name)))
        elif item.kind == "git" and "://" in str(res.get("url", "")):
            parts = urlsplit(str(res["url"]))
            base = f"{parts.scheme}://{parts.netloc}/"
            if base not in facts.git_hosts:
                facts.git_hosts.append(base)
        elif item.kind == "galaxy":
            facts.galaxy = True
        elif item.kind == "chart":
            repo = str(req.get("repo") or res.get("repo") or "")
            facts.charts.append(Chart(str(res.get("name") or req.get("name") or item.name),
                                      str(res.get("version") or req.get("version") or ""), repo))  # fmt: skip
    facts.files.sort(key=lambda f: f.path)
    facts.git_hosts.sort()
    facts.images.sort(key=lambda i: (i.name, i.tag or "", i.digest))
    return facts


def files_url(m: Mirrors, path: str) -> str:
    return f"{m.url('files')}/{quote(path)}"


def load_lock(root: str | None = None, archive: str | None = None, lock: str | None = None) -> Lock:
    """The lock from a loaded root, an archive (or its parts/TOC), or a lock file."""
    given = [x for x in (root, archive, lock) if x]
    if len(given) > 1:
        raise UsageError("give one of --root, --archive or --lock")
    if lock:
        return read_lock(Path(lock))
    if archive:
        from ..archive import read_head, resolve_parts

        return read_head(resolve_parts([Path(archive)])[0]).lock
    from ..root import Root

    path = Path(root or "/opt/deepops")
    if not path.exists():
        raise GapcacheError(f"{path}: no such root; give --root DIR, --archive ARCHIVE or --lock LOCK")
    return Root(path).current_lock()


DEFAULT_CA = "/etc/gapcache/ca.crt"  # where the nodes keep the mirror's CA (vars --https; --ca PATH)


def root_ca(root: str | None) -> str | None:
    """The CA ``serve --tls auto`` keeps in a root (``ROOT/tls/ca.crt``), to carry to the nodes."""
    if not root:
        return None
    try:
        return (Path(root) / "tls" / "ca.crt").read_text()
    except OSError:
        return None

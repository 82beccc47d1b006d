"""The loop back: ``misses.jsonl`` (requests the mirrors could not answer) → a manifest delta.

``gapcache misses --root DIR [--since TIME]`` reads the miss log and the lock being served, and
writes a manifest (``format: 1``) with what the request paths tell:

- files (8004) ``/<host>/<path>`` → ``files: [{url: https://<host>/<path>}]`` (the scheme the lock
  used for that host, else https; ``host_port`` → ``host:port``); ``/git/<host>/<path>.git/info/refs``
  → ``git: [{url}]`` (only that request says a repository is absent: a dumb clone also asks for
  loose objects of repositories that are there);
- registry (5000) ``/v2/<name>/manifests/<tag|digest>`` → ``images:`` (a short name with
  containerd's ``?ns=<host>`` gets that host; without one, docker.io);
- pypi (8003) ``/simple/<project>/`` → ``python.requirements`` with the lock's targets;
- repos (8001) ``/<id>/…/<name>-<ver>-<rel>.<arch>.rpm`` or ``…/<name>_<ver>_<arch>.deb`` of a
  repository in the lock → that repository's entry (as the lock recorded it) with ``mode: packages``
  and the missing packages;
- charts (8002) ``/charts/<name>-<version>.tgz``, ``/api/charts/<name>[/<version>]`` → ``charts:``
  with the repository the lock has for that chart name.

What is already in the lock (a miss that a later load closed) is left out; what the paths cannot
tell is listed as a comment. The delta is validated with the manifest parser before it is printed;
build it on the connected side with the old manifest (``-f old.yaml -f delta.yaml``).
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from .errors import GapcacheError, ManifestError, UsageError
from .lock import Lock
from .manifest import parse_manifest
from .names import FILES_PREFIX

_RPM = re.compile(r"^(?P<name>.+)-[^-]+-[^-]+\.[A-Za-z0-9_]+\.rpm$")
_DEB = re.compile(r"^(?P<name>[a-z0-9][a-z0-9+.-]*)_[^_]+_[a-z0-9-]+\.deb$")
_CHART = re.compile(r"^(?P<name>.+?)-(?P<version>v?\d+\.\d+.*)\.tgz$")
_SKIP_FILES = {"", "favicon.ico", "robots.txt", "ca.crt"}


def parse_since(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--since {text!r}: expected an ISO time (2025-01-31 or 2025-01-31T12:00:00Z)") from exc
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def read_misses(path: Path, since: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """The log's entries (lines that are not JSON objects are skipped), at or after ``since``."""
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            continue
        if since is not None:
            try:
                if parse_since(str(entry.get("time", ""))) < since:
                    continue
            except UsageError:
                continue
        out.append(entry)
    return out


def _host(segment: str) -> str:
    """``harbor.lan_5000`` → ``harbor.lan:5000`` (DESIGN "Names")."""
    host, sep, port = segment.rpartition("_")
    return f"{host}:{port}" if sep and port.isdigit() else segment


@dataclass
class Delta:
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    git: dict[str, dict[str, str]] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    python: set[str] = field(default_factory=set)
    repos: dict[str, tuple[str, dict[str, Any], set[str]]] = field(default_factory=dict)  # id → (kind, entry, pkgs)
    charts: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)


class _Reader:
    def __init__(self, lock: Lock | None) -> None:
        self.lock = lock
        items = lock.items if lock else []
        self.paths = {a.path for i in items for a in i.artifacts}
        self.schemes: dict[str, str] = {}
        for i in items:
            if i.kind == "file":
                for a in i.artifacts:
                    host = a.path[len(FILES_PREFIX) :].split("/", 1)[0]
                    self.schemes.setdefault(_host(host), urlsplit(a.source).scheme or "https")
        self.images = {i.name for i in items if i.kind == "image"}
        self.projects = {str(i.resolved.get("project", "")).lower() for i in items if i.kind == "python"}
        self.targets: list[dict[str, str]] = []
        for i in items:
            for label in i.resolved.get("targets", []) if i.kind == "python" else []:
                py, _, plat = str(label).partition("-")
                t = {"python": f"{py[2]}.{py[3:]}", "platform": plat}
                if t not in self.targets:
                    self.targets.append(t)
        self.repos = {i.name: i for i in items if i.kind in ("rpm", "apt")}
        self.chart_repos = {
            str(i.resolved.get("name")): str(i.request.get("repo", "")) for i in items if i.kind == "chart"
        }
        self.charts = {i.name for i in items if i.kind == "chart"}
        self.delta = Delta()

    def entry(self, e: dict[str, Any]) -> None:
        parts = urlsplit(str(e["path"]))
        path = unquote(parts.path)
        listener = str(e.get("listener", ""))
        handler = {"files": self.files, "registry": self.registry, "pypi": self.pypi, "repos": self.repo,
                   "charts": self.chart}.get(listener)  # fmt: skip
        if handler is None or not handler(path, parse_qs(parts.query)):
            self.delta.unresolved.append(f"{listener} {path}")

    def files(self, path: str, query: dict[str, list[str]]) -> bool:
        rel = path.lstrip("/")
        if rel.startswith("git/"):
            m = re.match(r"^git/([^/]+)/(.+?)(?:\.git)?/info/refs$", rel)
            if m:
                url = f"https://{_host(m.group(1))}/{m.group(2)}.git"
                self.delta.git[url] = {"url": url}
            return True  # loose-object probes of dumb clones: not a miss of content
        if rel in _SKIP_FILES or rel.endswith("/") or "/" not in rel or rel.startswith("galaxy/"):
            return rel in _SKIP_FILES or rel.endswith("/")
        if FILES_PREFIX + rel in self.paths:
            return True
        host, rest = rel.split("/", 1)
        url = f"{self.schemes.get(_host(host), 'https')}://{_host(host)}/{rest}"
        self.delta.files[url] = {"url": url}
        return True

    def registry(self, path: str, query: dict[str, list[str]]) -> bool:
        m = re.match(r"^/v2/(.+)/manifests/([^/]+)$", path)
        if not m:
            return path.rstrip("/") in ("/v2", "/v2/_catalog") or "/blobs/" in path or path.endswith("/tags/list")
        name, ref = m.group(1), m.group(2)
        first = name.split("/", 1)[0]
        if "." in first or "_" in first or ":" in first or first == "localhost":
            name = _host(first) + name[len(first) :]
        else:
            ns = query.get("ns", ["docker.io"])[0]
            name = f"docker.io/library/{name}" if ns == "docker.io" and "/" not in name else f"{ns}/{name}"
        image = f"{name}@{ref}" if ref.startswith("sha256:") else f"{name}:{ref}"
        if image not in self.images:
            self.delta.images.add(image)
        return True

    def pypi(self, path: str, query: dict[str, list[str]]) -> bool:
        m = re.match(r"^/simple/([^/]+)/?$", path)
        if not m:
            return path.startswith("/packages/") or path.rstrip("/") == "/simple"
        project = re.sub(r"[-_.]+", "-", m.group(1)).lower()
        if project not in self.projects:
            self.delta.python.add(project)
        return True

    def repo(self, path: str, query: dict[str, list[str]]) -> bool:
        repo_id, _, rest = path.lstrip("/").partition("/")
        item = self.repos.get(repo_id)
        base = rest.rsplit("/", 1)[-1]
        m = (_RPM if item is not None and item.kind == "rpm" else _DEB).match(base)
        if item is None or m is None:
            return False
        self.delta.repos.setdefault(repo_id, (item.kind, dict(item.request), set()))[2].add(m.group("name"))
        return True

    def chart(self, path: str, query: dict[str, list[str]]) -> bool:
        m = re.match(r"^/charts/([^/]+)$", path)
        name, version = "", ""
        if m:
            c = _CHART.match(m.group(1).removesuffix(".prov"))
            if c:
                name, version = c.group("name"), c.group("version")
        else:
            a = re.match(r"^/api/charts/([^/]+)(?:/([^/]+))?/?$", path)
            if a:
                name, version = a.group(1), a.group(2) or ""
        if not name:
            return path in ("/index.yaml", "/health", "/")
        if f"{name}-{version}" in self.charts:
            return True
        repo = self.chart_repos.get(name)
        if not repo:
            return False  # which repository has it, the path does not say
        entry = {"repo": repo, "name": name}
        if version:
            entry["version"] = version
        self.delta.charts[(name, version)] = entry
        return True


def delta_of(entries: list[dict[str, Any]], lock: Lock | None) -> Delta:
    reader = _Reader(lock)
    for e in entries:
        reader.entry(e)
    reader.delta.unresolved = sorted(set(reader.delta.unresolved))
    return reader.delta


def render(delta: Delta, lock: Lock | None, source: str = "misses.jsonl") -> tuple[str, int]:
    """The delta as a manifest (validated); returns the text and the number of entries in it."""
    doc: dict[str, Any] = {"format": 1}
    if delta.files:
        doc["files"] = [delta.files[k] for k in sorted(delta.files)]
    if delta.images:
        doc["images"] = sorted(delta.images)
    if delta.python:
        section: dict[str, Any] = {"requirements": sorted(delta.python)}
        targets = _Reader(lock).targets
        if targets:
            section["targets"] = targets
        doc["python"] = section
    for kind, key in (("rpm", "yum"), ("apt", "apt")):
        repos = [
            {**entry, "mode": "packages", "packages": sorted(pkgs)}
            for _, (k, entry, pkgs) in sorted(delta.repos.items())
            if k == kind
        ]
        if repos:
            doc[key] = repos
    if delta.charts:
        doc["charts"] = [delta.charts[k] for k in sorted(delta.charts)]
    if delta.git:
        doc["git"] = [delta.git[k] for k in sorted(delta.git)]
    count = sum(
        len(v) if isinstance(v, list) else len(v.get("requirements", [])) for k, v in doc.items() if k != "format"
    )
    head = [
        f"# gapcache misses: a manifest delta from {source}: {count} entr{'y' if count == 1 else 'ies'}",
        "# build it on the connected side with the old manifest: gapcache build -f old.yaml -f delta.yaml …",
    ]
    head += [f"# not derivable from the request path: {u}" for u in delta.unresolved[:200]]
    text = "\n".join(head) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    try:
        parse_manifest(text, "<misses delta>")
    except ManifestError as exc:
        raise GapcacheError(f"the manifest delta does not validate (a gapcache bug): {exc}") from exc
    return text, count

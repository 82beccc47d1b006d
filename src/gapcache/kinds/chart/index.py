"""Chart repository indexes: read an upstream ``index.yaml``, pick a version, and render the index
(and the ChartMuseum read API bodies) that the mirror serves.

Everything here is bytes in, bytes or data out: the kind glue fetches ``<repo>/index.yaml`` with
the shared downloader. Scalars are kept as the strings the index holds (``created`` is not turned
into a datetime, ``appVersion: 1.10`` is not turned into the float 1.1), so an entry's metadata goes into
the lock and comes back out unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import yaml

from ...errors import GapcacheError
from .semver import SemverError, best_match, parse_version

__all__ = [
    "BadIndex",
    "ChartNotFound",
    "ChartVersion",
    "RepoIndex",
    "chartmuseum_chart",
    "chartmuseum_charts",
    "chartmuseum_version",
    "load_yaml",
    "parse_index",
    "render_index",
    "resolve_url",
    "served_entries",
    "served_path",
]


class BadIndex(GapcacheError):
    """An index.yaml that cannot be read."""


class ChartNotFound(GapcacheError):
    """The repository has no such chart, or no version of it matches."""

    def __init__(self, repo: str, name: str, version: str | None = None, available: Iterable[str] = ()) -> None:
        self.repo, self.name, self.version = repo, name, version
        avail = list(available)
        if version is None or not avail:
            msg = f"{repo}: no chart named {name!r}"
        else:
            shown = ", ".join(avail[:10]) + (", …" if len(avail) > 10 else "")
            msg = f"{repo}: chart {name!r} has no version matching {version!r} (available: {shown})"
        super().__init__(msg)


class _StrLoader(yaml.SafeLoader):
    """SafeLoader that keeps numbers and timestamps as the strings written: no field of Helm's
    chart metadata is a number, and Helm's reader keeps ``appVersion: 1.10`` as "1.10"."""


_NOT_STRINGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_StrLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in _NOT_STRINGS]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(data: bytes | str) -> Any:
    """YAML as Helm's index reader sees it, except timestamps stay strings."""
    return yaml.load(data, Loader=_StrLoader)


def resolve_url(repo_url: str, url: str) -> str:
    """An entry's URL against its repository URL, as Helm's ``ResolveReferenceURL`` does.

    Absolute URLs stay; a relative one is resolved against the repository URL with a trailing
    ``/`` (``https://h/charts`` + ``app-1.0.0.tgz`` → ``https://h/charts/app-1.0.0.tgz``), and
    the repository URL's query string (a signed-URL token) is carried onto the result.
    """
    if urlsplit(url).scheme:
        return url
    base = urlsplit(repo_url)
    base_path = base.path.rstrip("/") + "/"
    joined = urlsplit(urljoin(urlunsplit((base.scheme, base.netloc, base_path, "", "")), url))
    return urlunsplit((joined.scheme, joined.netloc, joined.path, base.query, ""))


@dataclass
class ChartVersion:
    """One version of one chart in an index.

    ``entry`` is the index entry as published (every metadata field: description, keywords,
    maintainers, annotations, kubeVersion, type …); ``urls`` are absolute.
    """

    name: str
    version: str
    urls: list[str]
    digest: str | None  # "sha256:<hex>" when the index gives one
    entry: dict[str, Any] = field(repr=False)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def created(self) -> str | None:
        c = self.entry.get("created")
        return str(c) if c is not None else None

    @property
    def app_version(self) -> str | None:
        a = self.entry.get("appVersion")
        return str(a) if a is not None else None

    @property
    def dependencies(self) -> list[dict[str, Any]]:
        deps = self.entry.get("dependencies") or []
        return [d for d in deps if isinstance(d, dict)]

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tgz"

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], repo_url: str = "") -> ChartVersion:
        """From an index entry (or the ``entry`` kept in a lock). :class:`BadIndex` if malformed."""
        name, version = entry.get("name"), entry.get("version")
        if not isinstance(name, str) or not name or version is None or isinstance(version, (dict, list)):
            raise BadIndex(f"index entry without a name and version: {dict(entry)!r:.200}")
        urls = entry.get("urls") or []
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise BadIndex(f"chart {name} {version}: no urls")
        digest = entry.get("digest")
        if digest is not None:
            digest = str(digest)
            digest = digest if digest.startswith("sha256:") else "sha256:" + digest
        clean = dict(entry)
        clean["version"] = str(version)
        return cls(name, str(version), [resolve_url(repo_url, u) if repo_url else u for u in urls], digest, clean)


@dataclass
class RepoIndex:
    url: str
    entries: dict[str, list[ChartVersion]]  # each list highest version first
    generated: str | None = None
    skipped: list[str] = field(default_factory=list)  # entries Helm would skip too, with why

    def versions(self, name: str) -> list[str]:
        return [cv.version for cv in self.entries.get(name, [])]

    def get(self, name: str, constraint: str | None = None, *, devel: bool = False) -> ChartVersion:
        """The version Helm would pick: the exact version string, else the highest match of the
        semver constraint (``None``/``""``: the latest release). :class:`ChartNotFound` names the
        chart, the constraint and what exists; :class:`SemverError` for a bad constraint."""
        found = self.entries.get(name)
        if not found:
            raise ChartNotFound(self.url, name)
        chosen = best_match(constraint or "", [cv.version for cv in found], devel=devel)
        if chosen is None:
            raise ChartNotFound(self.url, name, constraint or "*", self.versions(name))
        return next(cv for cv in found if cv.version == chosen)


def _version_key(cv: ChartVersion) -> tuple[int, Any]:
    try:
        return (1, parse_version(cv.version))
    except SemverError:
        return (0, cv.version)


def _sorted_desc(versions: list[ChartVersion]) -> list[ChartVersion]:
    parsable = [cv for cv in versions if _version_key(cv)[0]]
    others = sorted((cv for cv in versions if not _version_key(cv)[0]), key=lambda cv: cv.version)
    parsable.sort(key=lambda cv: (parse_version(cv.version), cv.version), reverse=True)
    return parsable + others


def parse_index(data: bytes, repo_url: str) -> RepoIndex:
    """Parse an upstream ``index.yaml`` (JSON is YAML too). Entries Helm would skip (no name,
    version or urls) are left out and listed in ``skipped``; a document that is not an index at
    all raises :class:`BadIndex`."""
    try:
        doc = load_yaml(data)
    except yaml.YAMLError as e:
        raise BadIndex(f"{repo_url}/index.yaml: not YAML: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("entries", {}) or {}, dict):
        raise BadIndex(f"{repo_url}/index.yaml: not a chart repository index")
    if "apiVersion" not in doc:
        raise BadIndex(f"{repo_url}/index.yaml: no apiVersion (not a chart repository index)")
    entries: dict[str, list[ChartVersion]] = {}
    skipped: list[str] = []
    for key, versions in (doc.get("entries") or {}).items():
        for entry in versions or []:
            if not isinstance(entry, dict):
                skipped.append(f"{key}: entry is not a mapping")
                continue
            entry = {"name": key, **entry} if "name" not in entry else entry
            try:
                cv = ChartVersion.from_entry(entry, repo_url)
            except BadIndex as e:
                skipped.append(f"{key}: {e}")
                continue
            entries.setdefault(cv.name, []).append(cv)
    gen = doc.get("generated")
    return RepoIndex(
        repo_url,
        {k: _sorted_desc(v) for k, v in sorted(entries.items())},
        str(gen) if gen is not None else None,
        skipped,
    )


# --- what the mirror serves -------------------------------------------------------------------


def served_path(name: str, version: str) -> str:
    """Where the mirror serves a chart archive, relative to its root: ``charts/<name>-<version>.tgz``."""
    return f"charts/{name}-{version}.tgz"


def served_entries(charts: Iterable[ChartVersion], base: str) -> dict[str, list[dict[str, Any]]]:
    """Index entries for the served charts: metadata kept, ``urls`` pointing at
    ``{base}/charts/<name>-<version>.tgz`` (``base`` ``""`` gives relative URLs), the digest as
    the bare hex Helm writes. Names sorted; versions highest first; duplicates collapse."""
    by_name: dict[str, dict[str, ChartVersion]] = {}
    for cv in charts:
        by_name.setdefault(cv.name, {})[cv.version] = cv
    base = base.rstrip("/")
    out: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(by_name):
        rows = []
        for cv in _sorted_desc(list(by_name[name].values())):
            entry = {k: v for k, v in cv.entry.items() if k != "urls"}
            path = served_path(cv.name, cv.version)
            entry["urls"] = [f"{base}/{path}" if base else path]
            entry["name"], entry["version"] = cv.name, cv.version
            if cv.digest:
                entry["digest"] = cv.digest.removeprefix("sha256:")
            rows.append(entry)
        out[name] = rows
    return out


def _generated(charts: list[ChartVersion]) -> str:
    created = sorted(c for cv in charts if (c := cv.created))
    return created[-1] if created else "1970-01-01T00:00:00Z"


def render_index(charts: Iterable[ChartVersion], base: str, *, generated: str | None = None) -> bytes:
    """The ``index.yaml`` the mirror serves for ``charts``, every URL under ``base``.

    Deterministic: keys sorted, versions highest first, and ``generated`` is taken from the data
    (the newest ``created`` of the entries, or the epoch) unless given, never from the clock.
    """
    listed = list(charts)
    doc = {
        "apiVersion": "v1",
        "entries": served_entries(listed, base),
        "generated": generated or _generated(listed),
    }
    text = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, allow_unicode=True, width=1 << 16)
    return text.encode()


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chartmuseum_charts(charts: Iterable[ChartVersion], base: str = "") -> bytes:
    """Body of ChartMuseum's ``GET /api/charts``: ``{name: [entry, …]}`` (JSON)."""
    return _json(served_entries(charts, base))


def chartmuseum_chart(charts: Iterable[ChartVersion], name: str, base: str = "") -> bytes | None:
    """Body of ``GET /api/charts/<name>``: ``[entry, …]``, or ``None`` (a 404) if no such chart."""
    rows = served_entries((cv for cv in charts if cv.name == name), base).get(name)
    return _json(rows) if rows else None


def chartmuseum_version(charts: Iterable[ChartVersion], name: str, version: str, base: str = "") -> bytes | None:
    """Body of ``GET /api/charts/<name>/<version>``: the entry, or ``None`` (a 404).

    ChartMuseum also accepts ``latest`` for the highest version; so does this."""
    rows = served_entries((cv for cv in charts if cv.name == name), base).get(name) or []
    if version == "latest" and rows:
        return _json(rows[0])
    row = next((r for r in rows if r["version"] == version), None)
    return _json(row) if row is not None else None

"""Read a chart archive (``.tgz``) safely: its Chart.yaml, values.yaml and dependencies.

The archive is read in memory and nothing is extracted. Members with absolute paths, ``..``,
links or devices are refused (:class:`~gapcache.errors.UnsafeMember`), and sizes are bounded
like Helm's loader (100 MiB decompressed in all, 5 MiB per file) so a gzip bomb stops early.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ...errors import ArchiveError, UnsafeMember

__all__ = [
    "MAX_CHART_SIZE",
    "MAX_FILE_SIZE",
    "ChartFile",
    "Dependency",
    "InvalidChart",
    "dependency_enabled",
    "read_chart",
]

MAX_CHART_SIZE = 100 * 1024 * 1024  # Helm's MaxDecompressedChartSize
MAX_FILE_SIZE = 5 * 1024 * 1024  # Helm's MaxDecompressedFileSize


class InvalidChart(ArchiveError):
    """Not a chart archive Helm could load (no Chart.yaml, bad YAML, no name/version)."""


@dataclass(frozen=True)
class Dependency:
    """A dependency declared in Chart.yaml (or requirements.yaml for apiVersion v1 charts)."""

    name: str
    version: str  # a semver constraint; "" when the chart gives none
    repository: str  # https://…, oci://…, file://…, @alias, or "" (vendored only)
    condition: str | None = None
    alias: str | None = None
    tags: tuple[str, ...] = ()
    vendored: bool = False  # a subchart of that name is present under charts/

    @property
    def is_oci(self) -> bool:
        return self.repository.startswith("oci://")


@dataclass
class ChartFile:
    name: str
    version: str
    api_version: str
    app_version: str | None
    metadata: dict[str, Any]  # Chart.yaml as parsed
    dependencies: list[Dependency]
    values: dict[str, Any]  # values.yaml as parsed ({} when absent)
    values_text: str  # values.yaml as written ("" when absent)
    files: dict[str, bytes] = field(repr=False)  # every file, by path inside the chart directory
    subcharts: dict[str, ChartFile] = field(default_factory=dict, repr=False)  # vendored, by name

    @property
    def templates(self) -> dict[str, bytes]:
        return {p: d for p, d in self.files.items() if p.startswith("templates/")}

    @property
    def missing_dependencies(self) -> list[Dependency]:
        """Declared dependencies not vendored in ``charts/``: the ones a mirror must carry too."""
        return [d for d in self.dependencies if not d.vendored]


def _safe_members(tf: tarfile.TarFile, label: str) -> list[tarfile.TarInfo]:
    members = []
    total = 0
    for m in tf:
        name = m.name
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise UnsafeMember(label, name, "absolute path")
        if ".." in parts:
            raise UnsafeMember(label, name, "path with '..'")
        if m.issym() or m.islnk():
            raise UnsafeMember(label, name, f"link to {m.linkname!r}")
        if not (m.isfile() or m.isdir()):
            raise UnsafeMember(label, name, "not a regular file or directory")
        if m.isfile():
            if m.size > MAX_FILE_SIZE:
                raise InvalidChart(f"{label}: {name} is larger than {MAX_FILE_SIZE} bytes")
            total += m.size
            if total > MAX_CHART_SIZE:
                raise InvalidChart(f"{label}: decompressed chart is larger than {MAX_CHART_SIZE} bytes")
        members.append(m)
    return members


def _load_yaml(data: bytes, what: str) -> Any:
    try:
        return yaml.safe_load(data.decode("utf-8-sig")) if data.strip() else None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InvalidChart(f"{what}: not valid YAML: {e}") from e


def _dependencies(raw: Any, label: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
        raise InvalidChart(f"{label}: dependencies must be a list of mappings")
    return raw


def read_chart(data: bytes, label: str = "chart", *, _depth: int = 0) -> ChartFile:
    """Read a chart archive from its bytes; ``label`` names it in errors (its URL or name).

    Raises :class:`~gapcache.errors.UnsafeMember` for a hostile member and :class:`InvalidChart`
    for anything Helm would not load.
    """
    if _depth > 5:
        raise InvalidChart(f"{label}: subcharts nested too deep")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            members = _safe_members(tf, label)
            files: dict[str, bytes] = {}
            for m in members:
                if not m.isfile():
                    continue
                path = m.name.replace("\\", "/")
                while path.startswith("./"):
                    path = path[2:]
                parts = path.split("/", 1)
                if len(parts) < 2 or not parts[1]:
                    continue  # Helm ignores files at the top level (outside the chart directory)
                f = tf.extractfile(m)
                if f is None:
                    continue
                files[parts[1]] = f.read()
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as e:
        raise InvalidChart(f"{label}: not a chart archive: {e}") from e

    return _from_files(files, label, _depth)


def _from_files(files: dict[str, bytes], label: str, _depth: int) -> ChartFile:
    if "Chart.yaml" not in files:
        raise InvalidChart(f"{label}: no Chart.yaml")
    meta = _load_yaml(files["Chart.yaml"], f"{label}: Chart.yaml")
    if not isinstance(meta, dict):
        raise InvalidChart(f"{label}: Chart.yaml is not a mapping")
    name, version = meta.get("name"), meta.get("version")
    if not isinstance(name, str) or not name or version is None or str(version) == "":
        raise InvalidChart(f"{label}: Chart.yaml has no name or version")
    api_version = str(meta.get("apiVersion") or "v1")

    raw_deps = _dependencies(meta.get("dependencies"), f"{label}: Chart.yaml")
    if api_version == "v1" and not raw_deps and "requirements.yaml" in files:
        req = _load_yaml(files["requirements.yaml"], f"{label}: requirements.yaml") or {}
        raw_deps = _dependencies(req.get("dependencies") if isinstance(req, dict) else None, label)

    subcharts: dict[str, ChartFile] = {}
    sub_dirs: dict[str, dict[str, bytes]] = {}
    for path, content in files.items():
        parts = path.split("/")
        if parts[0] != "charts" or len(parts) < 2:
            continue
        if len(parts) == 2 and parts[1].endswith(".tgz"):
            sub = read_chart(content, f"{label}: {path}", _depth=_depth + 1)
            subcharts[sub.name] = sub
        elif len(parts) >= 3:
            sub_dirs.setdefault(parts[1], {})["/".join(parts[2:])] = content
    for dirname, sub_files in sub_dirs.items():
        sub_meta = (
            _load_yaml(sub_files["Chart.yaml"], f"{label}: charts/{dirname}") if "Chart.yaml" in sub_files else None
        )
        if isinstance(sub_meta, dict) and isinstance(sub_meta.get("name"), str):
            subcharts.setdefault(
                sub_meta["name"],
                ChartFile(
                    sub_meta["name"],
                    str(sub_meta.get("version", "")),
                    str(sub_meta.get("apiVersion") or "v1"),
                    None,
                    sub_meta,
                    [],
                    {},
                    "",
                    sub_files,
                ),
            )

    deps = []
    for d in raw_deps:
        dep_name = d.get("name")
        if not isinstance(dep_name, str) or not dep_name:
            raise InvalidChart(f"{label}: a dependency without a name")
        tags = d.get("tags") or []
        deps.append(
            Dependency(
                name=dep_name,
                version=str(d.get("version") or ""),
                repository=str(d.get("repository") or ""),
                condition=str(d["condition"]) if d.get("condition") else None,
                alias=str(d["alias"]) if d.get("alias") else None,
                tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
                vendored=dep_name in subcharts,
            )
        )

    values_raw = files.get("values.yaml", b"")
    values = _load_yaml(values_raw, f"{label}: values.yaml") if values_raw else None
    if values is not None and not isinstance(values, dict):
        raise InvalidChart(f"{label}: values.yaml is not a mapping")
    app = meta.get("appVersion")
    return ChartFile(
        name=name,
        version=str(version),
        api_version=api_version,
        app_version=str(app) if app is not None else None,
        metadata=meta,
        dependencies=deps,
        values=values or {},
        values_text=values_raw.decode("utf-8-sig", errors="replace"),
        files=files,
        subcharts=subcharts,
    )


def _lookup(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for key in dotted.strip().split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def dependency_enabled(dep: Dependency, values: Mapping[str, Any]) -> bool:
    """Whether Helm would enable ``dep`` with ``values`` (the parent chart's merged values).

    Helm's rules: the first path of ``condition`` (comma-separated) that holds a boolean decides;
    otherwise ``tags``: disabled only if some tag is set and none of its set tags is true;
    otherwise enabled.
    """
    if dep.condition:
        for path in dep.condition.split(","):
            v = _lookup(values, path)
            if isinstance(v, bool):
                return v
    if dep.tags:
        tag_values = values.get("tags") if isinstance(values.get("tags"), Mapping) else {}
        assert isinstance(tag_values, Mapping)
        set_tags = [tag_values[t] for t in dep.tags if isinstance(tag_values.get(t), bool)]
        if set_tags:
            return any(set_tags)
    return True

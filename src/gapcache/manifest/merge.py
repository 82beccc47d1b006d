"""Layered manifests: a profile (or any manifest) with site manifests on top.

``gapcache build --profile deepops -f site.yaml -f lab.yaml`` starts from the profile and applies
each ``-f`` in order. Every layer is validated on its own first (``parse_manifest``: errors name
its file and line), then merged; problems only the merge can see (an ``exclude:`` that matches
nothing) also name the layer's file and line.

What a layer does to the manifests below it:

- ``exclude: [PATTERN, …]`` removes entries first. A pattern is ``[SECTION:]GLOB`` (fnmatch);
  it is matched against an entry's names — files: URL and logical path (with or without
  ``files/``); images: the reference as written and normalised (``docker.io/library/nginx:1.28``)
  and the repository without tag; yum/apt: id; charts: name, ``repo/name`` or ``oci://`` ref;
  python: the requirement's project name (excluding all of them drops the section).
  ``images:quay.io/*`` leaves out every quay.io image.
  A pattern that matches nothing is an error (a typo would otherwise go unnoticed).
- list sections add entries; an entry with the key of an existing one replaces it (files: logical
  path, images: normalised reference, yum/apt: id, charts: ``oci://`` ref or repo + name);
- ``platforms:`` replaces the platforms, and drops the files below it that are built for other
  architectures (an ``amd64``/``arm64``/``x86_64``/``aarch64``/… component in the URL);
- ``registries:`` and ``upstreams:`` merge by key (the layer wins);
- ``python:`` adds its requirements and requirements files; its other fields replace;
- any other field the layer sets replaces (``images_exclude`` adds).

A built-in profile may carry what a plain manifest may not: a ``from:`` line in an entry (its
origin) and sections of kinds this gapcache does not know yet. :func:`read_annotated` takes
both out — blanking their lines, so every other line keeps its number — and reports them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ..errors import ManifestError
from ..names import default_file_path, parse_ref
from . import Loc, Manifest, _compose, parse_manifest

LIST_SECTIONS = ("files", "images", "yum", "apt", "charts")
SECTIONS = (*LIST_SECTIONS, "python")
_ARCHES = {
    "amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "aarch64": "arm64", "sbsa": "arm64",
    "ppc64le": "ppc64le", "s390x": "s390x",
}  # fmt: skip
_ARCH_RE = re.compile(r"(?<![a-z0-9])(" + "|".join(_ARCHES) + r")(?![a-z0-9])")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass
class Layer:
    """One validated manifest and where its lines are (for errors the merge finds)."""

    manifest: Manifest
    source: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, *loc: str | int) -> int:
        return self.lines.get(tuple(loc), 1)


@dataclass
class Annotated:
    """A profile's text with its annotations taken out."""

    text: str  # what parse_manifest validates: `from:` lines and pending sections blanked
    raw: dict[str, Any]  # the whole document as plain data (every section, `from:` included)
    origins: dict[tuple[str, int], str]  # (section, index) → the entry's `from:`
    pending: dict[str, int]  # sections of kinds Manifest does not know yet → their line


# ---- entries: names, keys ------------------------------------------------------------------------


def plain(entry: Any) -> Any:
    """An entry as plain data (a model dumped; an image written as a string → ``{"ref": …}``)."""
    if isinstance(entry, BaseModel):
        return entry.model_dump(exclude_defaults=True)
    return entry


def _req_name(req: str) -> str:
    m = _REQ_NAME.match(req)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else req


def entry_names(section: str, entry: Any) -> list[str]:
    """Every name an ``exclude:`` pattern is matched against."""
    e = plain(entry)
    if section == "python":
        return [_req_name(str(e))]
    if section == "images":
        text = e if isinstance(e, str) else str(e.get("ref", ""))
        try:
            ref = parse_ref(text)
        except ValueError:
            return [text]
        return [text, str(ref), f"{ref.host}/{ref.repo}", ref.name]
    if not isinstance(e, dict):
        return [str(e)]
    if section == "files":
        url = str(e.get("url", ""))
        path = str(e["path"]) if e.get("path") else default_file_path(url)
        return [url, path, "files/" + path]
    if section == "charts":
        if e.get("ref"):
            return [str(e["ref"]), str(e["ref"]).rsplit("/", 1)[-1]]
        return [str(e.get("name", "")), f"{str(e.get('repo', '')).rstrip('/')}/{e.get('name', '')}"]
    return [str(e[k]) for k in ("id", "name", "url", "ref") if e.get(k)]


def entry_key(section: str, entry: Any) -> str:
    """The identity a later layer's entry replaces (see the module docstring)."""
    names = entry_names(section, entry)
    if section == "images":
        return names[1] if len(names) > 1 else names[0]
    if section == "files":
        return names[2]
    if section == "charts" and not plain(entry).get("ref"):
        return names[1]  # repo/name
    return names[0]


def split_pattern(pattern: str) -> tuple[str | None, str]:
    head, sep, rest = pattern.partition(":")
    if sep and head in SECTIONS:
        return head, rest
    return None, pattern


def _matches(section: str, entry: Any, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(n, pattern) for n in entry_names(section, entry))


# ---- merging -------------------------------------------------------------------------------------


def _file_arches(url: str) -> set[str]:
    return {_ARCHES[m.group(1)] for m in _ARCH_RE.finditer(url.lower())}


def _entries(data: dict[str, Any], section: str) -> list[Any]:
    if section == "python":
        py = data.get("python")
        return list(py.requirements) if py is not None else []
    return list(data.get(section) or [])


def _set_entries(data: dict[str, Any], section: str, entries: list[Any]) -> None:
    if section == "python":
        py = data["python"].model_copy(update={"requirements": entries})
        data["python"] = py if entries or py.requirements_files else None  # nothing left to resolve
    else:
        data[section] = entries


def merge(base: Manifest, layer: Layer) -> Manifest:
    """``layer`` on top of ``base`` (see the module docstring); errors name the layer's lines."""
    site, source = layer.manifest, layer.source
    known = [s for s in SECTIONS if s in Manifest.model_fields]
    data: dict[str, Any] = {name: getattr(base, name) for name in Manifest.model_fields}
    problems: list[str] = []
    for i, text in enumerate(site.exclude):
        section, pattern = split_pattern(text)
        if section is not None and section not in known:
            problems.append(f"{source}:{layer.line('exclude', i)}: exclude[{i}]: unknown section {section!r}")
            continue
        hit = False
        for sec in [section] if section else known:
            entries = _entries(data, sec)
            keep = [e for e in entries if not _matches(sec, e, pattern)]
            if len(keep) != len(entries):
                hit = True
                _set_entries(data, sec, keep)
        if not hit:
            problems.append(
                f"{source}:{layer.line('exclude', i)}: exclude[{i}]: {text!r} matches no entry of the "
                "profile or of the manifests before this one"
            )
    fields = site.model_fields_set
    if "platforms" in fields:
        data["platforms"] = site.platforms
        if "all" not in site.platforms:
            wanted = {_ARCHES.get(p.split("/")[1], p.split("/")[1]) for p in site.platforms}
            data["files"] = [f for f in data["files"] if not _file_arches(f.url) or _file_arches(f.url) & wanted]
    for sec in LIST_SECTIONS:
        if sec not in Manifest.model_fields or sec not in fields:
            continue
        merged = {entry_key(sec, e): e for e in data[sec]}
        for e in getattr(site, sec):
            merged[entry_key(sec, e)] = e
        data[sec] = list(merged.values())
    for name in ("registries", "upstreams"):
        if name in Manifest.model_fields:
            data[name] = {**data[name], **getattr(site, name)}
    if site.python is not None:
        if data["python"] is None:
            data["python"] = site.python
        else:
            py = data["python"]
            update: dict[str, Any] = {k: getattr(site.python, k) for k in site.python.model_fields_set}
            update["requirements"] = list(dict.fromkeys([*py.requirements, *site.python.requirements]))
            update["requirements_files"] = list(
                dict.fromkeys([*py.requirements_files, *site.python.requirements_files])
            )
            data["python"] = py.model_copy(update=update)
    for name in Manifest.model_fields:
        if name in (*SECTIONS, "platforms", "registries", "upstreams", "exclude", "format") or name not in fields:
            continue
        value = getattr(site, name)
        data[name] = list(dict.fromkeys([*data[name], *value])) if name == "images_exclude" else value
    data["exclude"] = []
    if "apt" in Manifest.model_fields:
        yum_ids = {r.id for r in data["yum"]}
        for i, repo in enumerate(getattr(site, "apt", [])):
            if repo.id in yum_ids:
                problems.append(f"{source}:{layer.line('apt', i)}: apt[{i}].id: {repo.id!r} is also a yum repo id")
    if problems:
        raise ManifestError(source, problems)
    return Manifest.model_validate(data)


def merge_all(base: Manifest, layers: list[Layer]) -> Manifest:
    for layer in layers:
        base = merge(base, layer)
    return base


def load_layer(path: Path) -> Layer:
    """Read and validate one manifest file, keeping its line numbers for the merge."""
    from . import read_manifest_text

    return parse_layer(read_manifest_text(path), str(path), path.parent)


def parse_layer(text: str, source: str, base_dir: Path | None = None) -> Layer:
    manifest = parse_manifest(text, source, base_dir)
    _, lines = _compose(text)
    return Layer(manifest, source, lines)


# ---- annotated profiles --------------------------------------------------------------------------


def _end_line(node: yaml.Node) -> int:
    """The last line (0-based) a node's text is on."""
    end = node.end_mark
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def read_annotated(text: str, source: str) -> Annotated:
    """Take ``from:`` lines and sections of unknown kinds out of a profile, keeping line numbers."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(source, [f"{source}: YAML error: {exc}"]) from exc
    if not isinstance(root, yaml.MappingNode) or not isinstance(raw, dict):
        raise ManifestError(source, [f"{source}:1: a profile is a mapping with `format: 1`"])
    lines = text.split("\n")
    blank: set[int] = set()
    problems: list[str] = []
    origins: dict[tuple[str, int], str] = {}
    pending: dict[str, int] = {}

    def take_from(section: str, index: int, node: yaml.Node) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for k, v in node.value:
            if k.value != "from":
                continue
            line = k.start_mark.line
            if lines[line][: k.start_mark.column].strip():
                problems.append(f"{source}:{line + 1}: `from:` must be on a line of its own, not an entry's first key")
                continue
            origins[(section, index)] = str(v.value)
            blank.update(range(line, _end_line(v) + 1))

    for k, v in root.value:
        name = k.value
        if name not in Manifest.model_fields:
            if k.start_mark.column != 0:
                problems.append(f"{source}:{k.start_mark.line + 1}: {name}: a profile is written in block style")
                continue
            pending[name] = k.start_mark.line + 1
            blank.update(range(k.start_mark.line, _end_line(v) + 1))
            continue
        if isinstance(v, yaml.SequenceNode):
            for i, item in enumerate(v.value):
                take_from(name, i, item)
        else:
            take_from(name, -1, v)
    if problems:
        raise ManifestError(source, problems)
    clean = "\n".join("" if i in blank else line for i, line in enumerate(lines))
    return Annotated(text=clean, raw=raw, origins=origins, pending=pending)


def parse_annotated(text: str, source: str, base_dir: Path | None = None) -> tuple[Layer, Annotated]:
    """A profile as a layer (every section Manifest knows validated) and its annotations."""
    ann = read_annotated(text, source)
    return parse_layer(ann.text, source, base_dir), ann

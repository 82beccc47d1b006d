"""The manifest: what the user asks for, as YAML, validated with line-precise errors.

    format: 1
    files:
      - url: https://dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm
        sha256: 0123…            # optional; checked while downloading
        path: custom/kubeadm     # optional; default <host>/<path of the URL>

Errors name the file, the line, the entry and what is wrong:
``m.yaml:7: files[3].sha256: not 64 hex digits``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from ..errors import FormatError, ManifestError
from ..names import logical_path_error, validate_platforms
from .apt import AptRepo
from .charts import ChartEntry, ChartsSection
from .files import FilesSection
from .galaxy import GalaxySection
from .git import GitSection
from .images import ImageEntry, ImagesSection, RegistryConfig, coerce_images
from .python import PythonSection
from .yum import YumRepo

MANIFEST_FORMAT = 1


def upstream_error(host: str, base: str) -> str | None:
    """Why ``host: base`` cannot be an ``upstreams:`` entry (a host, optionally :port → a base URL), or None."""
    parts = urlsplit(base)
    if not host or "/" in host or "://" in host or any(c.isspace() for c in host):
        return f"{host!r}: the key is a host (optionally :port), not a URL"
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.hostname):
        return f"{base!r}: expected an http(s):// or file:// base URL"
    if parts.query or parts.fragment:
        return f"{base!r}: a base URL has no query or fragment"
    return None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int
    name: str = "gapcache"
    files: FilesSection = []
    platforms: list[str] = ["linux/amd64"]
    images: Annotated[list[ImageEntry], BeforeValidator(coerce_images)] = []
    registries: dict[str, RegistryConfig] = {}
    python: PythonSection | None = None
    yum: list[YumRepo] = []
    git: GitSection = []
    galaxy: GalaxySection | None = None
    apt: list[AptRepo] = []
    charts: list[ChartEntry] = []
    images_discover: bool = False  # every chart's `images:` default (discover / none)
    images_exclude: list[str] = []  # discovered image references (or fnmatch patterns) never mirrored
    upstreams: dict[str, str] = {}  # HOST: BASE_URL — fetch HOST's content from there (DESIGN "Upstreams")
    exclude: list[str] = []  # entries of the profile / earlier manifests to leave out (see manifest/merge.py)

    @field_validator("upstreams")
    @classmethod
    def _upstreams(cls, v: dict[str, str]) -> dict[str, str]:
        problems = [p for p in (upstream_error(h, b) for h, b in v.items()) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return {h.lower(): b for h, b in v.items()}

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str]) -> list[str]:
        return validate_platforms(v)

    def section(self, kind: str) -> Any:
        """The part of the manifest a kind resolves (DESIGN "the kind contract": never the whole)."""
        if kind == "image":
            return ImagesSection(images=self.images, platforms=self.platforms, registries=self.registries)
        if kind == "chart":
            return ChartsSection(
                charts=self.charts, images_discover=self.images_discover, images_exclude=self.images_exclude,
                registries=self.registries,
            )  # fmt: skip
        sections: dict[str, Any] = {"file": self.files, "python": self.python, "rpm": self.yum, "apt": self.apt}
        sections.update(git=self.git, galaxy=self.galaxy)
        return sections[kind]


Loc = tuple[str | int, ...]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster


def _compose(text: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data, and the line of every node by its path — found only when first
    asked for (a 100,000-entry manifest's node tree costs ~150 MB; see :class:`_Lines`)."""
    return _load_plain(text), _Lines(text)


def _compose_nodes(text: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data and remember the line of every node by its path (the node tree)."""
    node = yaml.compose(text, Loader=_LOADER)
    lines: dict[Loc, int] = {}
    scalars = yaml.SafeLoader("")

    def walk(n: yaml.Node | None, loc: Loc) -> Any:
        if n is None:
            return None
        lines[loc] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = k.value
                lines[loc + (key,)] = k.start_mark.line + 1
                out[key] = walk(v, loc + (key,))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(v, loc + (i,)) for i, v in enumerate(n.value)]
        return scalars.construct_object(n, deep=True)

    return walk(node, ()), lines


def _load_plain(text: str) -> Any:
    """The data :func:`_compose` gives (keys as written, no merge keys), built from the parser's
    events one at a time: no node tree of the whole document is ever held."""
    resolver: Any = yaml.SafeLoader("")
    scalars = yaml.SafeLoader("")
    anchors: dict[str, Any] = {}
    stack: list[tuple[Any, list[Any]]] = []  # (container, [pending key]) per open collection
    root: Any = None

    def put(value: Any, anchor: str | None) -> None:
        nonlocal root
        if anchor:
            anchors[anchor] = value
        if not stack:
            root = value
            return
        container, key = stack[-1]
        if isinstance(container, list):
            container.append(value)
        elif key:
            container[key.pop()] = value
        else:
            raise yaml.YAMLError("a mapping key that is not a plain value (a list or a mapping)")

    documents = 0
    events: Iterator[Any] = yaml.parse(text, Loader=_LOADER)
    for ev in events:
        start: Any = ev.start_mark
        if isinstance(ev, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise yaml.composer.ComposerError(
                    "expected a single document in the stream", None, "but found another document", start
                )
        elif isinstance(ev, yaml.ScalarEvent):
            if stack and isinstance(stack[-1][0], dict) and not stack[-1][1]:
                stack[-1][1].append(ev.value)  # a key, as written
                continue
            tag = ev.tag
            if tag is None or tag == "!":
                tag = resolver.resolve(yaml.ScalarNode, ev.value, ev.implicit)
            node = yaml.ScalarNode(tag, ev.value, start, start, style=ev.style)
            put(scalars.construct_object(node, deep=True), ev.anchor)
        elif isinstance(ev, yaml.AliasEvent):
            if stack and isinstance(stack[-1][0], dict) and not stack[-1][1]:
                raise yaml.composer.ComposerError(None, None, "an alias as a mapping key", start)
            if ev.anchor not in anchors:
                raise yaml.composer.ComposerError(None, None, f"found undefined alias {ev.anchor!r}", start)
            put(anchors[ev.anchor], None)
        elif isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            container: Any = {} if isinstance(ev, yaml.MappingStartEvent) else []
            put(container, ev.anchor)
            stack.append((container, []))
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
    return root


class _Lines(dict[Loc, int]):
    """``{path of a node: its line}``, composed from the text the first time a line is asked for
    (``get``, ``in``, ``[]``): a manifest without a problem never builds its node tree."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text: str | None = text

    def _all(self) -> None:
        if self.text is not None:
            text, self.text = self.text, None
            self.update(_compose_nodes(text)[1])

    def __contains__(self, loc: object) -> bool:
        self._all()
        return super().__contains__(loc)

    def __getitem__(self, loc: Loc) -> int:
        self._all()
        return super().__getitem__(loc)

    def get(self, loc: Loc, default: Any = None) -> Any:
        self._all()
        return super().get(loc, default)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _message(err: dict[str, Any]) -> str:
    msg = str(err["msg"])
    kind = err["type"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    return msg


def parse_manifest(text: str, source: str = "<manifest>", base_dir: Path | None = None) -> Manifest:
    """Validate a manifest. Relative paths in it (``python.requirements_files``) are relative to
    ``base_dir`` (the manifest's folder; default the current directory)."""
    try:
        # Plain data first (no node tree: a 100,000-entry manifest's nodes and marks cost ~150 MB);
        # the line of every node is found only when there is something to say about one.
        data = _load_plain(text)
        lines = _Lines(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ManifestError(source, [f"{where}: YAML syntax error: {exc.problem}"]) from exc
    except yaml.YAMLError as exc:
        raise ManifestError(source, [f"YAML error: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ManifestError(source, [f"{source}:1: the manifest must be a mapping with `format: 1`"])
    fmt = data.get("format")
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > MANIFEST_FORMAT:
        raise FormatError(
            f"{source}: manifest format {fmt} is newer than this gapcache understands "
            f"(format {MANIFEST_FORMAT}); upgrade gapcache"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc: Loc = tuple(err["loc"])
            line = None
            for n in range(len(loc), -1, -1):
                if loc[:n] in lines:
                    line = lines[loc[:n]]
                    break
            prefix = f"{source}:{line}: " if line else f"{source}: "
            problems.append(f"{prefix}{format_loc(loc)}: {_message(dict(err))}")
        raise ManifestError(source, problems) from exc
    if manifest.format != MANIFEST_FORMAT:
        raise ManifestError(source, [f"{source}:{lines.get(('format',), 1)}: format: must be {MANIFEST_FORMAT}"])
    # Cross-entry checks: two entries may not claim the same logical path with different URLs.
    seen: dict[str, int] = {}
    problems = []
    for i, entry in enumerate(manifest.files):
        lp = entry.logical_path()
        bad = logical_path_error(lp)
        if bad:
            problems.append(f"{source}:{lines.get(('files', i), 1)}: files[{i}].path: {bad}")
        if lp in seen and manifest.files[seen[lp]].url != entry.url:
            problems.append(
                f"{source}:{lines.get(('files', i), 1)}: files[{i}]: path {lp!r} already used by "
                f"files[{seen[lp]}] with another URL"
            )
        seen.setdefault(lp, i)
    ids: dict[str, int] = {}
    for i, repo in enumerate(manifest.yum):
        if repo.id in ids:
            problems.append(
                f"{source}:{lines.get(('yum', i), 1)}: yum[{i}].id: {repo.id!r} already used by yum[{ids[repo.id]}]"
            )
        ids.setdefault(repo.id, i)
    apt_ids: dict[str, int] = {}
    for i, apt_repo in enumerate(manifest.apt):
        dup = f"{source}:{lines.get(('apt', i), 1)}: apt[{i}].id: {apt_repo.id!r} already used by"
        if apt_repo.id in ids:
            problems.append(f"{dup} yum[{ids[apt_repo.id]}] (repo ids are unique across yum and apt)")
        elif apt_repo.id in apt_ids:
            problems.append(f"{dup} apt[{apt_ids[apt_repo.id]}]")
        apt_ids.setdefault(apt_repo.id, i)
    yum = []
    for i, repo in enumerate(manifest.yum):  # relative sslclientcert/key/cacert: from the manifest's folder
        try:
            yum.append(repo.with_base_dir(base_dir or Path.cwd()))
        except ValueError as exc:
            problems.append(f"{source}:{lines.get(('yum', i), 1)}: yum[{i}]: {exc}")
            yum.append(repo)
    manifest = manifest.model_copy(update={"yum": yum})
    if manifest.python is not None and manifest.python.requirements_files:
        resolved = []
        for i, name in enumerate(manifest.python.requirements_files):
            path = Path(name) if Path(name).is_absolute() else (base_dir or Path.cwd()) / name
            try:
                path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                at = lines.get(("python", "requirements_files", i), 1)
                problems.append(f"{source}:{at}: python.requirements_files[{i}]: {path}: {why}")
            resolved.append(str(path.resolve()))
        python = manifest.python.model_copy(update={"requirements_files": resolved})
        manifest = manifest.model_copy(update={"python": python})
    if manifest.galaxy is not None and manifest.galaxy.requirements:
        req = Path(manifest.galaxy.requirements)
        req = req if req.is_absolute() else (base_dir or Path.cwd()) / req
        try:
            req.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(f"{source}:{lines.get(('galaxy', 'requirements'), 1)}: galaxy.requirements: {req}: {why}")
        galaxy = manifest.galaxy.model_copy(update={"requirements": str(req.resolve())})
        manifest = manifest.model_copy(update={"galaxy": galaxy})
    if problems:
        raise ManifestError(source, problems)
    return manifest


def read_manifest_text(path: Path) -> str:
    """A manifest file's text, or a ManifestError naming the file (exit 2)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(str(path), [f"not UTF-8 text: {exc}"]) from exc


def load_manifest(path: Path) -> Manifest:
    return parse_manifest(read_manifest_text(path), str(path), path.parent)

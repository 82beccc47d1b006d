"""Built-in profiles (``profiles/*.yaml``, package data): manifests like any other, pinned, with
each entry's origin (a ``from:`` line), and the tool that regenerates them from their sources.

- :func:`load` validates every section :class:`~gapcache.manifest.Manifest` knows and holds back
  (and reports, as *pending kinds*) the sections of kinds this gapcache does not have yet;
- :func:`show` renders a profile as a table or as YAML, offline;
- :func:`update` regenerates the entries that came from Kubespray (``from: kubespray …``) and, with
  a DeepOps checkout, from DeepOps (``from: deepops …``), keeps every other entry, writes the
  profile and returns the difference (added, removed, changed).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ManifestError
from ..manifest import Manifest
from ..manifest.merge import SECTIONS, Annotated, Layer, entry_key, parse_annotated, plain

PROFILE_SUFFIX = ".yaml"
_TOP_ORDER = ("format", "name", "platforms", "upstreams", "registries", *SECTIONS)


@dataclass
class Profile:
    name: str
    path: Path
    layer: Layer  # the validated manifest (pending sections held back)
    annotated: Annotated

    @property
    def manifest(self) -> Manifest:
        return self.layer.manifest

    @property
    def description(self) -> str:
        first = self.path.read_text(encoding="utf-8").splitlines()[:1]
        return first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""

    def counts(self) -> dict[str, int]:
        """Entries per section (the python section counts its requirements)."""
        out: dict[str, int] = {}
        for section, value in self.annotated.raw.items():
            if section == "python" and isinstance(value, dict):
                out[section] = len(value.get("requirements") or [])
            elif isinstance(value, list) and section not in ("platforms", "exclude", "images_exclude"):
                out[section] = len(value)
        return out


def profiles_dir() -> Path:
    return Path(str(importlib.resources.files("gapcache") / "profiles"))


def names() -> list[str]:
    return sorted(p.name.removesuffix(PROFILE_SUFFIX) for p in profiles_dir().glob(f"*{PROFILE_SUFFIX}"))


def path_of(name: str) -> Path:
    path = profiles_dir() / f"{name}{PROFILE_SUFFIX}"
    if "/" in name or not path.is_file():
        known = ", ".join(names()) or "none"
        raise ManifestError(name, [f"no built-in profile {name!r} (built-in: {known})"])
    return path


def load(name_or_path: str | Path) -> Profile:
    """A built-in profile by name, or a profile file by path."""
    path = Path(name_or_path) if isinstance(name_or_path, Path) else path_of(name_or_path)
    text = path.read_text(encoding="utf-8")
    layer, ann = parse_annotated(text, str(path), path.parent)
    return Profile(path.name.removesuffix(PROFILE_SUFFIX), path, layer, ann)


# ---- show ----------------------------------------------------------------------------------------


def _entries(raw: dict[str, Any], section: str) -> list[Any]:
    value = raw.get(section)
    if section == "python":
        return list((value or {}).get("requirements") or []) if isinstance(value, dict) else []
    return list(value) if isinstance(value, list) else []


def _describe(section: str, entry: Any) -> tuple[str, str]:
    """(what, pin) of an entry for the table."""
    e = plain(entry)
    if section == "python" or isinstance(e, str):
        return str(e), ""
    if section == "files":
        return str(e.get("url")), f"sha256:{e['sha256']}" if e.get("sha256") else "(pinned in the lock)"
    if section == "images":
        return str(e.get("ref")), ",".join(e.get("platforms") or []) or ""
    if section == "charts":
        return str(e.get("ref") or f"{e.get('repo')}/{e.get('name')}"), str(e.get("version", ""))
    if section in ("yum", "apt"):
        where = e.get("baseurl") or e.get("url") or e.get("metalink") or e.get("mirrorlist") or ""
        mode = e.get("mode", "full")
        pkgs = " ".join(e.get("packages") or [])
        return f"{e.get('id')} {where}", f"{mode}: {pkgs}" if pkgs else str(mode)
    return str(e), ""


def rows(profile: Profile) -> list[tuple[str, str, str, str, str]]:
    """``(section, entry, pin, origin, status)`` for every entry; status ``pending kind`` for a
    section this gapcache cannot build yet."""
    ann = profile.annotated
    out = []
    for section in [s for s in _TOP_ORDER if s in SECTIONS] + sorted(set(ann.pending) - set(SECTIONS)):
        status = "pending kind" if section in ann.pending else ""
        py_origin = ann.origins.get(("python", -1), "")
        for i, entry in enumerate(_entries(ann.raw, section)):
            what, pin = _describe(section, entry)
            origin = py_origin if section == "python" else ann.origins.get((section, i), "")
            out.append((section, what, pin, origin, status))
    return out


def show(profile: Profile, fmt: str = "table") -> str:
    ann = profile.annotated
    if fmt == "yaml":
        head = [f"# profile {profile.name}: {profile.path}"]
        for section, line in sorted(ann.pending.items()):
            head.append(
                f"# pending kind: `{section}:` (line {line}) is held back until this gapcache has the {section} kind"
            )
        return "\n".join(head) + "\n" + profile.path.read_text(encoding="utf-8")
    table = rows(profile)
    out = [f"profile {profile.name}: {profile.description}".rstrip(": ")]
    counts = ", ".join(f"{n} {s}" for s, n in profile.counts().items())
    out.append(f"platforms: {', '.join(profile.manifest.platforms)}; entries: {counts}")
    for section, line in sorted(ann.pending.items()):
        out.append(f"pending kind: {section} (line {line}): listed, held back until gapcache has this kind")
    out.append("")
    width = max((len(r[1]) for r in table), default=10)
    for section, what, pin, origin, status in table:
        mark = f"  [{status}]" if status else ""
        out.append(f"{section:<7} {what:<{width}}  {pin}{mark}")
        if origin:
            out.append(f"{'':<7}   from: {origin}")
    return "\n".join(out)


# ---- diff ----------------------------------------------------------------------------------------


def _diff_key(section: str, entry: Any, origin: str) -> str:
    if ": " in origin and origin.split(" ", 1)[0] in ("kubespray", "deepops"):
        return origin.split(" ", 1)[0] + " " + origin.split(": ", 1)[1]
    if section == "images":
        e = plain(entry)
        ref = e if isinstance(e, str) else e.get("ref", "")
        return ref.rsplit("@", 1)[0].rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    if section == "charts":
        e = plain(entry)
        return str(e.get("ref") or f"{e.get('repo')}/{e.get('name')}")
    return entry_key(section, entry)


def _keyed(raw: dict[str, Any], origins: dict[tuple[str, int], str]) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for section in SECTIONS:
        for i, entry in enumerate(_entries(raw, section)):
            e = plain(entry)
            value = {k: v for k, v in e.items() if k != "from"} if isinstance(e, dict) else e
            out[(section, _diff_key(section, e, origins.get((section, i), "")))] = value
    return out


def diff(old: Annotated | None, new: Annotated) -> list[str]:
    """Lines: ``+ section key  entry``, ``- section key``, ``~ section key  field: old -> new``."""
    a = _keyed(old.raw, old.origins) if old else {}
    b = _keyed(new.raw, new.origins)
    lines = []
    for key in sorted(set(a) | set(b)):
        section, name = key
        if key not in a:
            lines.append(f"+ {section} {name}  {_describe(section, b[key])[0]}")
        elif key not in b:
            lines.append(f"- {section} {name}  {_describe(section, a[key])[0]}")
        elif a[key] != b[key]:
            x, y = a[key], b[key]
            if isinstance(x, dict) and isinstance(y, dict):
                changes = [f"{f}: {x.get(f)} -> {y.get(f)}" for f in sorted(set(x) | set(y)) if x.get(f) != y.get(f)]
            else:
                changes = [f"{x} -> {y}"]
            lines.append(f"~ {section} {name}  " + "; ".join(changes))
    added = sum(line.startswith("+") for line in lines)
    removed = sum(line.startswith("-") for line in lines)
    lines.append(f"{added} added, {removed} removed, {len(lines) - added - removed} changed")
    return lines


# ---- write / update ------------------------------------------------------------------------------


def render(raw: dict[str, Any], header: str) -> str:
    """A profile document: the header comment, then each top-level key in a fixed order, block
    style, one line per scalar (so a ``from:`` line can be taken out without moving others)."""
    out = [header.rstrip("\n"), ""]
    keys = [k for k in _TOP_ORDER if k in raw] + sorted(k for k in raw if k not in _TOP_ORDER)
    for key in keys:
        value = raw[key]
        if key == "platforms":
            out.append(f"platforms: [{', '.join(value)}]")
            continue
        out.append(yaml.safe_dump({key: value}, sort_keys=False, width=100000, default_flow_style=False).rstrip())
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def header_of(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def regenerate(
    raw: dict[str, Any], kubespray: dict[str, list[dict[str, Any]]], deepops: dict[str, list[dict[str, Any]]] | None
) -> dict[str, Any]:
    """``raw`` with its generated entries replaced: Kubespray's always, DeepOps's when given."""
    out = dict(raw)
    sources = {"kubespray": kubespray, **({"deepops": deepops} if deepops is not None else {})}
    for section in LIST_KEYS:
        kept = [
            e
            for e in out.get(section) or []
            if not (isinstance(e, dict) and str(e.get("from", "")).split(" ", 1)[0] in sources)
        ]
        generated = [e for src in sources.values() for e in src.get(section, [])]
        if generated or kept:
            out[section] = generated + kept
    return out


LIST_KEYS = ("files", "images", "charts")


def update(
    profile_path: Path, kubespray_checkout: Path, deepops_checkout: Path | None = None
) -> tuple[list[str], list[str]]:
    """Regenerate ``profile_path`` from the checkouts; returns (diff lines, warnings). The file is
    written only if the result validates."""
    from . import generate

    old_text = profile_path.read_text(encoding="utf-8") if profile_path.exists() else ""
    old_ann = parse_annotated(old_text, str(profile_path), profile_path.parent)[1] if old_text else None
    raw = dict(old_ann.raw) if old_ann else {"format": 1, "name": profile_path.stem}
    warnings: list[str] = []
    inventory = generate.deepops_inventory(deepops_checkout) if deepops_checkout else None
    ks = generate.kubespray(kubespray_checkout, inventory)
    dp = None
    if deepops_checkout is not None:
        dp, warnings = generate.deepops(deepops_checkout)
    new_raw = regenerate(raw, ks, dp)
    header = header_of(old_text) or f"# {profile_path.stem}: generated by `gapcache profile update`"
    text = render(new_raw, header)
    layer, new_ann = parse_annotated(text, str(profile_path), profile_path.parent)  # validates before writing
    del layer
    tmp = profile_path.with_name(profile_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(profile_path)
    return diff(old_ann, new_ann), warnings

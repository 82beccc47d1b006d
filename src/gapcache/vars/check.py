"""The leak check (``gapcache vars --check PATH``): every URL, registry, repository or image variable
in an inventory, a group_vars tree or vars files that points anywhere but the mirror.

YAML only (inventories, group_vars/host_vars files with or without a suffix, vars files). Jinja
references are followed through the variables defined anywhere in the tree, and Kubespray's base
URLs and registries (``github_url``, ``quay_image_repo``, …) count with their Internet defaults
when the tree does not set them — a URL built from one of those is a leak too. A value whose host
cannot be worked out (a fact, a group lookup) is skipped and counted, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .catalog import KUBESPRAY_DEFAULTS
from .jinja import render, unresolved

# a value of one of these names is a registry or image reference even without a scheme
_IMAGE_NAME = re.compile(r"(_image_repo|_image|_container|_registry|_registries|_docker_mirror)$|^registry_host$"
                         r"|^ngc_ready_|_image_repos?$")  # fmt: skip
_REPO_NAME = re.compile(r"_repo$")  # an image repository when it holds a path (spack_repo is a URL: checked as one)
_SKIP_KEYS = {"prefix", "server", "name", "description", "capabilities"}
_HOSTNAME = re.compile(r"^(?:localhost|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+|"
                       r"\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\])(?::\d+)?$")  # fmt: skip


@dataclass(frozen=True)
class Leak:
    file: str
    line: int
    variable: str
    value: str  # as resolved
    host: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.variable}: {self.value} (points at {self.host}, not the mirror)"


@dataclass
class CheckResult:
    mirrors: list[str]
    files: list[str] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # file:line: variable — host not resolvable
    problems: list[str] = field(default_factory=list)  # files that could not be read as YAML


def vars_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    out = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        in_vars_dir = any(part in ("group_vars", "host_vars") for part in rel.parts[:-1])
        if p.suffix in (".yml", ".yaml", ".json") or (in_vars_dir and not p.suffix):
            out.append(p)
    return out


def _value(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        if node.tag.endswith(":bool"):
            return node.value.lower() in ("true", "yes", "on")
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_value(n) for n in node.value]
    if isinstance(node, yaml.MappingNode):
        return {str(k.value): _value(v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    return None


def _walk(node: yaml.Node, path: str, key: str) -> Iterator[tuple[str, str, yaml.ScalarNode]]:
    """Every string scalar with its variable path and the nearest mapping key."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag.endswith(":str"):
            yield path, key, node
    elif isinstance(node, yaml.SequenceNode):
        for i, n in enumerate(node.value):
            yield from _walk(n, f"{path}[{i}]", key)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                yield from _walk(v, f"{path}.{k.value}" if path else str(k.value), str(k.value))


def _definitions(node: yaml.Node, env: dict[str, Any]) -> None:
    """Every ``key: value`` anywhere in the document (inventory ``vars:`` and hosts included)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                env.setdefault(str(k.value), _value(v))
            _definitions(v, env)
    elif isinstance(node, yaml.SequenceNode):
        for n in node.value:
            _definitions(n, env)


def _image_host(value: str) -> str | None:
    first, sep, _ = value.partition("/")
    first = first.lower()
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first if _HOSTNAME.match(first) else None
    if not sep and _HOSTNAME.match(first.split("@")[0]) and "." in first.split(":")[0]:
        return first  # a bare registry host (registry_host, insecure registries)
    if re.match(r"^[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9_.-]+)?(?:@sha256:[0-9a-f]{64})?$", value):
        return "docker.io"  # a Docker Hub short name
    return None


def target_host(key: str, value: str) -> str | bool | None:
    """The host a value points at; None: not an address; False: an address that cannot be resolved."""
    if key in _SKIP_KEYS:
        return None
    if "://" in value:
        if unresolved(value.split("://", 1)[1].split("/", 1)[0]) or unresolved(value.split("://", 1)[0]):
            return False
        host = urlsplit(value.strip()).hostname
        return host.lower() if host else None
    image_like = bool(_IMAGE_NAME.search(key)) or (bool(_REPO_NAME.search(key)) and "/" in value)
    if not image_like or not value.strip():
        return None
    if unresolved(value.split("/", 1)[0]):
        return False
    host = _image_host(value.strip())
    return host.split(":")[0].strip("[]") if host else None


def load_documents(files: list[Path], result: CheckResult, base: Path) -> list[tuple[str, yaml.Node]]:
    docs = []
    for p in files:
        name = str(p.relative_to(base)) if p != base and base.is_dir() else str(p)
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            result.problems.append(f"{name}: cannot read: {exc}")
            continue
        if text.lstrip().startswith("$ANSIBLE_VAULT"):
            result.problems.append(f"{name}: vault-encrypted, not checked")
            continue
        try:
            nodes = [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
        except yaml.YAMLError as exc:
            result.problems.append(f"{name}: not YAML: {str(exc).splitlines()[0]}")
            continue
        result.files.append(name)
        docs += [(name, n) for n in nodes]
    return docs


def mirror_hosts_from(env: dict[str, Any]) -> list[str]:
    hosts = env.get("deepops_mirror_hosts")
    out = [render(str(h), env) for h in hosts] if isinstance(hosts, list) else []
    single = env.get("deepops_mirror_host")
    if isinstance(single, str):
        out.insert(0, render(single, env))
    return [h.lower() for h in dict.fromkeys(out) if h and not unresolved(h)]


def check_tree(path: Path, mirror_hosts: list[str] | None = None) -> CheckResult:
    from .facts import PLACEHOLDER

    result = CheckResult(mirrors=[])
    docs = load_documents(vars_files(path), result, path)
    env: dict[str, Any] = {}
    for _, node in docs:
        _definitions(node, env)
    for k, v in KUBESPRAY_DEFAULTS.items():
        env.setdefault(k, v)
    mirrors = [h.lower() for h in mirror_hosts] if mirror_hosts else mirror_hosts_from(env)
    result.mirrors = mirrors
    allowed = {h.split(":")[0].strip("[]") for h in mirrors}
    for name, node in docs:
        for var, key, scalar in _walk(node, "", ""):
            if not var:
                continue
            value = render(scalar.value, env)
            host = target_host(key, value)
            line = scalar.start_mark.line + 1
            if host is False:
                result.skipped.append(f"{name}:{line}: {var}")
            elif isinstance(host, str) and (host not in allowed or host == PLACEHOLDER):
                result.leaks.append(Leak(name, line, var, value, host))
    return result

"""The layers (README "Development"): each module imports only from its own layer or those below,
and nothing imports in a circle. Read from the source with ``ast``, so imports under
``TYPE_CHECKING`` and inside functions count too."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "gapcache"
MAX_LINES = 500


def declared_layers() -> list[tuple[str, list[str]]]:
    """The layer table from the README, top layer first: ``(name, [module patterns])``."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- layers -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, "README.md has no <!-- layers --> block"
    layers = []
    for line in m.group(1).splitlines():
        name, _, rest = line.partition("  ")
        if not name.strip() or name.startswith(" "):
            continue
        patterns = rest.split("#", 1)[0].split()
        layers.append((name.strip(), patterns))
    return layers


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts) or "__init__"] = path
    return out


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int:
    """Index from the bottom (0 = model)."""
    found = [i for i, (_, pats) in enumerate(reversed(layers)) if any(fnmatch.fnmatchcase(module, p) for p in pats)]
    assert len(found) == 1, f"module {module!r} matches {len(found)} layers in README's table (must be exactly 1)"
    return found[0]


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """gapcache modules that ``module`` imports (relative and absolute)."""
    is_pkg = path.name == "__init__.py"
    package = module.split(".") if module != "__init__" else []
    if not is_pkg:
        package = package[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name.removeprefix("gapcache.") for a in node.names if a.name.startswith("gapcache.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "gapcache" or node.module.startswith("gapcache.")):
                mod = node.module.removeprefix("gapcache").lstrip(".")
            else:
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                sub = f"{mod}.{alias.name}" if mod else alias.name
                targets.append(sub if sub in known else mod)
        for t in targets:
            if t and t in known and t != module:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(m, p, known) for m, p in mods.items()}


def test_every_module_in_exactly_one_layer() -> None:
    layers = declared_layers()
    assert [n for n, _ in layers] == ["cli", "runners", "kinds", "engine", "model"]
    for m in modules():
        layer_of(m, layers)


def test_no_import_from_a_higher_layer() -> None:
    layers = declared_layers()
    names = [n for n, _ in reversed(layers)]
    bad = []
    for src, targets in graph().items():
        for dst in targets:
            if layer_of(dst, layers) > layer_of(src, layers):
                bad.append(f"{src} ({names[layer_of(src, layers)]}) imports {dst} ({names[layer_of(dst, layers)]})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*stack[stack.index(n) :], n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The graph reader is not vacuous: it finds relative, absolute and TYPE_CHECKING imports."""
    pkg = tmp_path / "p"
    (pkg / "kinds").mkdir(parents=True)
    (pkg / "lock.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .kinds.base import X\n")
    (pkg / "kinds" / "__init__.py").write_text("")
    (pkg / "kinds" / "base.py").write_text("def f():\n    from gapcache.lock import Y\n    from ..serve import Z\n")
    known = {"lock", "kinds", "kinds.base", "serve"}
    assert imports("lock", pkg / "lock.py", known) == {"kinds.base"}
    assert imports("kinds.base", pkg / "kinds" / "base.py", known) == {"lock", "serve"}


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_size(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines (at most {MAX_LINES}); split it"

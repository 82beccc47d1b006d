"""Just enough Jinja to follow variables through an inventory: ``{{ name }}``, ``{{ name[0] }}``,
``{{ name | default('x') }}``, ``{{ name | lower }}``. Anything else stays as written (unknown),
so a caller can tell a value it could resolve from one it could not."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SIMPLE = re.compile(rf"^(?P<name>{_NAME})(?:\[(?P<index>\d+)\])?(?P<filters>(?:\s*\|\s*[^|]+)*)$")
_DEFAULT = re.compile(r"^default\(\s*(?P<q>['\"])(?P<value>.*?)(?P=q)\s*(?:,\s*\w+\s*)?\)$")
MAX_DEPTH = 20


def _one(expr: str, env: Mapping[str, Any], depth: int) -> str | None:
    m = _SIMPLE.match(expr)
    if not m:
        return None
    value: Any = env.get(m.group("name"))
    if value is not None and m.group("index") is not None:
        i = int(m.group("index"))
        value = value[i] if isinstance(value, list) and i < len(value) else None
    for f in (x.strip() for x in m.group("filters").split("|")[1:]):
        d = _DEFAULT.match(f)
        if d:
            value = d.group("value") if value is None else value
        elif f in ("lower", "upper", "trim", "string"):
            if value is not None:
                value = str(render(str(value), env, depth + 1))
                value = value.lower() if f == "lower" else value.upper() if f == "upper" else value.strip()
        else:
            return None
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return render(str(value), env, depth + 1)


def render(text: str, env: Mapping[str, Any], depth: int = 0) -> str:
    """``text`` with every expression it can resolve replaced; the others left as they were."""
    if depth > MAX_DEPTH or "{{" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        got = _one(m.group(1), env, depth)
        return m.group(0) if got is None else got

    return EXPR.sub(sub, text)


def render_all(value: Any, env: Mapping[str, Any]) -> Any:
    """A whole structure (lists, dicts) rendered."""
    if isinstance(value, str):
        return render(value, env)
    if isinstance(value, list):
        return [render_all(v, env) for v in value]
    if isinstance(value, dict):
        return {k: render_all(v, env) for k, v in value.items()}
    return value


def unresolved(text: str) -> bool:
    return "{{" in text or "{%" in text

"""Client configuration for a published repository: deb822 ``.sources`` (and the one-line ``.list``).

A flat repository is written with ``Suites:`` holding its path, which must end with ``/`` (``./``
for the root), and no ``Components:`` — sources.list(5): "Suites can specify an exact path … in
which case the Components: must be omitted and suite must end with a slash".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import AptError

SAFE = re.compile(r"^[^\s\n]+$")


def _check(name: str, values: Sequence[str]) -> None:
    for v in values:
        if not SAFE.match(v):
            raise AptError(f".sources {name}: {v!r} must be one word without spaces")


def render_sources(
    uris: str | Sequence[str],
    suite: str | Sequence[str],
    components: Sequence[str] = (),
    *,
    architectures: Sequence[str] = (),
    signed_by: str | None = None,
    types: Sequence[str] = ("deb",),
    enabled: bool = True,
) -> str:
    """A deb822 ``.sources`` stanza. ``suite`` ending with ``/`` is a flat repository (then no
    components; several suites may be given); ``signed_by`` is a keyring path (or a fingerprint)."""
    uri_list = [uris] if isinstance(uris, str) else list(uris)
    suites = [suite] if isinstance(suite, str) else list(suite)
    flat = any(s.endswith("/") for s in suites)
    if flat and components:
        raise AptError(f".sources: flat repository {suite!r} takes no components")
    if not flat and not components:
        raise AptError(f".sources: suite {suite!r} needs at least one component")
    _check("URIs", uri_list)
    _check("Suites", suites)
    _check("Components", components)
    _check("Architectures", architectures)
    _check("Types", types)
    lines = [f"Types: {' '.join(types)}", f"URIs: {' '.join(uri_list)}", f"Suites: {' '.join(suites)}"]
    if components:
        lines.append(f"Components: {' '.join(components)}")
    if architectures:
        lines.append(f"Architectures: {' '.join(architectures)}")
    if signed_by:
        _check("Signed-By", [signed_by])
        lines.append(f"Signed-By: {signed_by}")
    if not enabled:
        lines.append("Enabled: no")
    return "\n".join(lines) + "\n"


def render_list(
    uri: str,
    suite: str,
    components: Sequence[str] = (),
    *,
    architectures: Sequence[str] = (),
    signed_by: str | None = None,
) -> str:
    """The same as a one-line ``sources.list`` entry (for apt older than 1.1, which lacks deb822)."""
    flat = suite.endswith("/")
    if flat == bool(components):
        raise AptError(f".list: suite {suite!r} {'takes no' if flat else 'needs'} components")
    _check("URI", [uri])
    _check("suite", [suite])
    _check("components", components)
    opts = []
    if architectures:
        _check("arch", architectures)
        opts.append(f"arch={','.join(architectures)}")
    if signed_by:
        _check("signed-by", [signed_by])
        opts.append(f"signed-by={signed_by}")
    options = f"[{' '.join(opts)}] " if opts else ""
    return f"deb {options}{uri} {' '.join([suite, *components])}\n"

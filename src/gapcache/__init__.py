"""gapcache: build an offline cache for an air-gapped GPU cluster, and serve it as mirrors.

The command line (``gapcache …``) is a thin layer over this library::

    import asyncio
    from pathlib import Path
    import gapcache

    manifest = gapcache.load_manifest(Path("deepops.yaml"))
    result = asyncio.run(gapcache.build(manifest, gapcache.BuildOptions(store=Path("store"), out=Path("d.tar"))))
    gapcache.Root(Path("/opt/deepops")).load([Path("d.tar")])
    gapcache.serve(gapcache.ServeConfig(root=Path("/opt/deepops")))

Names are imported on first use, so ``import gapcache`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BuildOptions": "build",
    "BuildResult": "build",
    "build": "build",
    "plan": "build",
    "Manifest": "manifest",
    "load_manifest": "manifest",
    "parse_manifest": "manifest",
    "Lock": "lock",
    "read_lock": "lock",
    "Store": "store",
    "pack": "archive",
    "verify_archive": "archive",
    "Root": "root",
    "ServeConfig": "serve",
    "serve": "serve",
    "push": "push",
    "GapcacheError": "errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gapcache' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

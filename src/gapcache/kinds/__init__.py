"""Content types, one package each. Each knows how to resolve its manifest section into artifacts,
publish what it generates, and serve its protocol from the lock; everything else (download, store,
pack, load) is shared. Adding a kind: its package under ``kinds/`` and one line in ``KINDS``."""

from __future__ import annotations

from .base import Kind, ResolveContext
from .file import FileKind
from .image import ImageKind
from .python import PythonKind
from .rpm import RpmKind

KINDS: dict[str, Kind] = {k.name: k for k in (FileKind(), ImageKind(), PythonKind(), RpmKind())}

__all__ = ["KINDS", "Kind", "ResolveContext"]

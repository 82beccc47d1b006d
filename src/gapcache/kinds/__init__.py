"""Content types. Each knows how to resolve its manifest section into artifacts and how to serve
its protocol from the lock; everything else (download, store, pack, load) is shared."""

from __future__ import annotations

from .base import Artifact, Item, Kind, ResolveContext
from .file import FileKind
from .image import ImageKind
from .python import PythonKind
from .rpm import RpmKind

KINDS: dict[str, Kind] = {k.name: k for k in (FileKind(), ImageKind(), PythonKind(), RpmKind())}

__all__ = ["KINDS", "Artifact", "Item", "Kind", "ResolveContext"]

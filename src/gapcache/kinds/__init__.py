"""Content types, one package each. Each knows how to resolve its manifest section into artifacts,
publish what it generates, and serve its protocol from the lock; everything else (download, store,
pack, load) is shared. Adding a kind: its package under ``kinds/`` and one line in ``KINDS``."""

from __future__ import annotations

from .apt import AptKind
from .base import Kind, ResolveContext
from .bootstrap import BootstrapKind
from .chart import ChartKind
from .file import FileKind
from .galaxy import GalaxyKind
from .git import GitKind
from .image import ImageKind
from .python import PythonKind
from .rpm import RpmKind

# the chart kind before the image kind: it adds the images charts run (ResolveContext.discovered_images);
# bootstrap (gapcache itself, from build options rather than a manifest section) last: its files handler
# comes after the file kind's on the files listener
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        FileKind(), ChartKind(), ImageKind(), PythonKind(), RpmKind(), AptKind(), GitKind(), GalaxyKind(),
        BootstrapKind(),
    )
}  # fmt: skip

__all__ = ["KINDS", "Kind", "ResolveContext"]

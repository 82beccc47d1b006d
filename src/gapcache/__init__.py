"""gapcache: build an offline cache for an air-gapped GPU cluster, and serve it as mirrors."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

from __future__ import annotations

import gapcache


def test_public_names_are_pinned() -> None:
    assert gapcache.__all__ == [
        "__version__",
        "BuildOptions", "BuildResult", "GapcacheError", "Lock", "Manifest", "Root", "ServeConfig", "Store",
        "build", "load_manifest", "pack", "parse_manifest", "plan", "push", "read_lock", "serve", "verify_archive",
    ]  # fmt: skip
    for name in gapcache.__all__:
        assert getattr(gapcache, name) is not None

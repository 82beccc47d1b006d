"""Scratch space: where the stages put what they throw away (``--tmpdir``, else ``TMPDIR``, else /tmp).

What stays on the destination's own filesystem, by design, because it ends in an atomic rename:
the build store's partial downloads (``STORE/tmp``), a pack's ``.ARCHIVE.tmp-<pid>`` beside the
archive, and a load's staging (``ROOT/tmp``) — each is checked for free space there before it
starts. Everything else — resolver work (uv, libsolv, decompressed repository metadata),
createrepo_c and apt index generation, git clones, GnuPG homes, tools run as subprocesses (they
inherit ``TMPDIR``) — goes under the scratch directory, which :func:`check_scratch` checks before
each stage that uses it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import EnvironmentProblem
from .store import check_space

# what a stage needs at least: small manifests need little; a full OS repository's decompressed
# metadata takes a few hundred MiB more (a stage that knows its size asks for it)
SCRATCH_FLOOR = 64 << 20


def use_tmpdir(path: Path | str | None) -> Path:
    """Make ``path`` the scratch directory of this process and of the tools it runs (``TMPDIR``);
    with None, keep ``TMPDIR`` or the system's default. Returns the directory in use."""
    if path is None:
        return Path(tempfile.gettempdir())
    where = Path(path).expanduser().absolute()
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"--tmpdir {where}: cannot create it ({exc.strerror})") from exc
    if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
        raise EnvironmentProblem(f"--tmpdir {where}: not a writable directory")
    tempfile.tempdir = str(where)
    os.environ["TMPDIR"] = str(where)
    return where


def check_scratch(stage: str, needed: int = 0) -> None:
    """Before ``stage``: the scratch directory must have ``needed`` bytes free (at least
    :data:`SCRATCH_FLOOR`); the error names the stage and how to choose another directory."""
    where = Path(tempfile.gettempdir())
    try:
        check_space(where, max(needed, SCRATCH_FLOOR))
    except EnvironmentProblem as exc:
        exc.args = (f"{stage}: {exc.args[0]} for scratch space; choose another with --tmpdir DIR (or TMPDIR)",)
        raise

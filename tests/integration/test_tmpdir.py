"""--tmpdir (and TMPDIR): the scratch directory every build stage uses, checked for space first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import UpstreamHandle, gapcache, write_manifest
from helpers import small_tmpfs as mount_tmpfs


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mount_tmpfs(tmp_path / "small") as mnt:
        yield mnt


def _blobs(store: Path) -> list[Path]:
    d = store / "blobs/sha256"
    return sorted(d.iterdir()) if d.exists() else []


@pytest.mark.slow
def test_scratch_space_is_checked_where_tmpdir_and_TMPDIR_say(
    tmp_path: Path, small_tmpfs: Path, upstream: UpstreamHandle
) -> None:
    m = write_manifest(tmp_path / "m.yaml", [{"url": upstream.put("t/a.txt", b"scratch\n")}])
    store, out = tmp_path / "store", tmp_path / "o.tar"
    # --tmpdir on a filesystem without room: refused before anything is downloaded, naming it and the option
    res = gapcache("build", "-f", m, "-o", out, "--store", store, "--tmpdir", small_tmpfs)
    assert res.returncode == 3, res.stderr
    assert str(small_tmpfs) in res.stderr and "--tmpdir" in res.stderr and "scratch" in res.stderr
    assert not out.exists() and _blobs(store) == []
    # TMPDIR is honoured the same way
    res = gapcache("build", "-f", m, "-o", out, "--store", store, env={"TMPDIR": str(small_tmpfs)})
    assert res.returncode == 3 and str(small_tmpfs) in res.stderr, res.stderr
    # --tmpdir wins over TMPDIR; a directory that does not exist yet is created
    scratch = tmp_path / "scratch" / "build"
    res = gapcache("build", "-f", m, "-o", out, "--store", store, "--tmpdir", scratch, env={"TMPDIR": str(small_tmpfs)})
    assert res.returncode == 0, res.stderr
    assert scratch.is_dir() and list(scratch.iterdir()) == []  # used and cleaned up
    assert len(_blobs(store)) == 1 and out.exists()


def test_tmpdir_that_cannot_be_used_is_an_environment_error(tmp_path: Path) -> None:
    m = write_manifest(tmp_path / "m.yaml", [{"url": "http://127.0.0.1:9/a"}])
    a_file = tmp_path / "file"
    a_file.write_text("x")
    res = gapcache("build", "-f", m, "-o", tmp_path / "o.tar", "--store", tmp_path / "s", "--tmpdir", a_file / "sub")
    assert res.returncode == 3, res.stderr
    assert f"--tmpdir {a_file / 'sub'}" in res.stderr

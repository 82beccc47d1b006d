"""Several archives served together (issue 19, item 1): ``load --add``, ``remove``, ``ls --root``;
a conflicting set refused naming the path and both sets; a plain load names what it drops;
rollback and prune keep working with union locks."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import cli_env, free_port, gapcache, wait_port
from gapcache.history import prune, rollback
from gapcache.root import Root
from helpers import build_local

BASE = {"base/kubeadm": b"kubeadm v1\n" * 1000, "base/conf.yaml": b"a: 1\n"}
IMAGES = {"images/list.txt": b"nginx\n", "base/conf.yaml": b"a: 1\n"}  # shares a path, same bytes
CLASH = {"base/kubeadm": b"another kubeadm\n"}  # the same path, other bytes


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sets")
    out = {}
    for name, content in {"base": BASE, "images": IMAGES, "clash": CLASH}.items():
        build_local(tmp / name, content, out_name=f"{name}.tar")
        out[name] = tmp / name / f"{name}.tar"
    return out


def _get(port: int, path: str) -> int | bytes:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5) as r:
            data: bytes = r.read()
            return data
    except urllib.error.HTTPError as exc:
        return exc.code


def _served_paths(root: Path) -> set[str]:
    return {a.path for a in Root(root).current_lock().artifacts()}


def test_add_remove_and_plain_load(tmp_path: Path, archives: dict[str, Path]) -> None:
    root = tmp_path / "root"
    gapcache("load", archives["base"], "--root", root, "-q", check=True)
    res = gapcache("load", "--add", archives["images"], "--root", root, "-q", check=True)
    assert "added set 'images'" in res.stderr and "serving 2 set(s)" in res.stderr
    assert _served_paths(root) == {"files/base/kubeadm", "files/base/conf.yaml", "files/images/list.txt"}
    # current names a lock file like any other; sets.json lists its members
    current = (root / "current").read_text().strip()
    assert (root / "locks" / current).is_file()
    doc = json.loads((root / "sets.json").read_text())
    assert [m["name"] for m in doc["served"][current]] == ["base", "images"]
    for f in [root / "current", root / "sets.json", root / "locks" / current]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f  # readable by a non-root serve (item 8)

    # serve follows: both sets answer
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gapcache", "serve", "--root", str(root), "--bind", "127.0.0.1",
         "--port", f"files={port}", "--port", "registry=0", "--port", "repos=0", "--port", "charts=0",
         "--port", "pypi=0", "--no-access-log"],
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        assert _get(port, "base/kubeadm") == BASE["base/kubeadm"]
        assert _get(port, "images/list.txt") == IMAGES["images/list.txt"]

        # ls --root: every served set with name, date and size
        ls = gapcache("ls", "--root", root, check=True).stdout
        assert "served: 2 set(s)" in ls
        assert [ln.split()[1] for ln in ls.splitlines() if ln.startswith("set ")] == ["base", "images"]
        assert "loaded 20" in ls
        items = json.loads(gapcache("ls", "--root", root, "--json", check=True).stdout)
        assert {i["name"]: i.get("set") for i in items}["files/images/list.txt"] == "images"

        # a third set with other bytes for the same path: refused naming the path and both sets
        before = (root / "current").read_text(), sorted(p.name for p in (root / "locks").iterdir())
        res = gapcache("load", "--add", archives["clash"], "--root", root, "-q")
        assert res.returncode == 1, res.stderr
        assert "files/base/kubeadm" in res.stderr and "'clash'" in res.stderr and "'base'" in res.stderr
        assert ((root / "current").read_text(), sorted(p.name for p in (root / "locks").iterdir())) == before

        # remove one: the other stays served, the removed one answers 404
        res = gapcache("remove", "images", "--root", root, check=True)
        assert "no longer serving set 'images'" in res.stderr
        assert _served_paths(root) == {"files/base/kubeadm", "files/base/conf.yaml"}
        deadline = time.monotonic() + 10
        while _get(port, "images/list.txt") != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _get(port, "images/list.txt") == 404
        assert _get(port, "base/kubeadm") == BASE["base/kubeadm"]
    finally:
        proc.terminate()
        proc.wait(10)
    res = gapcache("remove", "base", "--root", root)
    assert res.returncode == 1 and "only set" in res.stderr

    # a plain load of another archive names what it stops serving
    gapcache("load", "--add", archives["images"], "--root", root, "-q", check=True)
    res = gapcache("load", archives["clash"], "--root", root, "-q", check=True)
    assert "no longer served: set 'base'" in res.stderr and "file files/base/conf.yaml" in res.stderr
    assert "no longer served: set 'images'" in res.stderr and "file files/images/list.txt" in res.stderr
    assert _served_paths(root) == {"files/base/kubeadm"}
    ls = gapcache("ls", "--root", root, check=True).stdout
    assert [ln.split()[1] for ln in ls.splitlines() if ln.startswith("set ")] == ["clash"]


def test_rollback_and_prune_with_sets(tmp_path: Path, archives: dict[str, Path]) -> None:
    root_dir = tmp_path / "root"
    gapcache("load", archives["base"], "--root", root_dir, "-q", check=True)
    root = Root(root_dir)
    base_lock = root.current_name()
    gapcache("load", "--add", archives["images"], "--root", root_dir, "-q", check=True)
    union = root.current_name()
    assert union != base_lock
    # prune keeping only the served lock keeps every blob of every served set (and their locks)
    result = prune(root, keep=1)
    assert union in result.kept and base_lock in result.kept
    assert root.verify().ok
    for digest in root.current_lock().blobs():
        assert root.store.verify(digest)
    # remove, then load --add again, then rollback: back to the union served before, not to a
    # lock that was only ever a member
    gapcache("remove", "images", "--root", root_dir, check=True)
    assert root.current_name() == base_lock
    gapcache("load", "--add", archives["images"], "--root", root_dir, "-q", "--name", "imgs", check=True)
    again = root.current_name()
    assert again != base_lock
    old, new = rollback(root)
    assert (old, new) == (again, base_lock)  # the member-only lock of 'imgs' is no step of the history
    ls = gapcache("ls", "--root", root_dir, check=True).stdout
    assert [ln.split()[1] for ln in ls.splitlines() if ln.startswith("set ")] == ["base"]


def test_legacy_root_without_sets_json(tmp_path: Path, archives: dict[str, Path]) -> None:
    """A root loaded before sets existed: its lock is one set; --add builds on it."""
    root = Root(tmp_path / "root")
    root.load([archives["base"]])  # the library load: no sets.json
    assert not (tmp_path / "root/sets.json").exists()
    ls = gapcache("ls", "--root", root.path, check=True).stdout
    assert "set lock-" in ls
    gapcache("load", "--add", archives["images"], "--root", root.path, "-q", check=True)
    assert "files/images/list.txt" in _served_paths(root.path)
    assert "files/base/kubeadm" in _served_paths(root.path)


def test_add_into_an_empty_root_is_one_set(tmp_path: Path, archives: dict[str, Path]) -> None:
    """`load --add` as the first load (and again with the same archive) serves one set, not a phantom
    second one named after the lock."""
    root = tmp_path / "root"
    gapcache("load", "--add", archives["base"], "--root", root, "-q", check=True)
    gapcache("load", "--add", archives["base"], "--root", root, "-q", check=True)
    listing = gapcache("ls", "--root", root, "--json", check=True)
    sets = {item.get("set") for item in json.loads(listing.stdout)}
    assert sets == {"base"}
    removed = gapcache("remove", "base", "--root", root)
    assert removed.returncode != 0 and "only set" in removed.stderr

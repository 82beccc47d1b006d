"""Upstreams for the git and Galaxy kinds: real git repositories behind ``git http-backend`` and
real collections (``ansible-galaxy collection build``) and role tarballs behind a Galaxy API fixture.

Import the fixtures into a test module: ``from gitgalaxy import git_upstream, galaxy_upstream``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import TESTS, wait_for_file

ANSIBLE_GALAXY = str(Path(sys.executable).parent / "ansible-galaxy")
STAMP = "2024-01-01T00:00:00+00:00"


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.org", GIT_AUTHOR_DATE=STAMP, GIT_COMMITTER_DATE=STAMP)  # fmt: skip
    return env


def run_git(env: dict[str, str], cwd: Path, *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"git {args}: {res.stderr}"
    return res.stdout.strip()


@dataclass
class GitUpstream:
    base: str  # http://127.0.0.1:PORT
    root: Path
    env: dict[str, str]
    sha: dict[str, str] = field(default_factory=dict)

    def url(self, repo: str) -> str:
        return f"{self.base}/{repo}.git"

    @property
    def host(self) -> str:  # as the mirror names it
        return self.base.removeprefix("http://").replace(":", "_")


def _commit(env: dict[str, str], work: Path, name: str, text: str) -> str:
    (work / name).write_text(text)
    run_git(env, work, "add", name)
    run_git(env, work, "commit", "-q", "-m", f"{name}: {text}")
    return run_git(env, work, "rev-parse", "HEAD")


def make_repos(up: GitUpstream, work: Path) -> None:
    """org/child (main, dev, annotated tag v1.0) and org/parent (a submodule: child at a commit
    behind child's main)."""
    env = up.env
    child = work / "child"
    child.mkdir()
    run_git(env, child, "init", "-q", "-b", "main")
    up.sha["c1"] = _commit(env, child, "a.txt", "one")
    run_git(env, child, "tag", "-a", "v1.0", "-m", "release 1.0")
    up.sha["tag"] = run_git(env, child, "rev-parse", "v1.0")
    up.sha["c2"] = _commit(env, child, "a.txt", "two")
    run_git(env, child, "checkout", "-q", "-b", "dev", up.sha["c1"])
    up.sha["d1"] = _commit(env, child, "dev.txt", "dev work")
    run_git(env, child, "checkout", "-q", "main")
    (up.root / "org").mkdir(parents=True)
    run_git(env, work, "clone", "-q", "--bare", str(child), str(up.root / "org/child.git"))
    parent = work / "parent"
    parent.mkdir()
    run_git(env, parent, "init", "-q", "-b", "main")
    _commit(env, parent, "README", "parent")
    run_git(env, parent, "submodule", "add", "-q", up.url("org/child"), "lib/child")
    run_git(env, parent, "commit", "-q", "-m", "child at main")
    up.sha["p1"] = run_git(env, parent, "rev-parse", "HEAD")
    run_git(env, work, "clone", "-q", "--bare", str(parent), str(up.root / "org/parent.git"))
    role = work / "role"  # a role kept in git (ansible-galaxy role install runs git clone)
    (role / "meta").mkdir(parents=True)
    run_git(env, role, "init", "-q", "-b", "main")
    _commit(env, role, "meta/main.yml", "galaxy_info:\n  author: t\n  description: git role\ndependencies: []\n")
    run_git(env, role, "tag", "v0.1")
    up.sha["role"] = _commit(env, role, "README", "later")
    run_git(env, work, "clone", "-q", "--bare", str(role), str(up.root / "org/gitrole.git"))
    # child's main moves on after the superproject recorded c2: the mirror must carry c2
    run_git(env, child, "remote", "add", "origin", str(up.root / "org/child.git"))
    up.sha["c3"] = _commit(env, child, "a.txt", "three")
    run_git(env, child, "push", "-q", "origin", "main")


@pytest.fixture(scope="session")
def git_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitUpstream]:
    tmp = tmp_path_factory.mktemp("git-upstream")
    (tmp / "home").mkdir()
    root = tmp / "srv"
    root.mkdir()
    portfile = tmp / "port"
    proc = subprocess.Popen([sys.executable, str(TESTS / "gitserver.py"), str(root), str(portfile)])
    try:
        wait_for_file(portfile)
        up = GitUpstream(f"http://127.0.0.1:{portfile.read_text()}", root, git_env(tmp / "home"))
        make_repos(up, tmp)
        yield up
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class GalaxyUpstream:
    server: str  # http://127.0.0.1:PORT/
    root: Path
    sha256: dict[str, str] = field(default_factory=dict)


def build_collection(work: Path, out: Path, ns: str, name: str, version: str, deps: dict[str, str]) -> Path:
    src = work / f"{ns}-{name}-{version}"
    (src / "plugins").mkdir(parents=True)
    (src / "README.md").write_text(f"# {ns}.{name}\n")
    galaxy = {"namespace": ns, "name": name, "version": version, "readme": "README.md", "authors": ["t"],
              "dependencies": deps, "license": ["MIT"]}  # fmt: skip
    (src / "galaxy.yml").write_text(json.dumps(galaxy))
    res = subprocess.run([ANSIBLE_GALAXY, "collection", "build", "--output-path", str(out), str(src)],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return out / f"{ns}-{name}-{version}.tar.gz"


def role_tarball(name: str, version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        files = {
            "meta/main.yml": f"galaxy_info:\n  role_name: {name}\n  author: t\n  description: v{version}\n"
            "  license: MIT\n  min_ansible_version: '2.9'\n  platforms: []\ndependencies: []\n",
            "tasks/main.yml": f"- debug: msg='{name} {version}'\n",
        }
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"ansible-role-{name}-{version}/{path}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="session")
def galaxy_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GalaxyUpstream]:
    import hashlib

    tmp = tmp_path_factory.mktemp("galaxy-upstream")
    root = tmp / "srv"
    (root / "collections").mkdir(parents=True)
    shas = {}
    for ns, name, version, deps in [
        ("testns", "base", "1.0.0", {}),
        ("testns", "base", "1.1.0", {}),
        ("testns", "base", "2.0.0", {}),
        ("testns", "app", "1.0.0", {"testns.base": ">=1.0.0,<2.0.0"}),
    ]:
        art = build_collection(tmp / "src", root / "collections", ns, name, version, deps)
        shas[f"{ns}.{name}:{version}"] = hashlib.sha256(art.read_bytes()).hexdigest()
    for version in ("2.0.0", "2.3.3"):
        tb = root / "roles/testowner/ntp" / f"{version}.tar.gz"
        tb.parent.mkdir(parents=True, exist_ok=True)
        tb.write_bytes(role_tarball("ntp", version))
    portfile = tmp / "port"
    proc = subprocess.Popen([sys.executable, str(TESTS / "galaxyserver.py"), str(root), str(portfile)])
    try:
        wait_for_file(portfile)
        yield GalaxyUpstream(f"http://127.0.0.1:{portfile.read_text()}/", root, shas)
    finally:
        proc.terminate()
        proc.wait(10)

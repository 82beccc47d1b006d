"""Shared fixtures: the controllable upstream, a CLI runner, manifest helpers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
# `gapcache build` carries gapcache itself (wheels from PyPI) by default; the suite's builds do not,
# except tests about it, which ask with --bootstrap-python/--bootstrap-platform (tests/e2e/test_bootstrap.py).
# Set here, so every subprocess (the CLI helper, direct Popen calls, shell scripts) inherits it.
os.environ.setdefault("GAPCACHE_BOOTSTRAP", "0")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class UpstreamHandle:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def put(self, path: str, data: bytes) -> str:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return f"{self.base}/{path.lstrip('/')}"

    def rule(self, path: str, **rule: Any) -> None:
        req = urllib.request.Request(
            f"{self.base}/_control/{path.lstrip('/')}", data=json.dumps(rule).encode(), method="POST"
        )
        urllib.request.urlopen(req).read()

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.base}/_control/all", method="DELETE")
        urllib.request.urlopen(req).read()

    def stats(self) -> dict[str, dict[str, Any]]:
        with urllib.request.urlopen(f"{self.base}/_stats") as r:
            data: dict[str, dict[str, Any]] = json.loads(r.read())
            return data

    def served(self, path: str) -> int:
        return int(self.stats().get("/" + path.lstrip("/"), {}).get("bytes", 0))


def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def upstream_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamHandle]:
    root = tmp_path_factory.mktemp("upstream")
    portfile = root.parent / "upstream.port"
    proc = subprocess.Popen([sys.executable, str(TESTS / "upstream.py"), str(root), str(portfile)])
    try:
        wait_for_file(portfile)
        yield UpstreamHandle(root, int(portfile.read_text()))
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def upstream(upstream_server: UpstreamHandle) -> Iterator[UpstreamHandle]:
    upstream_server.reset()
    yield upstream_server
    upstream_server.reset()


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PIP_FIND_LINKS", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def gapcache(
    *args: str | Path, check: bool = False, timeout: float = 300, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run the real command line (a subprocess: exit codes and output as a user sees them)."""
    cmd = [sys.executable, "-m", "gapcache", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=cli_env(**(env or {})), **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    return res


def write_manifest(path: Path, files: list[dict[str, str]]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"format": 1, "files": files}, sort_keys=False))
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[str] | None = None, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


@contextlib.contextmanager
def serving(source: Path, *extra: str, listener: str = "files") -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``gapcache serve`` of a loaded root (a directory) or an archive (a file), with one listener
    on a free port; the others are disabled. Its log goes to SOURCE/../serve.log — a file, never
    a pipe: nobody reads a pipe, and a full one would stall the server."""
    port = free_port()
    others = [x for name in ("registry", "repos", "pypi", "files") if name != listener for x in ("--port", f"{name}=0")]
    where = ["--root", str(source)] if source.is_dir() else ["--archive", str(source)]
    with open(source.parent / "serve.log", "a") as log:
        cmd = [sys.executable, "-m", "gapcache", "serve", *where, "--bind", "127.0.0.1"]
        cmd += ["--port", f"{listener}={port}", *others, *extra]
        proc = subprocess.Popen(cmd, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            wait_port(port, proc)
            yield proc, port
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="session")
def yum_upstream(upstream_server: UpstreamHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("rpm")
    import shutil

    from rpmrepo import build_repo

    repo, pub = build_repo(work)
    dest = upstream_server.root / "el9"
    shutil.copytree(repo, dest, dirs_exist_ok=True)
    (dest / "RPM-GPG-KEY-test").write_bytes(pub)
    yield f"{upstream_server.base}/el9"

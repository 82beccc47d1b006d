"""A content type that needs a listener not yet open no longer needs a restart (issue 19, item 1):
``serve --root`` of a root with only files; ``gapcache load --add`` of an archive with an image;
within a few seconds the registry listener answers — in every worker with ``--workers 2`` (each
binds its own ``SO_REUSEPORT`` socket). A port in use is a warning naming the listener and the
port, and is tried again at the next change. Forked workers end with the parent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import cli_env, free_port, gapcache, wait_port
from helpers import build_local
from registry import docker_registry, layer, write_image

OCI = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``files.tar`` (files only), ``more.tar`` (other files) and ``images.tar`` (one image)."""
    tmp = tmp_path_factory.mktemp("listeners")
    build_local(tmp / "files", {"base/kubeadm": b"kubeadm\n" * 100}, out_name="files.tar")
    build_local(tmp / "more", {"more/notes.txt": b"notes\n"}, out_name="more.tar")
    write_image(tmp / "oci", "1", {"linux/amd64": [layer({"hello": b"hi\n" * 100})]})
    with docker_registry(tmp / "registry") as reg:
        reg.push(tmp / "oci", "1", "team/app:1")
        manifest = tmp / "images.yaml"
        manifest.write_text(
            f"format: 1\nimages:\n  - {reg.host}/team/app:1\nregistries:\n  {reg.host}: {{insecure: true}}\n"
        )
        gapcache("build", "-f", manifest, "-o", tmp / "images.tar", "--store", tmp / "store", "-q", check=True)
    return {"files": tmp / "files/files.tar", "more": tmp / "more/more.tar", "images": tmp / "images.tar"}


def get(url: str, accept: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def listening(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (one per worker with SO_REUSEPORT)."""
    want = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == want and line.split()[3] == "0A")


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@contextmanager
def serve(root: Path, files: int, registry: int, workers: int) -> Iterator[Path]:
    """``gapcache serve`` with the files and registry listeners (the others disabled); yields its log."""
    log_path = root.parent / "serve.log"
    cmd = [sys.executable, "-m", "gapcache", "serve", "--root", str(root), "--bind", "127.0.0.1",
           "--workers", str(workers), "--port", f"files={files}", "--port", f"registry={registry}",
           "--port", "repos=0", "--port", "charts=0", "--port", "pypi=0"]  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            wait_port(files, proc)
            yield log_path
        finally:
            proc.terminate()
            proc.wait(10)


def registry_answers(port: int) -> bool:
    try:
        status, body = get(f"http://127.0.0.1:{port}/v2/_catalog")
    except OSError:
        return False
    return status == 200 and bool(json.loads(body)["repositories"])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_add_images_opens_the_registry_listener(tmp_path: Path, archives: dict[str, Path], workers: int) -> None:
    root = tmp_path / "root"
    gapcache("load", archives["files"], "--root", root, "-q", check=True)
    files, registry = free_port(), free_port()
    with serve(root, files, registry, workers) as log:
        assert eventually(lambda: listening(files) == workers)
        assert listening(registry) == 0  # nothing for it in the lock: not open
        gapcache("load", "--add", archives["images"], "--root", root, "-q", check=True)
        assert eventually(lambda: registry_answers(registry)), log.read_text()
        assert eventually(lambda: listening(registry) == workers), log.read_text()  # every worker opened it
        name = json.loads(get(f"http://127.0.0.1:{registry}/v2/_catalog")[1])["repositories"][0]
        status, body = get(f"http://127.0.0.1:{registry}/v2/{name}/manifests/1", OCI)
        assert status == 200 and json.loads(body)["schemaVersion"] == 2
        for _ in range(20):  # whichever worker accepts the connection answers
            assert get(f"http://127.0.0.1:{registry}/v2/{name}/manifests/1", OCI)[0] == 200
        assert get(f"http://127.0.0.1:{files}/base/kubeadm") == (200, b"kubeadm\n" * 100)  # still served
        text = log.read_text()
    assert text.count(f"the new lock has content for the registry listener: now open on 127.0.0.1:{registry}") == 1
    assert "restart" not in text


@pytest.mark.slow
def test_port_in_use_is_a_warning_then_retried(tmp_path: Path, archives: dict[str, Path]) -> None:
    root = tmp_path / "root"
    gapcache("load", archives["files"], "--root", root, "-q", check=True)
    files = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    registry = squatter.getsockname()[1]
    with serve(root, files, registry, 1) as log:
        try:
            gapcache("load", "--add", archives["images"], "--root", root, "-q", check=True)
            assert eventually(lambda: "cannot be opened" in log.read_text()), log.read_text()
            warning = next(x for x in log.read_text().splitlines() if "cannot be opened" in x)
            assert "registry listener" in warning and f"127.0.0.1:{registry}" in warning
            assert get(f"http://127.0.0.1:{files}/base/kubeadm")[0] == 200  # the rest is served
        finally:
            squatter.close()
        # the next change (one more set) opens it
        gapcache("load", "--add", archives["more"], "--root", root, "-q", check=True)
        assert eventually(lambda: registry_answers(registry)), log.read_text()
        assert get(f"http://127.0.0.1:{files}/more/notes.txt") == (200, b"notes\n")


def children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_the_parent(tmp_path: Path, archives: dict[str, Path], sig: int) -> None:
    """However the parent ends — SIGKILL, or SIGTERM as soon as the first answer comes (possibly
    from a forked worker, before the parent handles signals) — no worker is left on the port."""
    root = tmp_path / "root"
    gapcache("load", archives["files"], "--root", root, "-q", check=True)
    files = free_port()
    cmd = [sys.executable, "-m", "gapcache", "serve", "--root", str(root), "--bind", "127.0.0.1", "--workers", "3",
           "--port", f"files={files}", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        assert eventually(lambda: len(children(proc.pid)) == 2)
        workers = children(proc.pid)
        if sig == signal.SIGKILL:
            wait_port(files)
        os.kill(proc.pid, sig)
        proc.wait(10)
        assert eventually(lambda: not any(alive(w) for w in workers), timeout=10), workers
        assert eventually(lambda: listening(files) == 0, timeout=5)
    finally:
        for pid in [proc.pid, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

"""End to end: build online from a real upstream, then load + serve + download inside `unshare -n`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import UpstreamHandle, gapcache, sha256, write_manifest

HERE = Path(__file__).parent


@pytest.mark.slow
def test_build_online_then_serve_inside_an_air_gap(tmp_path: Path, upstream: UpstreamHandle) -> None:
    for tool in ("unshare", "ip", "curl", "wget"):
        assert shutil.which(tool), f"{tool} is required (scripts/setup.sh installs it)"
    content = {
        "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm": os.urandom(20 * 1024 * 1024),
        "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubectl": os.urandom(3 * 1024 * 1024),
        "github.com/containernetworking/plugins/releases/cni-plugins-linux-amd64-v1.4.0.tgz": os.urandom(70_000),
        "nvidia/k8s-device-plugin/v0.15.0/deployments/static/nvidia-device-plugin.yml": b"apiVersion: apps/v1\n",
        "docker/compose/docker-compose-linux-x86_64": os.urandom(4096),
    }
    files = []
    for i, (path, data) in enumerate(content.items()):
        entry = {"url": upstream.put(f"up/{path}", data)}
        if i % 2 == 0:
            entry["sha256"] = sha256(data)
        files.append(entry)
    m = write_manifest(tmp_path / "deepops.yaml", files)
    archive = tmp_path / "deepops.tar"
    gapcache("build", "-f", m, "-o", archive, "--store", tmp_path / "store", check=True)
    lock = json.loads((tmp_path / "deepops.tar.lock.json").read_text())
    expected = {a["path"].removeprefix("files/"): a["digest"] for i in lock["items"] for a in i["artifacts"]}
    assert len(expected) == len(content)

    out = tmp_path / "offline"
    out.mkdir()
    paths = out / "paths.txt"
    paths.write_text("".join(quote(p) + "\n" for p in expected))
    root = tmp_path / "opt-deepops"
    res = subprocess.run(
        [
            "unshare",
            "-n",
            "bash",
            str(HERE / "airgap.sh"),
            sys.executable,
            str(archive),
            str(root),
            str(out),
            str(paths),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_CONFIG_FILE": "/dev/null"},
    )
    assert res.returncode == 0, res.stdout + res.stderr + (out / "serve.log").read_text()
    assert (out / "route.txt").read_text() == "", "the namespace has a route: it is not an air gap"
    assert (out / "global-addrs.txt").read_text() == ""

    index = dict(line.split(" ", 1) for line in (out / "curl/index.txt").read_text().splitlines())
    assert len(index) == len(expected)
    for n, quoted in index.items():
        from urllib.parse import unquote

        path = unquote(quoted)
        got = "sha256:" + hashlib.sha256((out / "curl" / n).read_bytes()).hexdigest()
        assert got == expected[path], path
    for path, digest in expected.items():
        mirrored = out / "wget" / path
        assert mirrored.is_file(), f"wget -r did not find {path} through the listings"
        assert "sha256:" + hashlib.sha256(mirrored.read_bytes()).hexdigest() == digest
    assert (out / "miss-status.txt").read_text().strip() == "404"
    misses = [json.loads(x) for x in (root / "misses.jsonl").read_text().splitlines()]
    assert any(x["path"] == "/not/in/the/lock" for x in misses)

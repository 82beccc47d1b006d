"""Upstreams (DESIGN "Upstreams") against fixture servers on 127.0.0.1, and the deepops profile
resolved through them: `build --profile deepops -f site.yaml --plan` (issue 13)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import UpstreamHandle
from gapcache.build import BuildOptions, build, plan
from gapcache.cli_profile import add_build_options, load_build_manifest
from gapcache.fetch import Downloader, FetchJob
from gapcache.names import default_file_path
from gapcache.store import Store
from registry import docker_registry, layer, write_image

KEPT_IMAGES = {
    "registry.k8s.io/pause:3.10.1": "pause:3.10.1",
    "nvcr.io/nvidia/gpu-operator:v26.3.3": "nvidia/gpu-operator:v26.3.3",
}
# every profile image but those two (seeding all 25 multi-arch images would be heavy)
IMAGE_EXCLUDES = [
    "images:quay.io/*",
    "images:docker.io/*",
    "images:registry.k8s.io/[!p]*",
    "images:nvcr.io/nvidia/[!g]*",
]
OTHER_KINDS = ["charts:*", "yum:*", "apt:*", "python:*"]  # not files or images: out of this test's scope
EXCLUDED_FILE = "files:*/calicoctl-linux-arm64"


def test_downloader_fetches_through_an_upstream(upstream: UpstreamHandle, tmp_path: Path) -> None:
    data = b"kubeadm placeholder\n"
    upstream.put("mirror/dl-k8s/release/v1.35.4/bin/linux/amd64/kubeadm", data)
    url = "https://dl.k8s.io/release/v1.35.4/bin/linux/amd64/kubeadm"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def go() -> tuple[int | None, str]:
        ups = {"dl.k8s.io": f"{upstream.base}/mirror/dl-k8s"}
        async with Downloader(Store(tmp_path / "store"), upstreams=ups, retries=0) as dl:
            size = await dl.head_size(url)
            result = await dl.fetch(FetchJob(url, digest))
            return size, result.digest

    assert asyncio.run(go()) == (len(data), digest)
    assert upstream.served("mirror/dl-k8s/release/v1.35.4/bin/linux/amd64/kubeadm") == len(data)


def _site(tmp_path: Path, upstream: UpstreamHandle, registry_host: str) -> tuple[Path, dict[str, bytes]]:
    """Placeholder bytes for every profile file (at <host>/<path> on the upstream fixture) and a site
    manifest that pins their digests, excludes what this test does not seed and maps the hosts."""
    base = load_build_manifest(_args(["--profile", "deepops"]))
    payloads: dict[str, bytes] = {}
    for f in base.files:
        data = f"placeholder for {f.url}\n".encode()
        upstream.put(default_file_path(f.url), data)
        payloads[f.url] = data
    hosts = sorted({default_file_path(u).split("/", 1)[0] for u in payloads})
    site = {
        "format": 1,
        "exclude": [*IMAGE_EXCLUDES, *OTHER_KINDS, EXCLUDED_FILE],
        "files": [  # the site's own entries come after its exclude: the excluded file is not re-added
            {"url": u, "sha256": hashlib.sha256(d).hexdigest()}
            for u, d in payloads.items()
            if not u.endswith("/calicoctl-linux-arm64")
        ],
        "upstreams": {
            **{h: f"{upstream.base}/{h}" for h in hosts},
            "registry.k8s.io": f"http://{registry_host}",
            "nvcr.io": f"http://{registry_host}",
        },
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path, payloads


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_build_options(parser)
    parser.add_argument("--locked")
    return parser.parse_args(argv)


@pytest.mark.slow
def test_profile_plan_and_build_through_upstreams(upstream: UpstreamHandle, tmp_path: Path) -> None:
    with docker_registry(tmp_path / "registry") as reg:
        for ref, repo in KEPT_IMAGES.items():
            layout = tmp_path / "oci" / repo.replace("/", "_").replace(":", "_")
            plats = {p: [layer({"hello": f"{ref} {p}".encode()})] for p in ("linux/amd64", "linux/arm64")}
            write_image(layout, "t", plats)
            reg.push(layout, "t", repo)
        site, payloads = _site(tmp_path, upstream, reg.host)
        manifest = load_build_manifest(_args(["--profile", "deepops", "-f", str(site)]))
        excluded = [u for u in payloads if u.endswith("/calicoctl-linux-arm64")]
        assert len(excluded) == 1 and excluded[0] not in {f.url for f in manifest.files}
        assert sorted(i.ref for i in manifest.images) == sorted(KEPT_IMAGES)
        assert manifest.charts == [] and manifest.yum == [] and manifest.python is None

        opts = BuildOptions(store=tmp_path / "store", auth=None)
        result = asyncio.run(plan(manifest, opts))
        assert result.ok, result.failures
        files = {a.source: a for i in result.items if i.kind == "file" for a in i.artifacts}
        assert set(files) == set(payloads) - set(excluded)  # every files entry resolved, names unchanged
        for url, art in files.items():
            assert art.size == len(payloads[url])
            assert art.path == "files/" + default_file_path(url)  # e.g. files/dl.k8s.io/release/…
        images = {i.name: i for i in result.items if i.kind == "image"}
        assert sorted(images) == sorted(KEPT_IMAGES)
        for ref, item in images.items():
            host = ref.split("/", 1)[0]
            assert item.resolved["platforms"] == ["linux/amd64", "linux/arm64"]
            assert all(a.source.startswith(f"https://{host}/v2/") for a in item.artifacts)
            assert all(a.path.startswith(f"images/{ref.rsplit(':', 1)[0]}/") for a in item.artifacts)

        # a real build: the lock and the names keep the original hosts, never the fixtures'
        opts.out = tmp_path / "deepops.tar"
        built = asyncio.run(build(manifest, opts))
        assert built.ok, built.failures
        lock_text = built.lock_path.read_text() if built.lock_path else ""
        assert "https://dl.k8s.io/release/v1.35.4/bin/linux/arm64/kubeadm" in lock_text
        assert "127.0.0.1" not in lock_text
        paths = {a["path"] for i in json.loads(lock_text)["items"] for a in i["artifacts"]}
        assert "files/dl.k8s.io/release/v1.35.4/bin/linux/amd64/kubeadm" in paths
        assert any(p.startswith("images/nvcr.io/nvidia/gpu-operator/manifests/") for p in paths)

        # the same through the command line, once cli.py carries the --profile option
        help_text = subprocess.run(
            [sys.executable, "-m", "gapcache", "build", "--help"], capture_output=True, text=True
        ).stdout
        if "--profile" not in help_text:
            pytest.skip("cli.py does not wire `build --profile` yet (cli_profile.add_build_options)")
        out = subprocess.run(
            [sys.executable, "-m", "gapcache", "build", "--profile", "deepops", "-f", str(site), "--plan", "--json",
             "--store", str(tmp_path / "store2")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["ok"] and len(report["artifacts"]) >= len(files)

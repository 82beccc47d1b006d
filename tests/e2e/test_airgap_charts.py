"""Helm charts end to end: classic chart repositories on 127.0.0.1 and an OCI chart in Debian's
docker-registry (fixtures built with the Helm SDK), `images: discover` adding the image a chart runs,
build online, then load + serve inside `unshare -n` and pull with the Helm SDK and skopeo."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from chartrepo import ChartRepos, chart_repos, push_oci, web_images
from conftest import gapcache
from registry import Registry, docker_registry, layer, write_image

HERE = Path(__file__).parent


@dataclass
class Upstreams:
    repos: ChartRepos
    registry: Registry
    oci_ref: str  # oci://<registry>/charts/web
    web_image: str  # <registry>/fixtures/web:1.1.0, the image web 1.1.0 runs


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    tmp = tmp_path_factory.mktemp("chart-upstreams")
    home = tmp / "helm"
    env = {k: str(home / k.lower()) for k in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with docker_registry(tmp / "registry") as reg:
            web_repo = f"{reg.host}/fixtures/web"
            oci = tmp / "oci"
            write_image(oci, "1.1.0", {"linux/amd64": [layer({"web": b"the web server\n"})]})
            reg.push(oci, "1.1.0", "fixtures/web:1.1.0")
            with chart_repos(tmp / "charts", web_repo=web_repo) as repos:
                ref = push_oci(repos.main.charts["web-1.1.0"], reg.host)
                yield Upstreams(repos, reg, ref, f"{web_repo}:1.1.0")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def manifest(up: Upstreams) -> str:
    main = up.repos.main.url
    return (
        "format: 1\ncharts:\n"
        f"  - {{repo: {main}, name: app, version: 1.0.0}}\n"  # needs lib ~1.0 from the libs repo
        f"  - {{repo: {main}, name: web, version: '~1.1', images: discover}}\n"
        f"  - {{repo: {main}, name: needs, version: 0.1.0}}\n"
        f"  - {{ref: '{up.oci_ref}', version: 1.1.0}}\n"
        "images_exclude: ['quay.io/*', 'busybox:*', 'registry.k8s.io/fixtures/job:2.0']\n"
        f"registries:\n  {up.registry.host}: {{insecure: true}}\n"
    )


@pytest.mark.slow
def test_charts_build_then_pull_inside_an_air_gap(tmp_path: Path, upstreams: Upstreams) -> None:
    up = upstreams
    m = tmp_path / "charts.yaml"
    m.write_text(manifest(up))
    store = tmp_path / "store"
    res = gapcache("build", "-f", m, "--plan", "--store", store)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"discovered image {up.web_image}  <- chart web 1.1.0" in res.stdout
    for excluded in ("quay.io/fixtures/init:0.9", "docker.io/library/busybox:1.36"):
        assert f"excluded image {excluded}" in res.stdout
    assert not store.exists()  # the plan fetched metadata (indexes, archives) but stored nothing

    archive = tmp_path / "charts.tar"
    res = gapcache("build", "-f", m, "-o", archive, "--store", store)
    assert res.returncode == 0, res.stderr
    lock = json.loads((tmp_path / "charts.tar.lock.json").read_text())
    names = sorted(i["name"] for i in lock["items"])
    regc = up.registry.host.replace(":", "_")
    assert names == sorted(
        ["app-1.0.0", "lib-1.0.1", "needs-0.1.0", "web-1.1.0", f"{regc}/charts/web:1.1.0", f"{regc}/fixtures/web:1.1.0"]
    )
    web = next(i for i in lock["items"] if i["name"] == "web-1.1.0")
    assert web["resolved"]["images"] == [up.web_image] and web["resolved"]["images_method"] == "render"
    assert sorted(web["resolved"]["images_excluded"]) == sorted(set(web_images("1.1.0", "x")) - {"x:1.1.0"})
    image = next(i for i in lock["items"] if i["name"] == f"{regc}/fixtures/web:1.1.0")
    assert image["request"]["discovered_from"] == ["chart web 1.1.0"]

    out = tmp_path / "offline"
    out.mkdir()
    cmd = ["unshare", "-n", "bash", str(HERE / "airgap_charts.sh"), sys.executable, str(archive),
           str(tmp_path / "root"), str(out), up.registry.host, up.repos.libs.url]  # fmt: skip
    res2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    logs = "".join((out / f).read_text() for f in ("serve.log", "helm.log") if (out / f).exists())
    assert res2.returncode == 0, res2.stdout + res2.stderr + logs
    assert (out / "route.txt").read_text() == ""  # no way out of the namespace

    assert json.loads((out / "sdk-index.json").read_text()) == ["app", "lib", "needs", "web"]
    index = yaml.safe_load((out / "index.yaml").read_text())
    assert index["entries"]["web"][0]["urls"] == ["http://127.0.0.1:8002/charts/web-1.1.0.tgz"]
    assert sorted(json.loads((out / "api.json").read_text())) == ["app", "lib", "needs", "web"]
    # every pull is the upstream archive, byte for byte
    for name in ("app-1.0.0", "web-1.1.0", "needs-0.1.0"):
        assert (out / "pulled" / f"{name}.tgz").read_bytes() == up.repos.main.charts[name].read_bytes(), name
    assert (out / "pulled/lib-1.0.1.tgz").read_bytes() == up.repos.libs.charts["lib-1.0.1"].read_bytes()
    assert (out / "oci/web-1.1.0.tgz").read_bytes() == up.repos.main.charts["web-1.1.0"].read_bytes()
    # the dependency, resolved by Helm (lib ~1.0) through the mirror alone
    assert (out / "dep/app/charts/lib-1.0.1.tgz").read_bytes() == up.repos.libs.charts["lib-1.0.1"].read_bytes()
    # the OCI chart with Helm's media types, byte-exact
    served = (out / "oci-chart.json").read_bytes()
    assert served == up.registry.raw_manifest("charts/web:1.1.0")
    assert json.loads(served)["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json"
    assert f"sha256:{hashlib.sha256(served).hexdigest()}" in (out / "oci-chart.headers").read_text()
    # the discovered image, pulled with skopeo
    assert (out / "web-image.json").read_bytes() == up.registry.raw_manifest("fixtures/web:1.1.0")
    assert (out / "web-image/index.json").exists()
    # an unrequested version: a 404 and a recorded miss, and Helm says it is not there
    assert (out / "unrequested.status").read_text() == "404"
    assert "0.9.0" in (out / "missing-version.txt").read_text()
    misses = [json.loads(line) for line in (tmp_path / "root/misses.jsonl").read_text().splitlines()]
    assert {"listener": "charts", "path": "/charts/web-1.0.0.tgz", "status": 404} in [
        {k: v for k, v in x.items() if k in ("listener", "path", "status")} for x in misses
    ]


@pytest.mark.slow
def test_oci_range_and_unknown_tag(tmp_path: Path, upstreams: Upstreams) -> None:
    """An OCI chart's version range picks among the registry's tags; an unknown one fails naming it."""
    up = upstreams
    reg = f"registries:\n  {up.registry.host}: {{insecure: true}}\n"
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\ncharts:\n  - {{ref: '{up.oci_ref}', version: '>=1.0 <2'}}\n" + reg)
    res = gapcache("build", "-f", m, "--plan", "--json", "--store", tmp_path / "store")
    assert res.returncode == 0, res.stdout + res.stderr
    paths = [a["path"] for a in json.loads(res.stdout)["artifacts"]]
    assert any("/charts/web/manifests/" in p for p in paths)
    m.write_text(f"format: 1\ncharts:\n  - {{ref: '{up.oci_ref}', version: '^2'}}\n" + reg)
    res = gapcache("build", "-f", m, "--plan", "--store", tmp_path / "store")
    assert res.returncode == 1
    assert f"UNRESOLVED chart {up.oci_ref} ^2: {up.oci_ref}: no tag matching '^2' (tags: 1.1.0)" in res.stdout

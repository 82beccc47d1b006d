"""Helm charts through gapcache: two classic chart repositories on 127.0.0.1 (built with the Helm
SDK), resolved into a lock, built, loaded and served on the charts listener, pulled back with the
Helm SDK. No registry here (the OCI chart and the discovered images: tests/e2e/test_airgap_charts.py)."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from chartrepo import ChartRepos, chart_repos
from conftest import gapcache, serving
from gapcache.build import BuildOptions, BuildResult, build, plan
from gapcache.errors import ManifestError
from gapcache.lock import Lock
from gapcache.manifest import parse_manifest
from gapcache.root import Root
from helpers import serve_dir

PROV = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n(a provenance file)\n"


@dataclass
class Built:
    repos: ChartRepos
    tmp: Path
    result: BuildResult
    lock: Lock
    port: int

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())


def run_build(text: str, tmp: Path, out: str | None = None, *, only_plan: bool = False) -> BuildResult:
    manifest = parse_manifest(text, "charts.yaml")
    opts = BuildOptions(store=tmp / "store", out=tmp / out if out else None, auth=None)
    return asyncio.run(plan(manifest, opts) if only_plan else build(manifest, opts))


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The Helm SDK writes repository caches under HELM_*_HOME: keep them out of ~."""
    home = tmp_path_factory.mktemp("helm")
    saved = {k: os.environ.get(k) for k in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")}
    for k in saved:
        os.environ[k] = str(home / k.lower())
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, helm_home: None) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("charts")
    with chart_repos(tmp / "up") as repos:
        (repos.main.root / "app-1.0.0.tgz.prov").write_bytes(PROV)
        text = (
            f"format: 1\ncharts:\n"
            f"  - {{repo: {repos.main.url}, name: app, version: 1.0.0}}\n"
            f"  - {{repo: {repos.main.url}/, name: web, version: '^1.0'}}\n"  # a range; the highest is 1.1.0
            f"  - {{repo: {repos.main.url}, name: app, version: 1.0.0}}\n"  # twice: one item
        )
        result = run_build(text, tmp, "charts.tar")
        assert result.ok, result.failures
        assert result.lock is not None
        Root(tmp / "root").load([tmp / "charts.tar"])
        with serving(tmp / "root", listener="charts") as (_proc, port):
            yield Built(repos, tmp, result, result.lock, port)


def test_lock_pins_versions_digests_and_dependencies(built: Built) -> None:
    items = {i.name: i for i in built.lock.items}
    assert sorted(items) == ["app-1.0.0", "lib-1.0.1", "web-1.1.0"]  # lib: app's dependency (~1.0), another repo
    lib = items["lib-1.0.1"]
    assert lib.request == {"repo": built.repos.libs.url, "name": "lib", "version": "~1.0", "dependency_of": "app 1.0.0"}
    assert items["web-1.1.0"].request["version"] == "^1.0"
    for name, item in items.items():
        repo = built.repos.libs if name.startswith("lib") else built.repos.main
        tgz = next(a for a in item.artifacts if a.path.endswith(".tgz"))
        assert tgz.digest == "sha256:" + hashlib.sha256((repo.root / f"{name}.tgz").read_bytes()).hexdigest()
        assert item.resolved["entry"]["digest"] == tgz.digest[7:]
    app = items["app-1.0.0"]
    assert [a.path for a in app.artifacts] == ["charts/app-1.0.0.tgz", "charts/app-1.0.0.tgz.prov"]
    assert app.resolved["prov"] is True and items["web-1.1.0"].resolved["prov"] is False  # a 404: no .prov
    assert app.resolved["dependencies"][0]["name"] == "lib" and not app.resolved["dependencies"][0]["vendored"]


def test_index_points_at_the_address_the_client_used(built: Built) -> None:
    status, body, headers = built.get("/index.yaml")
    assert status == 200 and headers["Content-Type"].startswith("application/x-yaml")
    doc = yaml.safe_load(body)
    assert sorted(doc["entries"]) == ["app", "lib", "web"]
    assert [e["version"] for e in doc["entries"]["web"]] == ["1.1.0"]  # only what was asked for
    assert doc["entries"]["app"][0]["urls"] == [f"http://127.0.0.1:{built.port}/charts/app-1.0.0.tgz"]
    _, body, _ = built.get("/index.yaml", {"Host": "mirror.lan:8002"})
    assert yaml.safe_load(body)["entries"]["lib"][0]["urls"] == ["http://mirror.lan:8002/charts/lib-1.0.1.tgz"]
    _, body, _ = built.get("/index.yaml", {"Host": 'evil"host/x'})  # not a host: relative URLs
    assert yaml.safe_load(body)["entries"]["lib"][0]["urls"] == ["charts/lib-1.0.1.tgz"]


def test_archives_prov_chartmuseum_api_and_health(built: Built) -> None:
    status, body, _ = built.get("/charts/app-1.0.0.tgz")
    assert status == 200 and body == (built.repos.main.root / "app-1.0.0.tgz").read_bytes()
    assert built.get("/charts/app-1.0.0.tgz.prov")[1] == PROV
    assert built.get("/health")[:2] == (200, b'{"healthy":true}')
    status, body, _ = built.get("/api/charts")
    assert status == 200 and sorted(json.loads(body)) == ["app", "lib", "web"]
    assert json.loads(built.get("/api/charts/web")[1])[0]["urls"] == ["charts/web-1.1.0.tgz"]
    assert json.loads(built.get("/api/charts/app/1.0.0")[1])["version"] == "1.0.0"
    assert json.loads(built.get("/api/charts/app/latest")[1])["version"] == "1.0.0"
    status, body, _ = built.get("/api/charts/app/9.9.9")
    assert status == 404 and "error" in json.loads(body)
    assert built.get("/api/charts/nope")[0] == 404


def test_an_unrequested_version_is_a_404_and_a_recorded_miss(built: Built) -> None:
    assert built.get("/charts/web-1.0.0.tgz")[0] == 404
    assert built.get("/charts/../../etc/passwd")[0] == 404
    # the first miss of a path is written at once
    misses = (built.tmp / "root/misses.jsonl").read_text()
    assert '"/charts/web-1.0.0.tgz"' in misses and '"charts"' in misses


def test_helm_pulls_through_the_mirror(built: Built, tmp_path: Path) -> None:
    mirror = f"http://127.0.0.1:{built.port}"
    assert sorted(helm.repo_index(mirror)["entries"]) == ["app", "lib", "web"]
    for name, version, repo in [("app", "1.0.0", built.repos.main), ("web", "1.1.0", built.repos.main)]:
        out = tmp_path / name
        out.mkdir()
        helm.pull(name, repo_url=mirror, version=version, destination=out)
        assert (out / f"{name}-{version}.tgz").read_bytes() == (repo.root / f"{name}-{version}.tgz").read_bytes()
    # app's dependency, as Helm resolves it (lib ~1.0), from the mirror alone
    with helm.Chart.load(built.repos.main.charts["app-1.0.0"]) as c:
        c.save_dir(tmp_path / "src")
    chart_yaml = tmp_path / "src/app/Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace(built.repos.libs.url, mirror))
    helm.dependency_update(tmp_path / "src/app")
    got = tmp_path / "src/app/charts/lib-1.0.1.tgz"
    assert got.read_bytes() == (built.repos.libs.root / "lib-1.0.1.tgz").read_bytes()


def test_public_url(built: Built) -> None:
    with serving(built.tmp / "root", "--public-url", "https://charts.example/mirror", listener="charts") as (_, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/index.yaml")
        doc = yaml.safe_load(conn.getresponse().read())
    assert doc["entries"]["app"][0]["urls"] == ["https://charts.example/mirror/charts/app-1.0.0.tgz"]


def test_unknown_chart_or_version_fails_naming_it(built: Built, tmp_path: Path) -> None:
    main = built.repos.main.url
    text = (
        f"format: 1\ncharts:\n  - {{repo: {main}, name: nope}}\n  - {{repo: {main}, name: web, version: 9.9.9}}\n"
        f"  - {{repo: {main}, name: web, version: '~3'}}\n  - {{repo: {main}, name: app, version: '>=1.1 <2'}}\n"
    )
    result = run_build(text, tmp_path, only_plan=True)
    reasons = sorted(f.reason for f in result.failures)
    assert reasons == [
        f"{main}: chart 'web' has no version matching '9.9.9' (available: 1.1.0, 1.0.0)",
        f"{main}: chart 'web' has no version matching '~3' (available: 1.1.0, 1.0.0)",
        f"{main}: no chart named 'nope'",
    ]
    assert sorted(i.name for i in result.items) == ["app-1.1.0", "lib-1.0.1"]  # the highest match of >=1.1 <2
    assert not (tmp_path / "store").exists()  # a plan writes nothing


def test_digest_mismatch_fails_naming_the_chart(built: Built, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(built.repos.main.root, bad)
    (bad / "web-1.1.0.tgz").write_bytes((bad / "web-1.0.0.tgz").read_bytes())  # the index still says 1.1.0's digest
    with serve_dir(bad) as url:
        result = run_build(f"format: 1\ncharts:\n  - {{repo: {url}, name: web, version: 1.1.0}}\n", tmp_path, "x.tar")
    (failure,) = result.failures
    assert failure.item.startswith(f"chart {url} web 1.1.0")
    assert "chart web 1.1.0: digest mismatch" in failure.reason
    assert not (tmp_path / "x.tar").exists()


def test_dependency_that_cannot_be_followed_and_conflicts(built: Built, tmp_path: Path) -> None:
    """A dependency naming a local repo alias is reported, naming the chart that needs it."""
    src = tmp_path / "src"
    from chartrepo import package, write_chart

    dep = [{"name": "lib", "version": "1.0.0", "repository": "@local"}]
    repo = tmp_path / "repo"
    package(write_chart(src, "odd", "0.1.0", dependencies=dep), repo)
    helm.repo_index_generate(repo)
    with serve_dir(repo) as url:
        result = run_build(f"format: 1\ncharts:\n  - {{repo: {url}, name: odd}}\n", tmp_path, only_plan=True)
    (failure,) = result.failures
    assert failure.item == "chart lib 1.0.0 (dependency of odd 0.1.0)" and "'@local'" in failure.reason


def test_manifest_errors(tmp_path: Path) -> None:
    for bad, why in [
        ("charts:\n  - {name: x}\n", "needs repo: and name:"),
        ("charts:\n  - {ref: 'oci://h.io/a/b', repo: 'https://x', name: b}\n", "not both"),
        ("charts:\n  - {ref: 'https://h.io/a/b'}\n", "oci://host/path/name"),
        ("charts:\n  - {ref: 'oci://h.io/a/b:1.0'}\n", "version:"),
        ("charts:\n  - {repo: 'ftp://x', name: b}\n", "http(s) URL"),
        ("charts:\n  - {repo: 'https://x', name: b, images: all}\n", "images"),
    ]:
        with pytest.raises(ManifestError, match="charts") as exc:
            parse_manifest("format: 1\n" + bad, "m.yaml")
        assert why in str(exc.value), (bad, str(exc.value))
    m = parse_manifest("format: 1\ncharts:\n  - {repo: 'https://x/', name: b, version: 1.2}\n", "m.yaml")
    assert m.charts[0].version == "1.2" and m.charts[0].repo == "https://x"


def test_cli_plan_and_exit_code(built: Built, tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\ncharts:\n  - {{repo: {built.repos.main.url}, name: nope}}\n")
    res = gapcache("build", "-f", m, "--plan", "--store", tmp_path / "store")
    assert res.returncode == 1 and "UNRESOLVED chart" in res.stdout and "no chart named 'nope'" in res.stdout

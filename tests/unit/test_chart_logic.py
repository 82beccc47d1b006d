"""The Helm protocol logic of the chart kind: semver as Helm reads it, repository indexes, chart
archives, image discovery — checked against the Helm SDK itself where it can answer."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import helm_python as helm
import pytest
import yaml

from chartrepo import ChartRepos, chart_repos, web_images
from gapcache.errors import UnsafeMember
from gapcache.kinds.chart.chartfile import Dependency, InvalidChart, dependency_enabled, read_chart
from gapcache.kinds.chart.discover import discover_images, render_images, values_images
from gapcache.kinds.chart.index import (
    BadIndex,
    ChartNotFound,
    chartmuseum_chart,
    chartmuseum_charts,
    chartmuseum_version,
    parse_index,
    render_index,
    resolve_url,
)
from gapcache.kinds.chart.semver import SemverError, best_match, matches, parse_version, sort_versions
from helpers import serve_dir

# --- semver -----------------------------------------------------------------------------------

VERSIONS = [
    "0.0.3", "0.0.4", "0.1.0", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.1.0", "1.2.0", "1.2.3", "1.2.9",
    "1.3.0", "1.10.0", "2.0.0", "2.1.0-rc.1", "2.1.0", "3.0.0-alpha", "3.0.0-beta.2", "v4.0.0",
]  # fmt: skip


@pytest.mark.parametrize(
    ("constraint", "want"),
    [
        ("1.2.3", "1.2.3"),
        ("=1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("1.2", "1.2.9"),  # a missing part is a wildcard
        ("1.2.x", "1.2.9"),
        ("1.*", "1.10.0"),
        ("1.x.x", "1.10.0"),
        ("*", "v4.0.0"),
        ("", "v4.0.0"),  # Helm: no version means the latest release
        ("~1.2", "1.2.9"),
        ("~1.2.3", "1.2.9"),
        ("~>1.2.3", "1.2.9"),
        ("~1", "1.10.0"),
        ("~0.2", "0.2.9"),
        ("^1.2", "1.10.0"),
        ("^1.2.3", "1.10.0"),
        ("^0.2.3", "0.2.9"),
        ("^0.2", "0.2.9"),
        ("^0.0.3", "0.0.3"),
        ("^0.0", "0.0.4"),
        ("^0", "0.3.0"),
        (">=1.2 <2", "1.10.0"),
        (">=1.2, <2", "1.10.0"),
        (">= 1.2 , < 2.0.0", "1.10.0"),
        (">1.2", "v4.0.0"),
        (">1.2 <2", "1.10.0"),
        (">1.2.3 <1.3", "1.2.9"),
        ("<=1.2", "1.2.9"),  # <=1.2 is <1.3.0
        ("<1.2", "1.1.0"),
        ("=<1.2.3", "1.2.3"),
        ("=>2", "v4.0.0"),
        ("!=1.2.9 ~1.2", "1.2.3"),
        ("1.2 - 1.3", "1.3.0"),
        ("1.0.0 - 1.2.3", "1.2.3"),
        ("^1.2 || ^2", "2.1.0"),
        ("<1 || >=2 <3", "2.1.0"),
        ("~2.1.0-0", "2.1.0"),  # a pre-release in the constraint lets pre-releases in…
        ("^3.0.0-0", "3.0.0-beta.2"),  # …and picks the highest
        (">=3.0.0-alpha <3.0.0", "3.0.0-beta.2"),
        ("^3", None),  # only pre-releases of 3: none without a pre-release in the range
        ("^5", None),
        ("2.1.0-rc.1", "2.1.0-rc.1"),  # exact string wins
    ],
)
def test_best_match_like_helm(constraint: str, want: str | None) -> None:
    assert best_match(constraint, VERSIONS) == want


def test_prerelease_needs_a_prerelease_in_the_same_and_group_or_devel() -> None:
    assert not matches(">=2", "2.1.0-rc.1")
    assert matches(">=2.1.0-0 <3", "2.1.0-rc.1")
    assert not matches(">=2.1.0-0 <3 || >=5", "5.0.0-rc.1")  # the other group has no pre-release
    assert matches(">=2", "2.1.0-rc.1", devel=True)
    assert best_match("^2", VERSIONS, devel=True) == "2.1.0"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
        ("1.0.0-alpha.beta", "1.0.0-beta"),
        ("1.0.0-beta.2", "1.0.0-beta.11"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.9.0", "1.10.0"),
        ("v1.2", "1.2.1"),
    ],
)
def test_precedence(a: str, b: str) -> None:
    assert parse_version(a) < parse_version(b)


def test_versions_are_loose_and_metadata_is_ignored() -> None:
    assert parse_version("v1.2") == parse_version("1.2.0")
    assert parse_version("1.2.3+build.5") == parse_version("1.2.3")
    assert str(parse_version("v1")) == "1.0.0"
    assert sort_versions(["1.0.0", "junk", "v2", "1.10.0"]) == ["v2", "1.10.0", "1.0.0"]


@pytest.mark.parametrize("bad", ["1.2.3.4", "abc", "1.2.3-", "1.2.3-01", " 1.2.3", "1.2.3+a..b", ""])
def test_bad_versions_are_refused(bad: str) -> None:
    with pytest.raises(SemverError):
        parse_version(bad)


@pytest.mark.parametrize("bad", ["bogus", ">>1", "1.2.3 ||", "~", ">=1.2 <", "1.2.3.4"])
def test_bad_constraints_are_refused(bad: str) -> None:
    with pytest.raises(SemverError):
        best_match(bad, VERSIONS)


def test_constraints_agree_with_the_helm_sdk(tmp_path: Path) -> None:
    """Helm pulls each constraint from an index without archives: the 404 names its choice."""
    versions = [*VERSIONS, "1.2.4-beta.1", "1.2.3-beta.2", "5.0.0+build.1"]
    entries = [{"name": "x", "version": v, "apiVersion": "v2", "urls": [f"x-{v}.tgz"]} for v in versions]
    (tmp_path / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": {"x": entries}}))
    constraints = [
        "~1.2", "~1.2.3", "^1.2", "^0.2.3", "^0.0.3", "^0", ">=1.2 <2", ">=1.2, <2", "1.2.x", "1.*", "*",
        ">1.2", "<=1.2", "1.2 - 1.3", "^1.2 || ^2", "~2.1.0-0", "^3.0.0-0", "^3", "!=1.2.9 ~1.2",
        ">=1.2.4-0 <1.3", "~1", "2", "v1.2", "=>2 <=2.1", ">1.2.3 <1.3", "<1.2", ">=1.2.3-beta.1,<2",
        "~1.2.3-beta", "1.2.3 - 2", ">1", "<=1", "!=1.*", "x", "1.2.X", ">=1.2.3-beta.1 <1.2.3", "^0.0", "~0",
        "5", "5.0.0", "<=2.1.0-rc.1", ">2.1.0-0 <2.2", "=1.2", "1.2.3-beta.2 || 3.0.0-alpha", "~>1",
        "^1.2.3-beta.2", ">= 1.2, != 1.2.9, < 1.3", "1 - 1.2", "<2.0.0-0", "4", "^5",
    ]  # fmt: skip
    with serve_dir(tmp_path) as url:
        for c in constraints:
            try:
                helm.pull("x", repo_url=url, version=c, destination=tmp_path / "dl")
                raise AssertionError("the index has no archives")
            except helm.HelmRepoError as e:
                msg = str(e)
                helm_pick = msg.split("/x-", 1)[1].split(".tgz", 1)[0] if "/x-" in msg else None
            assert best_match(c, versions) == helm_pick, c


# --- index ------------------------------------------------------------------------------------

UPSTREAM = b"""\
apiVersion: v1
entries:
  app:
  - name: app
    version: 1.0.0
    created: 2024-01-02T03:04:05.123456789Z
    digest: aa
    urls: [app-1.0.0.tgz]
  - name: app
    version: 1.1.0
    appVersion: 1.10
    created: "2024-02-02T03:04:05Z"
    digest: bb
    urls: [https://cdn.example.com/x/app-1.1.0.tgz]
    dependencies:
    - {name: lib, version: ~1.0, repository: https://libs.example.com}
    annotations: {category: Test}
  broken:
  - {name: broken, version: 1.0.0}
generated: "2024-03-01T00:00:00Z"
"""


def test_parse_index_resolves_urls_and_keeps_metadata() -> None:
    idx = parse_index(UPSTREAM, "https://charts.example.com/stable?token=t")
    assert idx.versions("app") == ["1.1.0", "1.0.0"]
    old, new = idx.get("app", "1.0.0"), idx.get("app", "~1")
    assert new.version == "1.1.0" and new.url == "https://cdn.example.com/x/app-1.1.0.tgz"
    assert old.url == "https://charts.example.com/stable/app-1.0.0.tgz?token=t"
    assert old.digest == "sha256:aa" and old.created == "2024-01-02T03:04:05.123456789Z"
    assert new.app_version == "1.10"  # unquoted, yet a string (Helm's reader keeps it so too)
    assert new.dependencies == [{"name": "lib", "version": "~1.0", "repository": "https://libs.example.com"}]
    assert idx.entries.keys() == {"app"} and idx.skipped
    with pytest.raises(ChartNotFound, match="'nope'"):
        idx.get("nope")
    with pytest.raises(ChartNotFound, match=r"'app' has no version matching '\^2'.*1\.1\.0"):
        idx.get("app", "^2")
    with pytest.raises(BadIndex):
        parse_index(b"<html>not found</html>", "https://x")


@pytest.mark.parametrize(
    ("repo", "url", "want"),
    [
        ("https://h/charts", "a-1.tgz", "https://h/charts/a-1.tgz"),
        ("https://h/charts/", "a-1.tgz", "https://h/charts/a-1.tgz"),
        ("https://h/charts", "/other/a-1.tgz", "https://h/other/a-1.tgz"),
        ("https://h/charts", "../a-1.tgz", "https://h/a-1.tgz"),
        ("https://h", "charts/a-1.tgz", "https://h/charts/a-1.tgz"),
        ("https://h/c", "https://cdn/a-1.tgz", "https://cdn/a-1.tgz"),
    ],
)
def test_resolve_url_like_helm(repo: str, url: str, want: str) -> None:
    assert resolve_url(repo, url) == want


def test_rendered_index_is_deterministic_and_points_at_the_base() -> None:
    charts = [cv for vs in parse_index(UPSTREAM, "https://c").entries.values() for cv in vs]
    a = render_index(charts, "http://mirror:8002/")
    b = render_index(list(reversed(charts)), "http://mirror:8002")
    assert a == b
    doc = yaml.safe_load(a)
    assert doc["generated"] == "2024-02-02T03:04:05Z"  # newest entry, not the clock
    entry = doc["entries"]["app"][0]
    assert entry["urls"] == ["http://mirror:8002/charts/app-1.1.0.tgz"] and entry["digest"] == "bb"
    assert entry["annotations"] == {"category": "Test"} and entry["appVersion"] == "1.10"
    assert doc["entries"]["app"][1]["created"] == "2024-01-02T03:04:05.123456789Z"
    assert json.loads(chartmuseum_charts(charts))["app"][1]["urls"] == ["charts/app-1.0.0.tgz"]
    assert [e["version"] for e in json.loads(chartmuseum_chart(charts, "app") or b"")] == ["1.1.0", "1.0.0"]
    assert json.loads(chartmuseum_version(charts, "app", "latest") or b"")["version"] == "1.1.0"
    assert chartmuseum_version(charts, "app", "9.9.9") is None and chartmuseum_chart(charts, "zz") is None


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepos]:
    with chart_repos(tmp_path_factory.mktemp("charts")) as r:
        yield r


def test_helm_pulls_through_a_rendered_index(repos: ChartRepos, tmp_path: Path) -> None:
    """Upstream index → parse → render for a mirror dir → the Helm SDK pulls byte-identical archives."""
    charts = []
    for repo in (repos.main, repos.libs):
        idx = parse_index(urlopen(f"{repo.url}/index.yaml").read(), repo.url)
        charts += [cv for vs in idx.entries.values() for cv in vs]
    mirror = tmp_path / "mirror"
    (mirror / "charts").mkdir(parents=True)
    for cv in charts:
        src = urlopen(cv.url).read()
        assert cv.digest == "sha256:" + hashlib.sha256(src).hexdigest()
        (mirror / "charts" / cv.filename).write_bytes(src)
    random.shuffle(charts)
    with serve_dir(mirror) as url:
        (mirror / "index.yaml").write_bytes(render_index(charts, url))
        assert sorted(helm.repo_index(url)["entries"]) == ["app", "lib", "needs", "web"]
        for name, version, repo in [("app", "1.0.0", repos.main), ("lib", "~1.0", repos.libs)]:
            out = tmp_path / name
            out.mkdir()  # the SDK's pull does not create its destination
            helm.pull(name, repo_url=url, version=version, destination=out)
            (got,) = out.iterdir()
            assert got.read_bytes() == (repo.root / got.name).read_bytes()
        assert got.name == "lib-1.0.1.tgz"


# --- chart archives ---------------------------------------------------------------------------


def test_read_chart_with_a_dependency_in_another_repo(repos: ChartRepos) -> None:
    chart = read_chart(repos.main.charts["app-1.1.0"].read_bytes(), "app")
    assert (chart.name, chart.version, chart.api_version) == ("app", "1.1.0", "v2")
    (dep,) = chart.dependencies
    assert dep == Dependency("lib", "~1.0", repos.libs.url, condition="lib.enabled", vendored=False)
    assert chart.missing_dependencies == [dep] and chart.values == {"lib": {"enabled": True}}
    assert dependency_enabled(dep, chart.values) and not dependency_enabled(dep, {"lib": {"enabled": False}})


def test_vendored_dependency_is_seen(tmp_path: Path, repos: ChartRepos) -> None:
    with helm.Chart.load(repos.main.charts["app-1.0.0"]) as c:
        c.save_dir(tmp_path)
    helm.expand(tmp_path / "app" / "charts", repos.libs.charts["lib-1.0.1"])  # as `helm dep build` leaves it
    tgz = helm.package(tmp_path / "app", destination=tmp_path / "out")
    chart = read_chart(Path(tgz).read_bytes())
    assert chart.dependencies[0].vendored and chart.missing_dependencies == []
    assert chart.subcharts["lib"].version == "1.0.1"


def _tgz(members: list[tarfile.TarInfo], data: bytes = b"x") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tf:
        ok = tarfile.TarInfo("c/Chart.yaml")
        body = b"apiVersion: v2\nname: c\nversion: 1.0.0\n"
        ok.size = len(body)
        tf.addfile(ok, io.BytesIO(body))
        for m in members:
            tf.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return raw.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return m


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("c/../../etc/passwd"), "'..'"),
        (_member("/etc/passwd"), "absolute"),
        (_member("c/templates/x.yaml", tarfile.SYMTYPE, "/etc/shadow"), "link"),
        (_member("c/values.yaml", tarfile.LNKTYPE, "c/Chart.yaml"), "link"),
        (_member("c/dev", tarfile.CHRTYPE), "not a regular file"),
    ],
)
def test_hostile_archives_are_refused(member: tarfile.TarInfo, why: str) -> None:
    with pytest.raises(UnsafeMember, match=why):
        read_chart(_tgz([member]), "evil.tgz")


def test_not_a_chart() -> None:
    with pytest.raises(InvalidChart):
        read_chart(b"not a tarball")
    with pytest.raises(InvalidChart, match=r"no Chart\.yaml"):
        read_chart(_empty_tgz())


def _empty_tgz() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tf:
        m = _member("c/values.yaml")
        tf.addfile(m, io.BytesIO(b"x"))
    return raw.getvalue()


# --- image discovery --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_discover_renders_the_templates(repos: ChartRepos, version: str) -> None:
    data = repos.main.charts[f"web-{version}"].read_bytes()
    assert discover_images(data) == (web_images(version), "render")
    override = {"image": {"tag": "pinned"}}
    assert "127.0.0.1:5000/fixtures/web:pinned" in render_images(data, override)


def test_discover_falls_back_to_values_when_rendering_needs_cluster_values(repos: ChartRepos) -> None:
    data = repos.main.charts["needs-0.1.0"].read_bytes()
    want = ["docker.io/fixtures/exporter:0.5", "ghcr.io/fixtures/ctl:3.1", "nvcr.io/fixtures/agent:1.10"]
    assert discover_images(data) == (want, "values")
    images, method = discover_images(data, {"global": {"imageRegistry": "mirror.local:5000"}})
    assert method == "values" and "mirror.local:5000/fixtures/ctl:3.1" in images
    assert discover_images(data, {"clusterName": "c1"}) == (["ghcr.io/fixtures/ctl"], "render")


def test_values_patterns() -> None:
    values = {
        "image": {"repository": "nginx", "tag": ""},
        "sidecar": {"image": "busybox:1.36"},
        "db": {"repository": "bitnami/postgresql", "tag": "16.2.0", "registry": "docker.io"},
        "pinned": {"image": {"repository": "x/y", "digest": "sha256:" + "a" * 64}},
        "helmRepo": {"repository": "https://charts.example.com"},  # not an image
        "templated": {"image": "{{ .Values.registry }}/z:1"},
        "list": [{"image": "quay.io/a/b:2"}],
    }
    assert values_images(values, app_version="1.25") == [
        "busybox:1.36",
        "docker.io/bitnami/postgresql:16.2.0",
        "nginx:1.25",
        "quay.io/a/b:2",
        "x/y@sha256:" + "a" * 64,
    ]


@pytest.mark.slow
def test_oci_push_and_pull_with_plain_http(repos: ChartRepos, tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
    from chartrepo import push_oci
    from registry import docker_registry

    with docker_registry(tmp_path / "reg") as reg:
        ref = push_oci(repos.main.charts["web-1.1.0"], reg.host)
        assert ref == f"oci://{reg.host}/charts/web"
        (tmp_path / "dl").mkdir()
        helm.pull(ref, version="1.1.0", plain_http=True, destination=tmp_path / "dl")
        assert (tmp_path / "dl/web-1.1.0.tgz").read_bytes() == repos.main.charts["web-1.1.0"].read_bytes()
        manifest = json.loads(reg.raw_manifest("charts/web:1.1.0"))
        assert manifest["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json"

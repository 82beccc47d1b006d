"""Images end to end: real upstream registries (docker-registry, one with htpasswd), build online,
then load + serve inside `unshare -n` and pull with skopeo and podman."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import gapcache, serving
from registry import Registry, docker_registry, layer, write_image

HERE = Path(__file__).parent


@dataclass
class Upstreams:
    plain: Registry
    private: Registry
    app_index: str
    arm64_manifest: str
    base_layer: str


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    tmp = tmp_path_factory.mktemp("registries")
    with docker_registry(tmp / "plain") as plain, docker_registry(tmp / "private", ("gc", "s3cret")) as private:
        base = layer({"bin/base": b"shared base layer\n" * 100})
        oci = tmp / "oci"
        app = write_image(
            oci,
            "1",
            {"linux/amd64": [base, layer({"hello": b"amd64\n"})], "linux/arm64": [base, layer({"hello": b"arm64\n"})]},
        )
        plain.push(oci, "1", "team/app:1")
        write_image(oci, "2", {"linux/amd64": [base, layer({"other": b"other\n"})]})
        plain.push(oci, "2", "team/other:2")
        plain.push(oci, "2", "team/docker:v2s2", fmt="v2s2")
        private.push(oci, "2", "team/private:1")
        index = json.loads(plain.raw_manifest("team/app:1"))
        arm = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
        yield Upstreams(plain, private, app, arm, "sha256:" + hashlib.sha256(base).hexdigest())


@pytest.mark.slow
def test_images_build_then_pull_inside_an_air_gap(tmp_path: Path, upstreams: Upstreams) -> None:
    up, priv = upstreams.plain, upstreams.private
    docker_cfg = tmp_path / "docker"
    docker_cfg.mkdir()
    auth = base64.b64encode(b"gc:s3cret").decode()
    (docker_cfg / "config.json").write_text(json.dumps({"auths": {priv.host: {"auth": auth}}}))
    m = tmp_path / "images.yaml"
    m.write_text(
        "format: 1\nplatforms: [linux/amd64]\nimages:\n"
        f"  - {up.host}/team/app:1\n  - {up.host}/team/other:2\n  - {up.host}/team/docker:v2s2\n"
        f"  - {priv.host}/team/private:1\n"
        f"registries:\n  {up.host}: {{insecure: true}}\n  {priv.host}: {{insecure: true}}\n"
    )
    archive = tmp_path / "images.tar"
    res = gapcache(
        "build", "-f", m, "-o", archive, "--store", tmp_path / "store", env={"DOCKER_CONFIG": str(docker_cfg)}
    )
    assert res.returncode == 0, res.stderr
    lock = json.loads((tmp_path / "images.tar.lock.json").read_text())
    app = next(i for i in lock["items"] if i["name"].endswith("team/app:1"))
    assert app["resolved"]["digest"] == upstreams.app_index  # the index, byte-exact
    assert app["resolved"]["platforms"] == ["linux/amd64"]
    # layer dedup: the base layer is used by four images, stored and packed once
    with tarfile.open(archive) as tf:
        names = tf.getnames()
    assert names.count(f"blobs/sha256/{upstreams.base_layer[7:]}") == 1
    assert (tmp_path / "store/blobs/sha256" / upstreams.base_layer[7:]).exists()
    assert f"blobs/sha256/{upstreams.arm64_manifest[7:]}" not in names  # platform not selected

    out = tmp_path / "offline"
    out.mkdir()
    script = HERE / "airgap_images.sh"
    cmd = [
        "unshare",
        "-n",
        "bash",
        str(script),
        sys.executable,
        str(archive),
        str(tmp_path / "root"),
        str(out),
        up.host,
        priv.host,
    ]
    res2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ})
    log = (out / "serve.log").read_text() if (out / "serve.log").exists() else ""
    assert res2.returncode == 0, res2.stdout + res2.stderr + log
    assert (out / "route.txt").read_text() == ""
    assert "Docker-Distribution-API-Version: registry/2.0" in (out / "v2.headers").read_text()
    by_tag = (out / "app-by-tag.json").read_bytes()
    assert "sha256:" + hashlib.sha256(by_tag).hexdigest() == upstreams.app_index
    assert (out / "app-by-digest.json").read_bytes() == by_tag
    assert (out / "docker-v2s2.json").read_bytes() == up.raw_manifest("team/docker:v2s2")
    assert (out / "private.json").read_bytes() == priv.raw_manifest("team/private:1")
    copied = json.loads((out / "copy/index.json").read_text())["manifests"][0]
    copied_manifest = json.loads((out / "copy/blobs/sha256" / copied["digest"][7:]).read_text())
    upstream_manifest = json.loads(up.raw_manifest("team/other:2"))
    assert [x["digest"] for x in copied_manifest["layers"]] == [x["digest"] for x in upstream_manifest["layers"]]
    catalog = json.loads((out / "catalog.json").read_text())["repositories"]
    upc = up.host.replace(":", "_")
    assert f"{upc}/team/app" in catalog and f"{priv.host.replace(':', '_')}/team/private" in catalog
    assert json.loads((out / "tags.json").read_text()) == {"name": f"{upc}/team/app", "tags": ["1"]}
    assert (out / "ns-status.txt").read_text() == "200"
    images = (out / "podman-images.txt").read_text()
    assert f"127.0.0.1:5000/{upc}/team/app:1" in images
    assert "127.0.0.1:5000/team/other:2" in images
    assert f"{up.host}/team/docker:v2s2" in images


@pytest.mark.slow
def test_unselected_platform_and_hostile_names(tmp_path: Path, upstreams: Upstreams) -> None:
    up = upstreams.plain
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\nimages:\n  - {up.host}/team/app:1\nregistries:\n  {up.host}: {{insecure: true}}\n")
    gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", tmp_path / "store", check=True)
    gapcache("load", tmp_path / "a.tar", "--root", tmp_path / "root", "-q", check=True)
    with serving(tmp_path / "root", listener="registry") as (_proc, port):
        import http.client

        def get(path: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()

        upc = up.host.replace(":", "_")
        status, body = get(f"/v2/{upc}/team/app/manifests/{upstreams.arm64_manifest}")
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        misses = (tmp_path / "root/misses.jsonl").read_text()
        assert f"/v2/{upc}/team/app/manifests/{upstreams.arm64_manifest}" in misses
        status, body = get(f"/v2/{upc}/team/nope/manifests/1")
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"
        status, body = get(f"/v2/{upc}/team/app/blobs/sha256:{'0' * 64}")
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UNKNOWN"
        for hostile in (
            f"/v2/{upc}/team/../../etc/manifests/1",
            f"/v2/{upc}%2fteam%2fapp/manifests/1",
            "/v2/" + "a" * 10_000 + "/manifests/1",
            f"/v2/{upc}/team/app/blobs/..%2f..%2fetc%2fpasswd",
        ):
            status, _ = get(hostile)
            assert 400 <= status < 500, hostile
        status, body = get(f"/v2/{upc}/team/app/manifests/1")
        assert status == 200


@pytest.mark.slow
def test_push_into_another_registry_preserves_digests(tmp_path: Path, upstreams: Upstreams) -> None:
    up = upstreams.plain
    m = tmp_path / "m.yaml"
    m.write_text(
        f"format: 1\nplatforms: [all]\nimages:\n  - {up.host}/team/app:1\n  - {up.host}/team/other:2\n"
        f"registries:\n  {up.host}: {{insecure: true}}\n"
    )
    gapcache("build", "-f", m, "-o", tmp_path / "p.tar", "--store", tmp_path / "store", check=True)
    gapcache("load", tmp_path / "p.tar", "--root", tmp_path / "root", "-q", check=True)
    with docker_registry(tmp_path / "target", ("pusher", "pw")) as target:
        env = {"GAPCACHE_REGISTRY_AUTH": f"{target.host}=pusher:pw"}
        res = gapcache(
            "push", "--to", f"{target.host}/mirror", "--root", tmp_path / "root", "--insecure", "-q", env=env
        )
        assert res.returncode == 0, res.stderr
        assert "blob(s) uploaded" in res.stderr and "0 already there" in res.stderr
        upc = up.host.replace(":", "_")
        for ref in ("team/app:1", "team/other:2"):
            assert target.raw_manifest(f"mirror/{upc}/{ref}") == up.raw_manifest(ref)
        arm = target.raw_manifest(f"mirror/{upc}/team/app@{upstreams.arm64_manifest}")
        assert "sha256:" + hashlib.sha256(arm).hexdigest() == upstreams.arm64_manifest
        # the shared base layer went up once and was cross-mounted into the other repository
        assert "1 cross-mounted" in res.stderr
        again = gapcache(
            "push", "--to", f"{target.host}/mirror", "--root", tmp_path / "root", "--insecure", "-q", env=env
        )
        assert again.returncode == 0, again.stderr
        assert "0 blob(s) uploaded (0 B)" in again.stderr
        # straight from the archive file too
        third = gapcache(
            "push", "--to", f"{target.host}/copy2", str(tmp_path / "p.tar"), "--insecure", "-q",
            "--registry-auth", f"{target.host}=pusher:pw",
        )  # fmt: skip
        assert third.returncode == 0, third.stderr
        assert target.raw_manifest(f"copy2/{upc}/team/other:2") == up.raw_manifest("team/other:2")


@pytest.mark.slow
def test_bearer_token_registry(tmp_path: Path, upstreams: Upstreams) -> None:
    """A registry that demands bearer tokens from a realm (like Docker Hub): anonymous pull tokens."""
    from conftest import wait_for_file

    portfile = tmp_path / "proxy.port"
    proxy = subprocess.Popen(
        [sys.executable, str(HERE.parent / "token_proxy.py"), str(upstreams.plain.port), str(portfile)]
    )
    try:
        wait_for_file(portfile)
        host = f"127.0.0.1:{portfile.read_text()}"
        m = tmp_path / "m.yaml"
        m.write_text(
            f"format: 1\nplatforms: [all]\nimages:\n  - {host}/team/app:1\n  - {host}/team/other:2\n"
            f"registries:\n  {host}: {{insecure: true}}\n"
        )
        res = gapcache("build", "-f", m, "-o", tmp_path / "t.tar", "--store", tmp_path / "store")
        assert res.returncode == 0, res.stderr
        lock = json.loads((tmp_path / "t.tar.lock.json").read_text())
        app = next(i for i in lock["items"] if i["name"].endswith("/team/app:1"))
        assert app["resolved"]["digest"] == upstreams.app_index
        import urllib.request

        with urllib.request.urlopen(f"http://{host}/_stats") as r:
            stats = json.loads(r.read())
        assert stats["issued"] >= 2 and stats["refused"] >= 2  # challenged, then served with tokens
        # without a token endpoint answering, the error names the item and the 401
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"format: 1\nimages:\n  - {host}/team/nothing:1\nregistries:\n  {host}: {{insecure: true}}\n")
        res = gapcache("build", "-f", bad, "-o", tmp_path / "b.tar", "--store", tmp_path / "store")
        assert res.returncode == 1
        assert "team/nothing:1" in res.stderr and "HTTP 404" in res.stderr
    finally:
        proxy.terminate()
        proxy.wait(10)


@pytest.mark.slow
def test_push_to_the_mirror_is_refused(tmp_path: Path, upstreams: Upstreams) -> None:
    up = upstreams.plain
    m = tmp_path / "m.yaml"
    m.write_text(f"format: 1\nimages:\n  - {up.host}/team/other:2\nregistries:\n  {up.host}: {{insecure: true}}\n")
    gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", tmp_path / "store", check=True)
    with serving(tmp_path / "a.tar", listener="registry") as (_proc, port):
        oci = tmp_path / "oci"
        write_image(oci, "x", {"linux/amd64": [layer({"x": b"x"})]})
        res = subprocess.run(
            ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{oci}:x", f"docker://127.0.0.1:{port}/new/img:1"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert res.returncode != 0
        assert "UNSUPPORTED" in res.stderr or "405" in res.stderr or "read-only" in res.stderr, res.stderr


def _listing(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and directory under ``root`` with its size, mtime and sha256 (directories: mode)."""
    out: dict[str, tuple[int, int, str]] = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else f"dir {st.st_mode:o}"
        out[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns, digest)
    return out


@pytest.mark.slow
def test_plan_leaves_the_store_untouched(tmp_path: Path, upstreams: Upstreams, yum_upstream: str) -> None:
    """DESIGN's kind contract: `build --plan` resolves (image manifests, repomd, primary, the libsolv
    closure) but writes nothing into the store — neither a fresh one nor one a build filled."""
    up = upstreams.plain
    registries = f"registries:\n  {up.host}: {{insecure: true}}\n"
    images = f"images:\n  - {up.host}/team/app:1\n  - {up.host}/team/other:2\n" + registries
    yum = (
        f"yum:\n  - id: sub\n    baseurl: {yum_upstream}/\n    gpgkey: [{yum_upstream}/RPM-GPG-KEY-test]\n"
        "    mode: packages\n    packages: [pa]\n"
        f"  - id: full\n    baseurl: {yum_upstream}/\n    gpgkey: [{yum_upstream}/RPM-GPG-KEY-test]\n"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    first = tmp_path / "first.yaml"
    first.write_text(f"format: 1\nimages:\n  - {up.host}/team/other:2\n" + registries)
    store = tmp_path / "store"
    gapcache("build", "-f", first, "-o", tmp_path / "first.tar", "--store", store, check=True, env=env)
    m = tmp_path / "all.yaml"
    m.write_text("format: 1\nplatforms: [linux/amd64, linux/arm64]\n" + images + yum)
    before = _listing(store)
    res = gapcache("build", "-f", m, "--plan", "--store", store, env=env)
    assert res.returncode == 0, res.stderr
    assert "yum/sub/Packages/pc-1.0-1.noarch.rpm" in res.stdout, res.stdout  # it did resolve the closure
    assert _listing(store) == before
    fresh = tmp_path / "fresh-store"
    res = gapcache("build", "-f", m, "--plan", "--store", fresh, env=env)
    assert res.returncode == 0, res.stderr
    assert not fresh.exists()
    # and a real build after the plan still works from that store (nothing was half-written)
    gapcache("build", "-f", m, "-o", tmp_path / "all.tar", "--store", store, check=True, env=env)


@pytest.mark.slow
def test_a_missing_platform_is_named_and_strict_platforms_fails(tmp_path: Path, upstreams: Upstreams) -> None:
    """An amd64-only image built for [amd64, arm64]: the report names it (Grace nodes would find out
    at pull time otherwise); --strict-platforms makes it a failure."""
    up = upstreams.plain
    m = tmp_path / "m.yaml"
    m.write_text(
        "format: 1\nplatforms: [linux/amd64, linux/arm64]\n"
        f"images:\n  - {up.host}/team/other:2\n  - {up.host}/team/app:1\n  - {up.host}/team/docker:v2s2\n"
        f"registries:\n  {up.host}: {{insecure: true}}\n"
    )
    store = tmp_path / "store"
    res = gapcache("build", "-f", m, "-o", tmp_path / "a.tar", "--store", store, "--json")
    assert res.returncode == 0, res.stderr
    warnings = json.loads(res.stdout)["warnings"]
    lacking = sorted(w.rsplit(": no ", 1)[0] for w in warnings if "no linux/arm64 variant" in w)
    assert lacking == [
        f"image {up.host.replace(':', '_')}/team/docker:v2s2",
        f"image {up.host.replace(':', '_')}/team/other:2",
    ]
    plan = gapcache("build", "-f", m, "--plan", "--store", store)
    assert plan.returncode == 0 and "WARNING image" in plan.stdout and "no linux/arm64 variant" in plan.stdout
    strict = gapcache("build", "-f", m, "-o", tmp_path / "b.tar", "--store", store, "--strict-platforms")
    assert strict.returncode == 1
    assert "team/other:2" in strict.stderr and "no linux/arm64 variant" in strict.stderr
    assert not (tmp_path / "b.tar").exists()

from __future__ import annotations

import pytest

from gapcache.kinds.image.registry import short_names
from gapcache.names import ImageRef, parse_ref, platform_matches


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ubuntu", ImageRef("docker.io", "library/ubuntu", "latest", None)),
        ("ubuntu:22.04", ImageRef("docker.io", "library/ubuntu", "22.04", None)),
        ("nvidia/cuda:12.4.1-base-ubuntu22.04", ImageRef("docker.io", "nvidia/cuda", "12.4.1-base-ubuntu22.04", None)),
        ("nvcr.io/nvidia/cuda:12.4.1", ImageRef("nvcr.io", "nvidia/cuda", "12.4.1", None)),
        ("index.docker.io/library/alpine:3", ImageRef("docker.io", "library/alpine", "3", None)),
        ("localhost/x/y", ImageRef("localhost", "x/y", "latest", None)),
        ("127.0.0.1:5001/team/app:1", ImageRef("127.0.0.1:5001", "team/app", "1", None)),
        ("quay.io/a/b@sha256:" + "a" * 64, ImageRef("quay.io", "a/b", None, "sha256:" + "a" * 64)),
        ("quay.io/a/b:1@sha256:" + "b" * 64, ImageRef("quay.io", "a/b", "1", "sha256:" + "b" * 64)),
    ],
)
def test_references_normalise_like_docker(text: str, want: ImageRef) -> None:
    assert parse_ref(text) == want


def test_names_keep_the_upstream_host() -> None:
    assert parse_ref("127.0.0.1:5001/team/app:1").name == "127.0.0.1_5001/team/app"
    assert parse_ref("nvcr.io/nvidia/cuda").name == "nvcr.io/nvidia/cuda"
    assert parse_ref("nvidia/cuda").name == "docker.io/nvidia/cuda"


@pytest.mark.parametrize("bad", ["UPPER/case", "a/../b", "a//b", "x:bad tag", "a@sha256:short", "a/" + "b" * 300])
def test_bad_references_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_ref(bad)


def test_prefixless_aliases_only_when_unambiguous() -> None:
    names = ["nvcr.io/nvidia/cuda", "docker.io/nvidia/cuda", "quay.io/calico/node", "docker.io/library/ubuntu"]
    aliases = short_names(names)
    assert "nvidia/cuda" not in aliases  # two upstreams collide: only full names are served
    assert aliases["calico/node"] == "quay.io/calico/node"
    assert aliases["library/ubuntu"] == "docker.io/library/ubuntu"


def test_platform_selection() -> None:
    amd = {"os": "linux", "architecture": "amd64"}
    arm = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert platform_matches(["linux/amd64"], amd) and not platform_matches(["linux/amd64"], arm)
    assert platform_matches(["linux/arm64"], arm) and platform_matches(["linux/arm64/v8"], arm)
    assert not platform_matches(["linux/arm64/v7"], arm)
    assert platform_matches(["all"], None) and not platform_matches(["linux/amd64"], None)


def test_docker_hub_api_host() -> None:
    assert parse_ref("ubuntu").api_host == "registry-1.docker.io"
    assert parse_ref("nvcr.io/nvidia/cuda").api_host == "nvcr.io"


def test_tags_and_catalog_pagination() -> None:
    import asyncio
    import json

    from aiohttp.test_utils import make_mocked_request

    from gapcache.blobs import BlobIndex
    from gapcache.kinds.image.registry import Registry
    from gapcache.lock import Artifact, Item

    digest = "sha256:" + "1" * 64
    items = [
        Item(kind="image", name=f"docker.io/library/app:{t}", request={},
             resolved={"name": "docker.io/library/app", "tag": t, "digest": digest},
             artifacts=[Artifact(path=f"images/docker.io/library/app/manifests/{digest}", source="x", digest=digest,
                                 size=2, media_type="application/vnd.oci.image.manifest.v1+json")])
        for t in ("1", "2", "3")
    ]  # fmt: skip
    reg = Registry(items, BlobIndex({}, 0))

    def get(path: str) -> tuple[int, dict[str, object], str]:
        resp = asyncio.run(reg.handle(make_mocked_request("GET", path)))
        assert resp is not None
        body = resp.body  # type: ignore[attr-defined]
        return resp.status, json.loads(body), resp.headers.get("Link", "")

    status, body, link = get("/v2/docker.io/library/app/tags/list?n=2")
    assert status == 200 and body == {"name": "docker.io/library/app", "tags": ["1", "2"]}
    assert link == '</v2/docker.io/library/app/tags/list?n=2&last=2>; rel="next"'
    status, body, link = get("/v2/docker.io/library/app/tags/list?n=2&last=2")
    assert body["tags"] == ["3"] and link == ""
    status, body, _ = get("/v2/library/app/tags/list?ns=docker.io")
    assert status == 200 and body["tags"] == ["1", "2", "3"]
    status, body, _ = get("/v2/_catalog?n=1")
    assert body == {"repositories": ["docker.io/library/app"]}
    status, body, _ = get("/v2/docker.io/library/app/tags/list?n=x")
    assert status == 400

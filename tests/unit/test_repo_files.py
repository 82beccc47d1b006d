from __future__ import annotations

import asyncio

from aiohttp.test_utils import make_mocked_request

from gapcache.blobs import BlobIndex
from gapcache.kinds.rpm.serve import YumRepos
from gapcache.lock import Item

ITEM = Item(kind="rpm", name="cuda", request={}, resolved={"id": "cuda", "keys": ["D42D0685.pub", "gapcache-site.pub"]},
            artifacts=[])  # fmt: skip


def repo_file(public_url: str | None, host: str = "10.0.0.5:8001") -> str:
    repos = YumRepos([ITEM], BlobIndex({}, 0), public_url)
    resp = asyncio.run(repos.handle(make_mocked_request("GET", "/cuda.repo", headers={"Host": host})))
    assert resp is not None and resp.status == 200
    return resp.text  # type: ignore[attr-defined, no-any-return]


def test_repo_file_keeps_gpgcheck_and_uses_the_clients_address() -> None:
    text = repo_file(None)
    assert "[cuda]" in text and "baseurl=http://10.0.0.5:8001/cuda/" in text
    assert "gpgcheck=1" in text and "repo_gpgcheck=1" in text
    assert "gpgkey=http://10.0.0.5:8001/gpgkeys/D42D0685.pub http://10.0.0.5:8001/gpgkeys/gapcache-site.pub" in text


def test_repo_file_with_public_url() -> None:
    assert "baseurl=http://mirror.lan:8001/cuda/" in repo_file("mirror.lan")
    assert "baseurl=https://mirror.lan/yum/cuda/" in repo_file("https://mirror.lan/yum/")

"""Regression tests for the review defects (issue 10) that need no real upstream: names, the one
per-item failure path, registry credentials, the manifest and the command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gapcache.auth import RegistryAuth
from gapcache.errors import DiskFull, EnvironmentProblem, ManifestError
from gapcache.kinds.base import ResolveContext
from gapcache.kinds.rpm.repomd import Pkg, solve_closure
from gapcache.manifest import parse_manifest
from gapcache.manifest.yum import YumRepo
from gapcache.names import host_component, parse_ref

# ---- 10: one host_component -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("Harbor.LAN:5000/team/app:1", "harbor.lan_5000/team/app"),
        ("quay.io:443/calico/node:v3", "quay.io/calico/node"),
        ("127.0.0.1:5001/x:1", "127.0.0.1_5001/x"),
        ("nvcr.io/nvidia/cuda:12", "nvcr.io/nvidia/cuda"),
    ],
)
def test_image_names_use_the_one_host_component(given: str, name: str) -> None:
    assert parse_ref(given).name == name
    assert host_component("https://Harbor.LAN:5000/x") == "harbor.lan_5000"


# ---- 8: every failure of an item is reported, never a traceback ----------------------------------


def test_attempt_turns_any_exception_into_a_failure_naming_the_item(tmp_path: Path) -> None:
    ctx = ResolveContext(downloader=None, scratch=tmp_path)  # type: ignore[arg-type]

    async def broken_json() -> int:
        return int(json.loads("{not json"))

    async def bad_shape() -> int:
        return int({"a": 1}["b"])

    async def ok() -> int:
        return 7

    async def run() -> list[int | None]:
        return [
            await ctx.attempt("python", "requests==2", broken_json()),
            await ctx.attempt("image", "x/y:1", bad_shape()),
            await ctx.attempt("file", "f", ok()),
        ]

    assert asyncio.run(run()) == [None, None, 7]
    assert [f.item for f in ctx.failures] == ["python requests==2", "image x/y:1"]
    assert ctx.failures[0].reason.startswith("JSONDecodeError: ")
    assert ctx.failures[1].reason == "KeyError: 'b'"


def test_attempt_lets_environment_problems_stop_the_build(tmp_path: Path) -> None:
    ctx = ResolveContext(downloader=None, scratch=tmp_path)  # type: ignore[arg-type]

    async def full() -> None:
        raise DiskFull("/x", 10, 1)

    with pytest.raises(EnvironmentProblem):
        asyncio.run(ctx.attempt("file", "f", full()))


# ---- 11: the closure indexes packages, it does not scan per solvable ---------------------------------


def _primary(n: int) -> bytes:
    """A primary.xml of ``n`` tiny packages: p0 requires p1 requires … p9; the rest independent."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" '
        f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="{n}">'
    ]
    for i in range(n):
        req = f'<rpm:requires><rpm:entry name="p{i + 1}"/></rpm:requires>' if i < 9 else ""
        out.append(
            f'<package type="rpm"><name>p{i}</name><arch>x86_64</arch><version epoch="0" ver="1.0" rel="1"/>'
            f'<checksum type="sha256" pkgid="YES">{i:064x}</checksum><size package="100"/>'
            f'<location href="Packages/p{i}-1.0-1.x86_64.rpm"/><format><rpm:provides>'
            f'<rpm:entry name="p{i}" flags="EQ" epoch="0" ver="1.0" rel="1"/></rpm:provides>{req}</format></package>'
        )
    out.append("</metadata>\n")
    return "".join(out).encode()


def test_closure_of_a_20000_package_repo_takes_seconds(tmp_path: Path) -> None:
    n = 20_000
    pkgs = [Pkg(f"p{i}", "x86_64", "1.0-1", f"Packages/p{i}-1.0-1.x86_64.rpm", f"{i:064x}", 100) for i in range(n)]
    repo = YumRepo(id="big", baseurl="http://x/", mode="packages", packages=["p0"])
    start = time.monotonic()
    chosen = solve_closure({"big": _primary(n)}, pkgs, repo, tmp_path)
    took = time.monotonic() - start
    assert [p.name for p in chosen] == [f"p{i}" for i in range(10)]
    assert took < 10, f"closure of {n} packages took {took:.1f}s"


# ---- 7: registry credentials only where they belong ----------------------------------------------------


class _Realm:
    def __init__(self) -> None:
        self.seen: list[str | None] = []
        self.reply: object = {"token": "t"}

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.headers.get("Authorization"))
        return web.json_response(self.reply)


async def _realm_server(realm: _Realm) -> AsyncGenerator[str, None]:
    app = web.Application()
    app.router.add_get("/token", realm.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/token"
    finally:
        await runner.cleanup()


def test_basic_credentials_never_go_in_clear_text_to_another_host() -> None:
    async def run() -> tuple[list[str | None], bool, bool]:
        realm = _Realm()
        gen = _realm_server(realm)
        url = await gen.__anext__()
        auth = RegistryAuth(credentials={"registry.example:5000": ("u", "p"), "127.0.0.1:9": ("u", "p")})
        async with aiohttp.ClientSession() as s:
            # the realm is plain http on another host than the registry: no password sent
            other = await auth.challenge(
                "http://registry.example:5000/v2/a/manifests/1", f'Bearer realm="{url}",service=r', s
            )
            # the registry's own host (here 127.0.0.1): credentials go along
            own = await auth.challenge("http://127.0.0.1:9/v2/a/manifests/1", f'Bearer realm="{url}",service=r', s)
            realm.reply = ["not", "an", "object"]
            bad = await auth.challenge("http://127.0.0.1:9/v2/b/manifests/1", f'Bearer realm="{url}",service=r', s)
        await gen.aclose()
        return realm.seen, other and own, bad

    seen, got_tokens, bad_reply = asyncio.run(run())
    assert seen[0] is None
    assert seen[1] is not None and seen[1].startswith("Basic ")
    assert got_tokens
    assert bad_reply is False  # a token reply that is not a JSON object: no token, no traceback


# ---- 9: the manifest and the command line ---------------------------------------------------------------


def test_requirements_files_are_read_at_parse_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "reqs.txt").write_text("requests\n")
    text = "format: 1\npython:\n  requirements_files: [reqs.txt]\n"
    m = parse_manifest(text, "m.yaml", tmp_path / "sub")
    assert m.python is not None and m.python.requirements_files == [str((tmp_path / "sub" / "reqs.txt").resolve())]
    with pytest.raises(ManifestError) as err:
        parse_manifest("format: 1\npython:\n  requirements_files: [missing.txt]\n", "m.yaml", tmp_path)
    assert err.value.exit_code == 2
    assert "m.yaml:3: python.requirements_files[0]:" in str(err.value) and "missing.txt" in str(err.value)


def test_duplicate_yum_ids_are_a_manifest_error() -> None:
    text = 'format: 1\nyum:\n  - {id: a, baseurl: "http://x/"}\n  - {id: a, baseurl: "http://y/"}\n'
    with pytest.raises(ManifestError) as err:
        parse_manifest(text, "m.yaml")
    assert "m.yaml:4: yum[1].id: 'a' already used by yum[0]" in str(err.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gapcache", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_concurrency_below_one_is_a_usage_error(value: str) -> None:
    res = _cli("build", "-f", "m.yaml", "--plan", "--concurrency", value)
    assert res.returncode == 2
    assert "--concurrency" in res.stderr


def test_json_errors_are_json(tmp_path: Path) -> None:
    res = _cli("build", "-f", str(tmp_path / "none.yaml"), "--plan", "--json")
    assert res.returncode == 2
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2 and "none.yaml" in doc["error"]


# ---- a full disk does not delete another build's partial download ------------------------------------


def test_disk_full_cleanup_spares_partials_another_build_holds(tmp_path: Path) -> None:
    from gapcache.build import _drop_unowned_partials
    from gapcache.store import Store, lock_file, unlock_file

    store = Store(tmp_path / "store")
    store.ensure()
    mine, theirs = store.tmp / "partial-aaaa", store.tmp / "partial-bbbb"
    for p in (mine, theirs):
        p.write_bytes(b"x" * 10)
        p.with_name(p.name + ".validator").write_text('"etag"')
    held = lock_file(theirs.with_name(theirs.name + ".lock"))  # as another process writing it would
    assert held is not None
    try:
        _drop_unowned_partials(store)
        assert not mine.exists() and not mine.with_name(mine.name + ".validator").exists()
        assert theirs.exists() and theirs.with_name(theirs.name + ".validator").exists()
    finally:
        unlock_file(theirs.with_name(theirs.name + ".lock"), held)


# ---- 3: serve remembers a failed verification (until the file is repaired) -------------------------


def test_a_corrupt_blob_is_hashed_once_until_it_is_repaired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from gapcache import blobs as blobs_mod
    from gapcache.blobs import BlobIndex, BlobLoc
    from gapcache.errors import GapcacheError

    good = b"the right bytes\n" * 100
    digest = "sha256:" + hashlib.sha256(good).hexdigest()
    path = tmp_path / "blob"
    path.write_bytes(b"X" + good[1:])
    calls: list[BlobLoc] = []
    real = blobs_mod._read_verified

    def counting(loc: BlobLoc) -> bytes | None:
        calls.append(loc)
        return real(loc)

    monkeypatch.setattr(blobs_mod, "_read_verified", counting)
    index = BlobIndex({digest: BlobLoc(digest, path, 0, len(good))}, 0.0)
    loc = index.get(digest)
    assert loc is not None

    async def open_() -> bytes | None:
        return await index.open(loc)

    for _ in range(3):
        with pytest.raises(GapcacheError, match="corrupt"):
            asyncio.run(open_())
    assert len(calls) == 1  # remembered, not re-hashed per request
    fixed = tmp_path / "blob.new"
    fixed.write_bytes(good)
    fixed.replace(path)  # a load restores it the same way: a new file renamed into place
    assert asyncio.run(open_()) == good
    assert len(calls) == 2


def test_progress_says_what_is_true_about_short_jobs() -> None:
    import time as _time

    from gapcache.progress import took

    assert took(_time.monotonic(), 6 << 20).startswith("in ") and "ms" in took(_time.monotonic(), 6 << 20)
    assert "/s" not in took(_time.monotonic(), 6 << 20)  # no rate over a few milliseconds
    assert took(_time.monotonic() - 2.0, 200 << 20).endswith("(100.0 MiB/s)")


def test_a_build_does_not_wait_for_ever_on_another_builds_download(tmp_path: Path) -> None:
    from gapcache.errors import FetchError
    from gapcache.fetch import Downloader, FetchJob, _key
    from gapcache.store import Store, lock_file, unlock_file

    store = Store(tmp_path / "store")
    store.ensure()
    job = FetchJob("http://127.0.0.1:9/stuck.bin", "sha256:" + "0" * 64, 10)
    lock = store.tmp / f"partial-{_key(job.url, job.digest or '')}.lock"
    held = lock_file(lock)  # another build, stuck on this download
    assert held is not None

    async def run() -> None:
        async with Downloader(store, lock_wait=0.3) as dl:
            await dl.fetch(job)

    try:
        with pytest.raises(FetchError, match="another build has held"):
            asyncio.run(run())
    finally:
        unlock_file(lock, held)

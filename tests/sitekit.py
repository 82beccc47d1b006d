"""Shared helpers for the site features (signing, rollback/prune, misses, TLS): signed archives,
a tampered copy, and HTTP GETs against a served root."""

from __future__ import annotations

import hashlib
import io
import json
import ssl
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from gapcache.archive.format import LOCK_MEMBER, PAX_FORMAT, PAX_LOCK_SHA256
from gapcache.build import BuildResult
from gapcache.signing import keygen
from helpers import build_local


def make_keys(where: Path) -> tuple[Path, Path]:
    """``(private, public)`` of a fresh ed25519 key pair."""
    return keygen(where)


def build_signed(tmp: Path, contents: dict[str, bytes], key: Path | None, split_size: int | None = None) -> BuildResult:
    return build_local(tmp, contents, sign_key=key, split_size=split_size)


def tamper_lock(archive: Path, out: Path) -> Path:
    """``archive`` with one more item path in its lock: the lock member's own digest (PAX header) is
    recomputed, as an attacker would, and the signature member is kept as it was."""
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(archive) as tf:
        for ti in tf.getmembers():
            f = tf.extractfile(ti)
            members.append((ti, f.read() if f else b""))
    lock_ti, lock_bytes = members[0]
    assert lock_ti.name == LOCK_MEMBER
    doc = json.loads(lock_bytes)
    doc["items"][0]["request"]["tampered"] = True
    new = (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            if ti.name == LOCK_MEMBER:
                ti.pax_headers = {PAX_FORMAT: "1", PAX_LOCK_SHA256: hashlib.sha256(new).hexdigest()}
                data = new
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return out


def get(url: str, ca: Path | None = None, timeout: float = 10) -> tuple[int, bytes]:
    """GET ``url``: ``(status, body)``; with ``ca``, TLS verified against that CA only."""
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def root_snapshot(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def request_misses(root: Path, asked: dict[str, list[str]]) -> list[int]:
    """GET each path from the named listener of ``root``'s mirror, in process (every listener is
    there, whether the lock has content for it or not); the misses land in ``misses.jsonl``."""
    import asyncio

    from aiohttp import ClientSession
    from aiohttp.test_utils import RawTestServer

    from gapcache.serve import ServeConfig, make_apps

    async def run() -> list[int]:
        mirror = make_apps(ServeConfig(root=root))
        statuses = []
        try:
            for name, paths in asked.items():
                async with (
                    RawTestServer(mirror.listeners[name], host="127.0.0.1") as server,
                    ClientSession() as session,
                ):
                    for p in paths:
                        async with session.get(server.make_url(p), allow_redirects=False) as r:
                            statuses.append(r.status)
        finally:
            mirror.misses.close()
        return statuses

    return asyncio.run(run())

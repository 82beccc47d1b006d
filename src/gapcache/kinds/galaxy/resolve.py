"""Resolving Galaxy content with the API ``ansible-galaxy`` itself uses (connected side).

Collections: the v3 API — ``versions/`` (paginated) for what exists, ``versions/<v>/`` for the
download URL, the artifact's sha256 and size, and ``metadata.dependencies`` — resolved to exact
versions: the newest that satisfies every requirement on it (the manifest's and other collections'
dependencies), pre-releases only when asked for exactly, as ansible-galaxy does. Roles: the v1 API
(``roles/?owner__username=&name=``, ``roles/<id>/versions/``), the version's ``download_url`` (or
GitHub's archive URL, as ansible-galaxy falls back to).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

from ...errors import GapcacheError, HTTPStatusError
from ...fetch import Downloader

_VER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_CLAUSE = re.compile(r"^\s*(==|!=|>=|<=|>|<|=)?\s*(\S+)\s*$")
SemKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def semver_key(version: str) -> SemKey | None:
    m = _VER.match(version.strip())
    if not m:
        return None
    pre = m.group(4)
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), 0 if pre else 1, parts)


def is_pre(version: str) -> bool:
    key = semver_key(version)
    return key is not None and key[3] == 0


def satisfies(version: str, spec: str) -> bool:
    """``version`` meets ``spec`` (``*``, ``1.2.3``, ``>=1.0.0,<2.0.0``, ``!=1.5.0``)."""
    key = semver_key(version)
    if key is None:
        return False
    if spec.strip() in ("*", ""):
        return True
    for clause in spec.split(","):
        m = _CLAUSE.match(clause)
        want = semver_key(m.group(2)) if m else None
        if m is None or want is None:
            return False
        op = m.group(1) or "=="
        ok = {"==": key == want, "=": key == want, "!=": key != want, ">=": key >= want,
              "<=": key <= want, ">": key > want, "<": key < want}[op]  # fmt: skip
        if not ok:
            return False
    return True


def exact(spec: str) -> str | None:
    m = _CLAUSE.match(spec) if "," not in spec else None
    return m.group(2).lstrip("v") if m and (m.group(1) or "==") in ("==", "=") and m.group(2) != "*" else None


def role_version_key(version: str) -> tuple[Any, ...]:
    """An order like ansible-galaxy's LooseVersion: numbers as numbers, words as words."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|[A-Za-z]+", version))


@dataclass(frozen=True)
class CollectionVersion:
    namespace: str
    name: str
    version: str
    download_url: str
    sha256: str
    size: int | None
    filename: str
    dependencies: dict[str, str]


class GalaxyClient:
    """One Galaxy server, through the shared downloader."""

    def __init__(self, server: str, downloader: Downloader) -> None:
        self.server = server if server.endswith("/") else server + "/"
        self.dl = downloader
        self.api: str | None = None
        self.available: dict[str, str] = {}
        self._versions: dict[str, list[str]] = {}

    async def _json(self, url: str) -> Any:
        body, _ = await self.dl.get(url, {"Accept": "application/json"}, max_size=64 << 20)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise GapcacheError(f"{url}: not a JSON answer from the Galaxy server") from exc

    async def discover(self) -> str:
        """The API root, found the way ansible-galaxy finds it (the URL, else URL + ``api/``)."""
        if self.api is not None:
            return self.api
        tries = [self.server]
        if self.server.rstrip("/") == "https://galaxy.ansible.com":
            tries = []
        if not self.server.rstrip("/").endswith("/api"):
            tries.append(self.server + "api/")
        last: Exception | None = None
        for url in tries:
            try:
                data = await self._json(url)
            except GapcacheError as exc:
                last = exc
                continue
            if isinstance(data, dict) and isinstance(data.get("available_versions"), dict):
                self.api, self.available = url, data["available_versions"]
                return url
        raise GapcacheError(f"{self.server}: no Galaxy API found ({last or 'no available_versions'})")

    async def _v(self, version: str) -> str:
        api = await self.discover()
        if version not in self.available:
            raise GapcacheError(f"{self.server}: the Galaxy server offers no {version} API")
        return urljoin(api, self.available[version])

    async def versions(self, fqcn: str) -> list[str]:
        if fqcn in self._versions:
            return self._versions[fqcn]
        ns, name = fqcn.split(".", 1)
        base = await self._v("v3")
        url: str | None = f"{base}collections/{ns}/{name}/versions/?limit=100"
        out: list[str] = []
        while url:
            try:
                data = await self._json(url)
            except HTTPStatusError as exc:
                if exc.status == 404:
                    raise GapcacheError(f"collection {fqcn} not found on {self.server}") from exc
                raise
            out += [str(v["version"]) for v in data.get("data", data.get("results", []))]
            nxt = (data.get("links") or {}).get("next") or data.get("next")
            url = urljoin(url, nxt) if nxt else None
        self._versions[fqcn] = out
        return out

    async def version(self, fqcn: str, version: str) -> CollectionVersion:
        ns, name = fqcn.split(".", 1)
        url = f"{await self._v('v3')}collections/{ns}/{name}/versions/{version}/"
        data = await self._json(url)
        art = data.get("artifact") or {}
        if not art.get("sha256") or not data.get("download_url"):
            raise GapcacheError(f"{url}: no download_url or artifact.sha256")
        deps = (data.get("metadata") or {}).get("dependencies") or {}
        return CollectionVersion(
            namespace=ns, name=name, version=str(data["version"]), download_url=urljoin(url, data["download_url"]),
            sha256=str(art["sha256"]).lower(), size=art.get("size"),
            filename=str(art.get("filename") or f"{ns}-{name}-{version}.tar.gz"),
            dependencies={str(k): str(v) for k, v in deps.items()},
        )  # fmt: skip

    async def role(self, src: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A role's v1 record and its versions."""
        owner, _, name = src.rpartition(".")
        if not owner:
            raise GapcacheError(f"role {src!r}: expected owner.name")
        base = await self._v("v1")
        data = await self._json(f"{base}roles/?owner__username={quote(owner)}&name={quote(name)}")
        results = data.get("results") or []
        if not results:
            raise GapcacheError(f"role {src} not found on {self.server}")
        role = results[0]
        url: str | None = f"{base}roles/{role['id']}/versions/?page_size=50"
        versions: list[dict[str, Any]] = []
        while url:
            page = await self._json(url)
            versions += page.get("results") or []
            nxt = page.get("next_link")
            url = urljoin(url, nxt) if nxt else None
        return role, versions


class Unsatisfiable(GapcacheError):
    pass


async def resolve_collections(client: GalaxyClient, wanted: dict[str, str]) -> dict[str, CollectionVersion]:
    """``{fqcn: spec}`` → every collection needed, dependencies included, at one exact version."""
    needs: dict[str, dict[str, str]] = {}  # fqcn -> requester -> spec
    for fqcn, spec in wanted.items():
        needs.setdefault(fqcn, {})["the manifest"] = spec
    chosen: dict[str, CollectionVersion] = {}
    todo = sorted(needs)
    for _ in range(10000):
        if not todo:
            break
        fqcn = todo.pop(0)
        specs = needs.get(fqcn, {})
        if not specs:  # nobody needs it any more, nor what it needed
            if chosen.pop(fqcn, None) is not None:
                _forget(needs, fqcn)
                todo += sorted(needs)
            continue
        cur = chosen.get(fqcn)
        if cur is not None and all(satisfies(cur.version, s) for s in specs.values()):
            continue
        available = await client.versions(fqcn)
        pins = {e for s in specs.values() if (e := exact(s))}
        ok = [v for v in available if all(satisfies(v, s) for s in specs.values()) and (not is_pre(v) or v in pins)]
        if not ok:
            asked = "; ".join(f"{s} (by {who})" for who, s in sorted(specs.items()))
            if not available:
                raise Unsatisfiable(f"collection {fqcn}: no versions on {client.server}")
            raise Unsatisfiable(
                f"collection {fqcn}: no version matches {asked}; available: {', '.join(available[:20])}"
            )
        best = max(ok, key=lambda v: semver_key(v) or (0, 0, 0, 0, ()))
        cv = await client.version(fqcn, best)
        chosen[fqcn] = cv
        who = f"{fqcn} {best}"
        _forget(needs, fqcn)  # the dependencies of the version chosen before no longer count
        for dep, spec in cv.dependencies.items():
            needs.setdefault(dep, {})[who] = spec
        todo += sorted(set(needs) - {fqcn})
        todo = list(dict.fromkeys(todo))
    return {k: chosen[k] for k in sorted(chosen) if needs.get(k)}


def _forget(needs: dict[str, dict[str, str]], fqcn: str) -> None:
    for deps in needs.values():
        for requester in [r for r in deps if r.startswith(fqcn + " ")]:
            del deps[requester]

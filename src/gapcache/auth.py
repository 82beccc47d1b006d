"""Registry authentication as registries do it (the shared downloader's :class:`~gapcache.fetch.Auth`).

On a 401 the registry says how: ``Basic realm=…`` (send the user's credentials) or
``Bearer realm=…,service=…,scope=…`` (fetch a token from the realm — anonymously, or with the
user's credentials — and send it). Tokens are kept per host and scope until they expire.
Credentials come from ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json`` (``auths``),
and from ``GAPCACHE_REGISTRY_AUTH`` (``host=user:password[,host=…]``) for CI.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp

from .errors import HTTPStatusError


class Auth(Protocol):
    """Per-host credentials. ``challenge`` is called on a 401 with its WWW-Authenticate header and
    returns True when it obtained new credentials (the request is then retried once)."""

    def headers(self, url: str) -> Mapping[str, str]: ...

    async def challenge(self, url: str, www_authenticate: str, session: aiohttp.ClientSession) -> bool: ...


async def answer_401(
    auth: Auth | None, url: str, headers: Mapping[str, str], session: aiohttp.ClientSession, hint: str = ""
) -> None:
    """The one answer to a 401 (the downloader's and push's): let ``auth`` answer the challenge and
    return so the caller retries once; raise :class:`HTTPStatusError` when it cannot."""
    challenge = headers.get("WWW-Authenticate", "")
    if auth is None or not await auth.challenge(url, challenge, session):
        raise HTTPStatusError(url, 401, f"unauthorized (check credentials{' ' + hint if hint else ''})")


_PARAM = re.compile(r'(\w+)="([^"]*)"')
_REPO = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags)/")
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _scope(url: str) -> str | None:
    m = _REPO.match(urlsplit(url).path)
    return f"repository:{m.group(1)}:pull" if m else None


def parse_auth_option(value: str) -> tuple[str, tuple[str, str]]:
    """``--registry-auth HOST=USER:PASSWORD``."""
    host, sep, userpass = value.partition("=")
    user, sep2, password = userpass.partition(":")
    if not sep or not sep2 or not host or not user:
        raise ValueError(f"--registry-auth {value!r}: expected HOST=USER:PASSWORD")
    return host, (user, password)


def load_credentials(env: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    env = os.environ if env is None else env
    creds: dict[str, tuple[str, str]] = {}
    cfg_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
    try:
        auths = json.loads((cfg_dir / "config.json").read_text()).get("auths", {})
    except (OSError, ValueError, AttributeError):
        auths = {}
    for key, value in auths.items():
        try:
            user, _, password = base64.b64decode(value["auth"]).decode().partition(":")
        except (KeyError, ValueError, TypeError):
            continue
        host = urlsplit(key).netloc if "://" in key else key.rstrip("/")
        for h in DOCKER_HUB_KEYS if key in DOCKER_HUB_KEYS else (host,):
            creds[h.removeprefix("https://").rstrip("/").split("/")[0]] = (user, password)
    for part in filter(None, env.get("GAPCACHE_REGISTRY_AUTH", "").split(",")):
        host, _, userpass = part.partition("=")
        user, _, password = userpass.partition(":")
        creds[host.strip()] = (user, password)
    return creds


def _may_send_credentials(realm: str, registry_url: str) -> bool:
    """A registry names its token service; the user's password goes there only over https, or to the
    registry's own host (never in clear text to a third party a registry — or an attacker — names)."""
    target, own = urlsplit(realm), urlsplit(registry_url)
    return target.scheme == "https" or (target.hostname or "").lower() == (own.hostname or "").lower()


class RegistryAuth:
    def __init__(
        self, credentials: dict[str, tuple[str, str]] | None = None, extra: dict[str, tuple[str, str]] | None = None
    ) -> None:
        self.credentials = load_credentials() if credentials is None else credentials
        self.credentials.update(extra or {})
        self.tokens: dict[tuple[str, str | None], tuple[str, float]] = {}
        self.basic_hosts: set[str] = set()

    def _basic(self, host: str) -> str | None:
        cred = self.credentials.get(host)
        if cred is None:
            return None
        return "Basic " + base64.b64encode(f"{cred[0]}:{cred[1]}".encode()).decode()

    def headers(self, url: str) -> Mapping[str, str]:
        host = _host(url)
        token = self.tokens.get((host, _scope(url)))
        if token is not None and token[1] > time.monotonic():
            return {"Authorization": f"Bearer {token[0]}"}
        if host in self.basic_hosts:
            basic = self._basic(host)
            if basic:
                return {"Authorization": basic}
        return {}

    async def challenge(self, url: str, www_authenticate: str, session: aiohttp.ClientSession) -> bool:
        host = _host(url)
        scheme, _, rest = www_authenticate.partition(" ")
        if scheme.lower() == "basic":  # callers retry once per request, so this cannot loop
            if host in self.credentials:
                self.basic_hosts.add(host)
                return True
            return False
        if scheme.lower() != "bearer":
            return False
        params = dict(_PARAM.findall(rest))
        realm = params.get("realm")
        if not realm:
            return False
        scope = params.get("scope") or _scope(url)
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        headers = {}
        basic = self._basic(host)
        if basic and _may_send_credentials(realm, url):
            headers["Authorization"] = basic
        sep = "&" if "?" in realm else "?"
        async with session.get(f"{realm}{sep}{urlencode(query)}", headers=headers) as resp:
            if resp.status != 200:
                return False
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                return False  # not JSON: no token (the request then fails with its 401)
        if not isinstance(doc, dict):
            return False
        token = doc.get("token") or doc.get("access_token")
        if not token:
            return False
        ttl = float(doc.get("expires_in") or 60)
        self.tokens[(host, _scope(url))] = (str(token), time.monotonic() + max(ttl - 10, 5))
        return True

"""Client TLS for upstreams, per URL prefix: dnf's ``sslclientcert``/``sslclientkey``/``sslcacert``/
``sslverify`` (Red Hat's CDN wants the entitlement certificate; a site's repo may want its own CA).

:class:`ClientTls` maps URL prefixes (``https://cdn.example/content/dist/rhel9/…/``: scheme, host,
port and a path prefix) to a :class:`TlsClient` and answers :meth:`ClientTls.context` with the
``ssl.SSLContext`` of the longest prefix a URL falls under (``True``: aiohttp's default, the
system's CAs). A context is built once per distinct (cert, key, CA, verify), so two repos with the
same entitlement share it and its pooled connections. The downloader passes it as ``ssl=`` on every
request (metadata, HEAD probes, blob fetches and their resumes) and asks :meth:`ClientTls.fatal`
about a TLS failure: a client certificate refused, or a server certificate nobody trusts, is said
at once, not retried like a dropped connection.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import FetchError, UsageError
from .manifest.yum import client_context

_SSL_TEXT = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# TLS alerts a server sends when it does not accept the client's certificate (or its absence);
# DECRYPT_ERROR: its signature does not verify (another CA by the same name)
_REFUSED = (
    "CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "UNKNOWN_CA", "ACCESS_DENIED",
    "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "UNSUPPORTED_CERTIFICATE", "HANDSHAKE_FAILURE", "DECRYPT_ERROR",
)  # fmt: skip
_NO_CERTIFICATE = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE")  # what a server says when none was sent


@dataclass(frozen=True)
class TlsClient:
    """What to present and whom to trust; ``owner`` names who asked (``yum repo rhel9-baseos``)."""

    owner: str
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    verify: bool = True

    @property
    def files(self) -> tuple[str | None, str | None, str | None, bool]:
        return (self.cert, self.key, self.ca, self.verify)


def _split(url: str) -> tuple[tuple[str, str, int | None], str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme)
    return (scheme, (parts.hostname or "").lower(), port), parts.path or "/"


class ClientTls:
    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, str, int | None], dict[str, TlsClient]] = {}
        self._contexts: dict[tuple[str | None, str | None, str | None, bool], ssl.SSLContext] = {}

    def __bool__(self) -> bool:
        return bool(self._prefixes)

    def add(self, prefix: str, client: TlsClient, *, exclusive: bool = True) -> None:
        """Use ``client`` for URLs under ``prefix``. The context is built now: files that do not make
        one are a UsageError naming the owner (exit 2). Another owner's different settings for the
        same prefix are a UsageError too, unless not ``exclusive`` (then the first one stays)."""
        if client.files not in self._contexts:
            try:
                self._contexts[client.files] = client_context(*client.files, owner=client.owner)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        where, path = _split(prefix)
        paths = self._prefixes.setdefault(where, {})
        had = paths.get(path)
        if had is not None and had.files != client.files:
            if not exclusive:
                return
            raise UsageError(f"{client.owner} and {had.owner} name {prefix} with different TLS settings")
        paths.setdefault(path, client)

    def client(self, url: str) -> TlsClient | None:
        """The settings of the longest registered prefix ``url`` falls under."""
        if not self._prefixes:
            return None
        where, path = _split(url)
        paths = self._prefixes.get(where, {})
        best = max((p for p in paths if path.startswith(p)), key=len, default=None)
        return paths[best] if best is not None else None

    def context(self, url: str) -> ssl.SSLContext | bool:
        """``ssl=`` for aiohttp: the context for ``url``, or True (default verification)."""
        found = self.client(url)
        return self._contexts[found.files] if found is not None else True

    def fatal(self, url: str, exc: BaseException) -> FetchError | None:
        """A TLS failure that trying again cannot mend, said plainly (None: any other error)."""
        reason = _ssl_reason(exc)
        if reason is None:
            return None
        found = self.client(url)
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            fix = f" (sslcacert of {found.owner})" if found is not None else ""
            return FetchError(url, f"the server's certificate is not trusted{fix}: {_verify_detail(exc, reason)}")
        if found is not None and found.cert is not None and any(alert in reason for alert in _REFUSED):
            return FetchError(url, f"the server refused the client certificate of {found.owner} ({reason})")
        if any(alert in reason for alert in _NO_CERTIFICATE):
            return FetchError(url, f"the server refused the TLS handshake without a client certificate ({reason})")
        return None


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and what it wraps: causes, contexts, aiohttp's ``certificate_error`` and ``os_error``."""
    out: list[BaseException] = []
    while exc is not None and len(out) < 8 and exc not in out:
        out.append(exc)
        inner = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None)
        exc = inner if isinstance(inner, BaseException) else (exc.__cause__ or exc.__context__)
    return out


def _ssl_reason(exc: BaseException) -> str | None:
    """The OpenSSL reason (``TLSV13_ALERT_CERTIFICATE_REQUIRED``) of a TLS failure in ``exc``'s chain
    (aiohttp wraps the ``ssl.SSLError``, sometimes keeping only its text)."""
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return "CERTIFICATE_VERIFY_FAILED"
        if isinstance(e, ssl.SSLError) and getattr(e, "reason", None):
            return str(e.reason)
        if m := _SSL_TEXT.search(str(e)):
            return m.group(1)
    return None


def _verify_detail(exc: BaseException, reason: str) -> str:
    for e in _chain(exc):
        if message := getattr(e, "verify_message", None):
            return str(message)
    return reason

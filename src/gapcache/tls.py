"""TLS for the mirrors: ``serve --tls-cert C --tls-key K``, or ``--tls auto``.

``--tls auto`` keeps a small private CA and a server certificate in a directory — ``ROOT/tls/``
when serving a root, ``gapcache-tls/`` beside the archive when serving one in place:

    ca.crt  ca.key (0600)            the site's CA (10 years), made once
    server.crt  server.key (0600)    for the mirror's names and addresses (2 years)

The server certificate is made again (by the same CA) when a name or address asked for
(``--tls-name``, the bind address, the ``--public-url`` host) is not in it, or when it expires
within 30 days; the CA stays, so nodes that trust ``ca.crt`` keep trusting the mirror. Keys are
ECDSA P-256. The files listener serves the CA at ``/ca.crt`` (``curl -o ca.crt http://MIRROR:8004/ca.crt``
over a channel you trust, or carry it with the archive); ``gapcache vars --https`` writes its path
into the clients' configuration.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import UsageError
from .store import atomic_write

CA_DAYS = 3650
SERVER_DAYS = 730
RENEW_DAYS = 30
TLS_DIR = "tls"
ARCHIVE_TLS_DIR = "gapcache-tls"
CA_PATH = "/ca.crt"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None  # the CA to publish at /ca.crt (``--tls auto``)


def default_names(bind: str, public_url: str | None, extra: list[str]) -> list[str]:
    """The names and addresses a generated certificate covers."""
    from urllib.parse import urlsplit

    names = [*extra]
    if public_url:
        host = urlsplit(public_url if "://" in public_url else f"//{public_url}").hostname
        if host:
            names.append(host)
    if bind not in ("0.0.0.0", "::", ""):
        names.append(bind)
    hostname = socket.gethostname()
    names += [hostname, socket.getfqdn(), "localhost", "127.0.0.1", "::1"]
    out: list[str] = []
    for n in names:
        n = n.strip().strip("[]").lower()
        if n and n not in out:
            out.append(n)
    return out


def _san(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(path, data, mode=0o600)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _make_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gapcache mirror CA ({socket.gethostname()})")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / "ca.key", key)
    atomic_write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{directory}: unreadable CA ({exc}); move it away to make a new one") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{directory}/ca.key: not an EC key")
    return cert, key


def _covers(cert: x509.Certificate, ca: x509.Certificate, names: list[str]) -> bool:
    if cert.issuer != ca.subject or cert.not_valid_after_utc - _now() < datetime.timedelta(days=RENEW_DAYS):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(n.value).lower() for n in san}
    return all(str(g.value).lower() in have for g in _san(names))


def _make_server(directory: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / "server.key", key)
    atomic_write(directory / "server.crt", cert.public_bytes(serialization.Encoding.PEM))


def auto(directory: Path, names: list[str]) -> tuple[TlsFiles, bool]:
    """The CA and a server certificate covering ``names`` in ``directory`` (made when missing or
    not covering them). Returns the files and whether a server certificate was (re)made."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    loaded = _load_ca(directory)
    ca, ca_key = loaded if loaded is not None else _make_ca(directory)
    made = False
    try:
        cert = x509.load_pem_x509_certificate((directory / "server.crt").read_bytes())
        fresh = _covers(cert, ca, names) and (directory / "server.key").is_file()
    except (OSError, ValueError):
        fresh = False
    if not fresh:
        _make_server(directory, ca, ca_key, names)
        made = True
    return TlsFiles(directory / "server.crt", directory / "server.key", directory / "ca.crt"), made


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert {cert} / --tls-key {key}: {exc}") from exc
    return ctx


def ca_handler(ca: Path) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse | None]]:
    """``GET /ca.crt`` on the files listener: the CA clients trust the mirror with."""
    data = ca.read_bytes()

    async def handle(request: web.BaseRequest) -> web.StreamResponse | None:
        if request.path != CA_PATH or request.method not in ("GET", "HEAD"):
            return None
        return web.Response(body=data, content_type="application/x-x509-ca-cert")

    return handle

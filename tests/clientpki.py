"""Test certificates for client TLS (an upstream that wants a client certificate, as Red Hat's CDN
does): a CA and a server certificate for 127.0.0.1 made by gapcache's own ``tls.auto``, a client
certificate by that CA, one by another CA, and a key that belongs to no certificate."""

from __future__ import annotations

import contextlib
import datetime
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gapcache import tls


@dataclass
class Pki:
    dir: Path
    ca: Path  # the test CA: signs the server's certificate and the entitled client's
    server_cert: Path
    server_key: Path
    cert: Path  # the entitlement: a client certificate by the test CA (CN=entitlement)
    key: Path
    stranger_cert: Path  # a client certificate by another CA (CN=stranger)
    stranger_key: Path
    other_key: Path  # a key that belongs to no certificate here


def _key_file(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    return key


def _client_cert(ca_dir: Path, cert: Path, key: Path, cn: str) -> None:
    """A client certificate (clientAuth) signed by the CA ``tls.auto`` keeps in ``ca_dir``."""
    loaded = tls._load_ca(ca_dir)
    assert loaded is not None
    ca, ca_key = loaded
    private = _key_file(key)
    now = datetime.datetime.now(datetime.timezone.utc)
    made = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert.write_bytes(made.public_bytes(serialization.Encoding.PEM))


def make_pki(d: Path) -> Pki:
    files, _ = tls.auto(d / "ca", ["127.0.0.1"])  # the test CA and a server certificate for 127.0.0.1
    tls.auto(d / "stranger-ca", ["127.0.0.1"])
    _client_cert(d / "ca", d / "entitlement.pem", d / "entitlement-key.pem", "entitlement")
    _client_cert(d / "stranger-ca", d / "stranger.pem", d / "stranger-key.pem", "stranger")
    _key_file(d / "other-key.pem")
    assert files.ca is not None
    return Pki(d, files.ca, files.cert, files.key, d / "entitlement.pem", d / "entitlement-key.pem",
               d / "stranger.pem", d / "stranger-key.pem", d / "other-key.pem")  # fmt: skip


@contextlib.contextmanager
def handshake_refusing_server(pki: Pki, cwd: Path) -> Iterator[int]:
    """OpenSSL's s_server on 127.0.0.1 requiring a client certificate by the test CA: it refuses in the
    TLS handshake itself (an asyncio server drops the connection before its alert leaves, so it cannot
    show this). Yields its port; skips the test where openssl is missing."""
    import pytest

    from conftest import free_port, wait_port

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    port = free_port()
    cmd = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pki.server_cert), "-key",
           str(pki.server_key), "-CAfile", str(pki.ca), "-Verify", "1", "-verify_return_error", "-WWW"]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server)  # type: ignore[arg-type]
        yield port
    finally:
        server.terminate()
        server.wait(10)

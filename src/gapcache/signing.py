"""Signed archives: ed25519 keys, the ``gapcache.lock.json.sig`` member, and the check on load.

``gapcache keygen DIR`` writes ``DIR/gapcache-signing.key`` (PKCS#8 PEM, 0600: stays on the
connected side) and ``DIR/gapcache-signing.pub`` (SubjectPublicKeyInfo PEM: travels).
``gapcache build --sign KEY`` signs the exact lock bytes; the signature is a small JSON document

    {"algorithm": "ed25519", "format": 1, "key": "<fingerprint>", "sha256": "<hex of what is signed>",
     "signature": "<base64>"}

carried as the archive member right after the lock (so a load refuses before reading any blob),
and written beside the lock file and the TOC (``X.sig``). ed25519 signatures are deterministic:
the same lock and key give the same archive bytes. The fingerprint is the sha256 of the raw
32-byte public key; it tells "signed by a key you do not trust" from "the lock was changed".

Trust on the offline side: the keys given with ``load --verify-key PUB`` plus every ``*.pub`` in
``ROOT/keys/``. Once any key is trusted, an archive without a valid signature by one of them is
refused, naming why (unsigned, tampered, or signed by another key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ArchiveError, GapcacheError, UsageError
from .store import atomic_write

SIG_SUFFIX = ".sig"
KEY_NAME = "gapcache-signing.key"
PUB_NAME = "gapcache-signing.pub"
SIG_FORMAT = 1
MAX_SIG_BYTES = 64 << 10


class SignatureRefused(ArchiveError):
    """An archive whose signature is missing, wrong, or by an untrusted key (exit 1)."""


def fingerprint(pub: Ed25519PublicKey) -> str:
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class TrustedKey:
    path: Path
    key: Ed25519PublicKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def keygen(directory: Path) -> tuple[Path, Path]:
    """A new key pair in ``directory`` (never overwrites one)."""
    priv_path, pub_path = directory / KEY_NAME, directory / PUB_NAME
    for p in (priv_path, pub_path):
        if p.exists():
            raise UsageError(f"{p} exists: gapcache keygen never overwrites a key (choose another directory)")
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, priv)
        os.fsync(fd)
    finally:
        os.close(fd)
    atomic_write(pub_path, pub)
    return priv_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the signing key: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an ed25519 key (gapcache keygen makes one)")
    return key


def load_public_key(path: Path) -> TrustedKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the public key: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path}: not an ed25519 public key (gapcache keygen makes one)")
    return TrustedKey(path, key)


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The signature document (JSON bytes) over ``data`` (the exact lock bytes, or a TOC's)."""
    doc = {
        "algorithm": "ed25519",
        "format": SIG_FORMAT,
        "key": fingerprint(key.public_key()),
        "sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(key.sign(data)).decode(),
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def trusted_keys(keys_dir: Path | None, given: list[Path]) -> list[TrustedKey]:
    """``--verify-key`` files plus every ``*.pub`` in the root's ``keys/``."""
    out = [load_public_key(p) for p in given]
    if keys_dir is not None and keys_dir.is_dir():
        out += [load_public_key(p) for p in sorted(keys_dir.glob("*.pub"))]
    return out


def check(what: str, data: bytes, sig: bytes | None, keys: list[TrustedKey]) -> str | None:
    """Refuse ``data`` unless ``sig`` is a valid signature over it by one of ``keys`` (no keys: no
    check). Returns the fingerprint of the key that signed, or None when nothing was checked."""
    if not keys:
        return None
    names = ", ".join(f"{k.path.name} ({k.fingerprint[:16]})" for k in keys)
    if sig is None:
        raise SignatureRefused(
            f"{what}: not signed (no signature), but one is required here: trusted key(s) {names}; nothing was loaded"
        )
    try:
        doc = json.loads(sig)
        if not isinstance(doc, dict) or doc.get("algorithm") != "ed25519":
            raise ValueError(f"algorithm {doc.get('algorithm') if isinstance(doc, dict) else None!r}")
        if not isinstance(doc.get("format"), int) or doc["format"] > SIG_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        signer = str(doc["key"])
        raw = base64.b64decode(str(doc["signature"]), validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureRefused(f"{what}: the signature is unreadable ({exc}); nothing was loaded") from exc
    matching = [k for k in keys if k.fingerprint == signer]
    if not matching:
        raise SignatureRefused(
            f"{what}: signed by key {signer[:16]}, which is not trusted here (trusted: {names}); "
            "wrong key, nothing was loaded"
        )
    try:
        matching[0].key.verify(raw, data)
    except InvalidSignature as exc:
        raise SignatureRefused(
            f"{what}: the signature by {matching[0].path.name} ({signer[:16]}) does not match: the lock was "
            "changed after it was signed (tampered or damaged); nothing was loaded"
        ) from exc
    return signer


def sig_path(path: Path) -> Path:
    return path.with_name(path.name + SIG_SUFFIX)


def read_detached(path: Path) -> bytes | None:
    try:
        data = sig_path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GapcacheError(f"{sig_path(path)}: {exc.strerror}") from exc
    return data[:MAX_SIG_BYTES]

"""The ``yum:`` section: RPM repositories, whole (``mode: full``) or a dependency-closed subset.

TLS as dnf's ``.repo`` options name it, for upstreams that want a client certificate (Red Hat's CDN:
the entitlement certificate and key) or trust a private CA: ``sslclientcert``, ``sslclientkey``,
``sslcacert`` (paths on the connected side; a relative one is from the manifest's folder, see
:meth:`YumRepo.with_base_dir`) and ``sslverify``. The files are checked when the manifest is read:
present, readable, a certificate and the key that belongs to it.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..names import check_repo_id


class YumRepo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    baseurl: str | None = None
    mirrorlist: str | None = None
    metalink: str | None = None
    gpgkey: list[str] = []
    arch: list[str] = ["x86_64", "noarch"]
    mode: Literal["full", "packages"] = "full"
    packages: list[str] = []
    newest_only: bool = True
    base: list[str] = []
    # false: fetch the metadata only, to be a `base:` of another repo's closure (the OS media the
    # nodes already have); nothing of it goes into the archive
    mirror: bool = True
    # dnf's option: with gpgkey given, repomd.xml must be signed (repomd.xml.asc) unless this is false
    repo_gpgcheck: bool = True
    # dnf's TLS options (connected side only: never in the .repo files the mirror serves)
    sslclientcert: str | None = None  # PEM certificate (the key too, when sslclientkey is not given)
    sslclientkey: str | None = None
    sslcacert: str | None = None  # PEM CA bundle the upstream's certificate must chain to
    sslverify: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_repo_id(v)

    @field_validator("baseurl", "mirrorlist", "metalink")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://", "file://")):
            raise ValueError("must be an http(s):// or file:// URL")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> YumRepo:
        if sum(x is not None for x in (self.baseurl, self.mirrorlist, self.metalink)) != 1:
            raise ValueError("give exactly one of baseurl, mirrorlist, metalink")
        return self

    @model_validator(mode="after")
    def _tls_files(self) -> YumRepo:
        if self.sslclientkey is not None and self.sslclientcert is None:
            raise ValueError(f"{self.id}: sslclientkey needs sslclientcert")
        files = self.tls_files()
        if files and all(Path(p).is_absolute() for p in files.values()):  # relative: see with_base_dir
            check_tls_files(self)
        return self

    def tls_files(self) -> dict[str, str]:
        """The TLS options given, ``{option: path}``."""
        named = {"sslclientcert": self.sslclientcert, "sslclientkey": self.sslclientkey, "sslcacert": self.sslcacert}
        return {k: v for k, v in named.items() if v is not None}

    def with_base_dir(self, base_dir: Path) -> YumRepo:
        """This repo with relative TLS paths made absolute from ``base_dir`` (the manifest's folder),
        checked; ValueError naming the repo and the file otherwise."""
        update = {k: str((base_dir / v).resolve()) for k, v in self.tls_files().items() if not Path(v).is_absolute()}
        if not update:
            return self
        repo = self.model_copy(update=update)
        check_tls_files(repo)
        return repo


def check_tls_files(repo: YumRepo) -> None:
    """ValueError naming the repo and the file unless its TLS files make a client context."""
    for option, path in repo.tls_files().items():
        if not os.path.isfile(path):
            why = "is a directory" if os.path.isdir(path) else "no such file"
            raise ValueError(f"{repo.id}: {option} {path}: {why}")
        if not os.access(path, os.R_OK):
            raise ValueError(f"{repo.id}: {option} {path}: permission denied")
    client_context(repo.sslclientcert, repo.sslclientkey, repo.sslcacert, repo.sslverify, repo.id)


def _no_passphrase() -> bytes:
    return b""  # never OpenSSL's prompt on the terminal: an encrypted key fails to load instead


def client_context(
    cert: str | None, key: str | None, ca: str | None, verify: bool = True, owner: str = ""
) -> ssl.SSLContext:
    """A TLS client context: the CA bundle ``ca`` (else the system's), the client certificate and key
    when given, no verification when ``verify`` is false. ValueError with a plain reason otherwise."""
    who = f"{owner}: " if owner else ""
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{who}sslcacert {ca}: not a PEM CA certificate ({_reason(exc)})") from exc
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        try:
            ctx.load_cert_chain(cert, key, password=_no_passphrase)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(who + _cert_problem(cert, key, _reason(exc))) from exc
    return ctx


def _cert_problem(cert: str, key: str | None, reason: str) -> str:
    """Why OpenSSL would not load a certificate and key, in words (its own say "PEM lib")."""
    key_option = "sslclientkey" if key else "sslclientcert"
    try:
        cert_text = Path(cert).read_text(errors="replace")
        key_text = Path(key).read_text(errors="replace") if key else cert_text
    except OSError as exc:
        return f"{exc.filename}: {exc.strerror}"
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        return f"sslclientcert {cert}: no PEM certificate in it"
    if "ENCRYPTED PRIVATE KEY-----" in key_text or "Proc-Type: 4,ENCRYPTED" in key_text:
        return f"{key_option} {key or cert}: the key is encrypted (give the unencrypted key)"
    if "PRIVATE KEY-----" not in key_text:
        return f"{key_option} {key or cert}: no PEM private key in it"
    if "KEY_VALUES_MISMATCH" in reason:
        return f"sslclientkey {key or cert} is not the key of sslclientcert {cert}"
    return f"sslclientcert {cert}" + (f" / sslclientkey {key}" if key else "") + f": cannot be loaded ({reason})"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)

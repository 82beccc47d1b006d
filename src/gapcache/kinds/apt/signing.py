"""Signing a published apt repository with gpg, in ONE temporary GnuPG home per publish.

:func:`open_signer` copies the signer's GnuPG home once, reads the key's fingerprint and creation
time once (``--list-secret-keys``) and starts its agent; every suite's InRelease and Release.gpg and
the exported public key are then made in that home, which is removed (agent stopped) at the end.
Per suite that is two gpg runs (clearsign, detach-sign); the creation time of each signature, which
must be the requested one for the bytes to reproduce, is read from the signature packet here
(OpenPGP v4), with ``gpg --list-packets`` only for other packet versions.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...tools import require_tool
from .errors import AptError
from .gpg import gpg_env, temp_home


@dataclass(frozen=True)
class Signer:
    """A GnuPG home holding the secret key (no passphrase) and the key to sign with."""

    gnupg_home: Path
    key_id: str  # fingerprint (preferred), long key id or user id; "" for the home's (first) secret key


@dataclass(frozen=True)
class OpenSigner:
    """A :class:`Signer` opened for a whole publish (:func:`open_signer`)."""

    signer: Signer
    home: Path
    env: dict[str, str]
    gpg: str
    fpr: str
    created: int  # the latest creation time among the key and its subkeys

    @property
    def user(self) -> str:
        return self.signer.key_id or self.fpr


@contextlib.contextmanager
def open_signer(signer: Signer | OpenSigner) -> Iterator[OpenSigner]:
    """One temporary copy of the signer's GnuPG home for everything signed with it (an already
    open signer is used as it is)."""
    if isinstance(signer, OpenSigner):
        yield signer
        return
    gpg = require_tool("gpg", "needed to sign apt Release files")
    with temp_home(signer.gnupg_home) as home:
        env = gpg_env(home)
        fpr, created = _key_times(gpg, signer, env)
        if shutil.which("gpgconf"):  # a running agent: gpg signs at once (see sign)
            subprocess.run(["gpgconf", "--launch", "gpg-agent"], env=env, capture_output=True, check=False)
        yield OpenSigner(signer, home, env, gpg, fpr, created)


def _key_times(gpg: str, signer: Signer, env: dict[str, str]) -> tuple[str, int]:
    which = ["--", signer.key_id] if signer.key_id else []
    res = subprocess.run([gpg, "--batch", "--with-colons", "--list-secret-keys", *which], env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    if res.returncode != 0:
        raise AptError(f"{signer.gnupg_home}: no secret key {signer.key_id!r}")
    rows = [ln.split(":") for ln in res.stdout.splitlines()]
    secs = [i for i, r in enumerate(rows) if r[0] == "sec"]
    if not signer.key_id and len(secs) > 1:  # the first key only
        rows = rows[: secs[1]]
    times = [int(r[5]) for r in rows if r[0] in ("sec", "ssb") and len(r) > 5 and r[5].isdigit()]
    fprs = [r[9] for r in rows if r[0] == "fpr" and len(r) > 9]
    if not times or not fprs:
        raise AptError(f"{signer.gnupg_home}: cannot read key {signer.key_id!r}")
    return fprs[0], max(times)


def key_times(signer: Signer | OpenSigner) -> tuple[str, int]:
    """(fingerprint, latest creation time among the key and its subkeys)."""
    with open_signer(signer) as s:
        return s.fpr, s.created


def sign(release: bytes, signer: Signer | OpenSigner, when: int) -> tuple[bytes, bytes]:
    """(InRelease clearsigned, Release.gpg detached armored), both made "at" ``when``."""
    with open_signer(signer) as s:
        (s.home / "Release").write_bytes(release)
        base = [s.gpg, "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "",
                "--faked-system-time", f"{when}!", "--digest-algo", "SHA512", "--no-emit-version",
                "--local-user", s.user]  # fmt: skip
        for args in (["--clearsign", "-o", "InRelease"], ["--detach-sign", "--armor", "-o", "Release.gpg"]):
            # measured: the faked clock can still move on while gpg starts its agent, so a signature
            # may carry `when + 1`; check the time and sign again (what makes the bytes reproducible)
            for _ in range(5):
                res = subprocess.run([*base, *args, "Release"], cwd=s.home, env=s.env, capture_output=True,
                                     check=False)  # fmt: skip
                if res.returncode != 0:
                    err = res.stderr.decode(errors="replace").strip().splitlines()
                    raise AptError(f"signing with {s.user} failed: {err[-1] if err else res.returncode}")
                if signature_time(s.gpg, s.home / args[-1], s.env) == when:
                    break
            else:
                raise AptError(f"signing with {s.user}: gpg does not sign at the requested time {when}")
        return (s.home / "InRelease").read_bytes(), (s.home / "Release.gpg").read_bytes()


def signature_time(gpg: str, path: Path, env: dict[str, str]) -> int | None:
    """The creation time of the (first) signature in ``path``: read from its armored signature block
    (an OpenPGP v4 packet), else from ``gpg --list-packets`` of that block (for a clearsigned file gpg
    would list only the text)."""
    data = path.read_bytes()
    start = data.find(b"-----BEGIN PGP SIGNATURE-----")
    if start < 0:
        return None
    created = v4_signature_created(data[start:])
    if created is not None:
        return created
    block = path.with_name(path.name + ".sig.asc")
    block.write_bytes(data[start:])
    res = subprocess.run([gpg, "--batch", "--list-packets", str(block)], env=env, capture_output=True, text=True,
                         check=False)  # fmt: skip
    block.unlink()
    m = re.search(r"^:signature packet:.*\n\s+version \d+, created (\d+)", res.stdout, re.M)
    return int(m.group(1)) if m else None


def v4_signature_created(armored: bytes) -> int | None:
    """The creation time (hashed subpacket 2) of the first packet of an armored signature block when
    it is a version 4 signature packet; None for anything else (the caller asks gpg)."""
    lines = armored.decode("ascii", errors="replace").splitlines()[1:]
    body = lines[lines.index("") + 1 :] if "" in lines else []
    b64 = "".join(ln for ln in body if ln and not ln.startswith(("=", "-----")))
    try:
        pkt = base64.b64decode(b64, validate=True)
        head = pkt[0]
        if head & 0x40:  # new format: tag in the low 6 bits, then a 1, 2 or 5 octet length
            tag, n = head & 0x3F, 1 if pkt[1] < 192 else 2 if pkt[1] < 224 else 5
        else:  # old format: tag in bits 2-5, length octets by the low 2 bits
            tag, n = (head >> 2) & 0x0F, {0: 1, 1: 2, 2: 4}.get(head & 3, 0)
        body_at = 1 + n
        if tag != 2 or n == 0 or pkt[body_at] != 4:
            return None
        hashed_len = int.from_bytes(pkt[body_at + 4 : body_at + 6], "big")
        at, end = body_at + 6, body_at + 6 + hashed_len
        while at < end:  # subpackets: a 1, 2 or 5 octet length (covering the type octet), type, data
            first = pkt[at]
            if first < 192:
                size, at = first, at + 1
            elif first < 255:
                size, at = ((first - 192) << 8) + pkt[at + 1] + 192, at + 2
            else:
                size, at = int.from_bytes(pkt[at + 1 : at + 5], "big"), at + 5
            if pkt[at] & 0x7F == 2 and size == 5:
                return int.from_bytes(pkt[at + 1 : at + 5], "big")
            at += size
    except (ValueError, IndexError):
        return None
    return None


def public_key(signer: Signer | OpenSigner, armor: bool = False) -> bytes:
    """The signing key's public part: binary (what apt's ``Signed-By`` file wants) or armored."""
    with open_signer(signer) as s:
        cmd = [s.gpg, "--batch", "--export", *(["--armor"] if armor else []), "--", s.user]
        res = subprocess.run(cmd, env=s.env, capture_output=True, check=False)
    if res.returncode != 0 or not res.stdout:
        raise AptError(f"{s.signer.gnupg_home}: cannot export key {s.user!r}")
    return res.stdout

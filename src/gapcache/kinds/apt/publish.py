"""Publish a subset as a new, signed apt repository — byte-reproducible.

Suite layout (``dist`` is a name)::

    dists/DIST/{Release,InRelease,Release.gpg}
    dists/DIST/COMPONENT/binary-ARCH/Packages{,.gz,.xz}

Flat layout (``dist`` ends with ``/``; ``./`` is the root): ``Packages{,.gz,.xz}`` and the Release
files in that directory, every architecture in one Packages. Packages files keep each upstream
stanza byte-exact, so the debs are served at the upstream ``Filename`` (relative to the repository
root, or to the flat directory).

Reproducible: the same records, Release metadata and key give the same bytes — gzip with mtime 0 and
no file name, xz single-threaded, and signatures made with ``gpg --faked-system-time T!`` where T is
the upstream Release ``Date`` (or the signing key's creation time when that is later: gpg refuses to
sign, and gpgv to accept, a signature older than its key). RSA (PKCS#1 v1.5) and EdDSA signatures
are deterministic for a given time; DSA and ECDSA ones are not (random nonce), so use an RSA or
Ed25519 site key.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...tools import require_tool
from .errors import AptError
from .gpg import gpg_env, temp_home
from .packages import PackageRecord, sort_records, write_packages
from .release import Release, parse_date, release_dir

EPOCH_DATE = "Thu, 01 Jan 1970 00:00:00 UTC"
IndexKey = tuple[str | None, str]  # (component or None for flat, architecture)


@dataclass(frozen=True)
class ReleaseMeta:
    """The descriptive fields of the published Release (taken from upstream for reproducibility)."""

    origin: str = "gapcache"
    label: str = "gapcache"
    suite: str | None = None
    codename: str | None = None
    date: str = EPOCH_DATE  # RFC 2822, e.g. "Sat, 10 Jun 2023 09:05:43 UTC"
    description: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # more single-line fields, written sorted

    @classmethod
    def from_upstream(cls, release: Release, origin: str | None = None, label: str | None = None) -> ReleaseMeta:
        f = release.fields
        return cls(
            origin=origin or f.get("Origin", "gapcache"),
            label=label or f.get("Label", "gapcache"),
            suite=f.get("Suite"),
            codename=f.get("Codename"),
            date=f.get("Date") or EPOCH_DATE,
            description=f.get("Description"),
        )


@dataclass(frozen=True)
class Signer:
    """A GnuPG home holding the secret key (no passphrase) and the key to sign with."""

    gnupg_home: Path
    key_id: str  # fingerprint (preferred), long key id or user id


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def xz_bytes(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)


def publish_repo(
    indexes: Mapping[IndexKey, Sequence[PackageRecord]],
    dist: str,
    meta: ReleaseMeta,
    signer: Signer,
) -> dict[str, bytes]:
    """Every metadata file of the new repository: ``{path relative to the repository root: bytes}``.

    ``indexes`` maps (component, arch) to the records to list; for a flat ``dist`` the component
    must be None and all architectures are merged into one Packages file."""
    flat = dist.endswith("/")
    top = release_dir(dist)
    if any((comp is None) != flat for comp, _ in indexes):
        raise AptError(f"{dist}: a {'flat' if flat else 'suite'} repository needs component "
                       f"{'None' if flat else 'names'} in every index")  # fmt: skip
    files: dict[str, bytes] = {}
    groups: dict[str, list[PackageRecord]] = {}
    for (comp, arch), records in indexes.items():
        rel = "Packages" if comp is None else f"{comp}/binary-{arch}/Packages"
        groups.setdefault(rel, []).extend(records)
    for rel, records in sorted(groups.items()):
        plain = write_packages(sort_records(records))
        files[rel] = plain
        files[rel + ".gz"] = gzip_bytes(plain)
        files[rel + ".xz"] = xz_bytes(plain)
    archs = sorted({arch for _, arch in indexes})
    comps = sorted({c for c, _ in indexes if c is not None})
    release = release_text(meta, archs, comps, files)
    inrelease, detached = sign(release, signer, signing_time(meta.date, signer))
    out = {top + k: v for k, v in files.items()}
    out[top + "Release"] = release
    out[top + "InRelease"] = inrelease
    out[top + "Release.gpg"] = detached
    return dict(sorted(out.items()))


def release_text(meta: ReleaseMeta, archs: Sequence[str], comps: Sequence[str], files: Mapping[str, bytes]) -> bytes:
    head: list[tuple[str, str | None]] = [
        ("Origin", meta.origin),
        ("Label", meta.label),
        ("Suite", meta.suite),
        ("Codename", meta.codename),
        ("Date", meta.date),
        ("Architectures", " ".join(archs)),
        ("Components", " ".join(comps) or None),
        ("Description", meta.description),
        *sorted(meta.extra.items()),
    ]
    lines = []
    for k, v in head:
        if v is None or v == "":
            continue
        if "\n" in v or "\n" in k:
            raise AptError(f"Release field {k!r}: value must be one line")
        lines.append(f"{k}: {v}")
    for section, algo in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
        lines.append(f"{section}:")
        for path in sorted(files):
            data = files[path]
            lines.append(f" {algo(data).hexdigest()} {len(data):>16} {path}")
    return ("\n".join(lines) + "\n").encode()


def key_times(signer: Signer) -> tuple[str, int]:
    """(fingerprint, latest creation time among the key and its subkeys)."""
    gpg = require_tool("gpg", "needed to sign apt Release files")
    with temp_home(signer.gnupg_home) as home:
        res = subprocess.run([gpg, "--batch", "--with-colons", "--list-secret-keys", "--", signer.key_id],
                             env=gpg_env(home), capture_output=True, text=True, check=False)  # fmt: skip
    if res.returncode != 0:
        raise AptError(f"{signer.gnupg_home}: no secret key {signer.key_id!r}")
    rows = [ln.split(":") for ln in res.stdout.splitlines()]
    times = [int(r[5]) for r in rows if r[0] in ("sec", "ssb") and len(r) > 5 and r[5].isdigit()]
    fprs = [r[9] for r in rows if r[0] == "fpr" and len(r) > 9]
    if not times or not fprs:
        raise AptError(f"{signer.gnupg_home}: cannot read key {signer.key_id!r}")
    return fprs[0], max(times)


def signing_time(date: str, signer: Signer) -> int:
    """The signature creation time: the Release Date, but never before the key was created."""
    _, created = key_times(signer)
    return max(parse_date(date) or 0, created)


def sign(release: bytes, signer: Signer, when: int) -> tuple[bytes, bytes]:
    """(InRelease clearsigned, Release.gpg detached armored), both made "at" ``when``."""
    gpg = require_tool("gpg", "needed to sign apt Release files")
    with temp_home(signer.gnupg_home) as home:
        env = gpg_env(home)
        (home / "Release").write_bytes(release)
        base = [gpg, "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "",
                "--faked-system-time", f"{when}!", "--digest-algo", "SHA512", "--no-emit-version",
                "--local-user", signer.key_id]  # fmt: skip
        if shutil.which("gpgconf"):  # a running agent: gpg signs at once (see below)
            subprocess.run(["gpgconf", "--launch", "gpg-agent"], env=env, capture_output=True, check=False)
        for args in (["--clearsign", "-o", "InRelease"], ["--detach-sign", "--armor", "-o", "Release.gpg"]):
            # measured: the faked clock can still move on while gpg starts its agent, so a signature
            # may carry `when + 1`; check the time and sign again (what makes the bytes reproducible)
            for _ in range(5):
                res = subprocess.run([*base, *args, "Release"], cwd=home, env=env, capture_output=True, check=False)
                if res.returncode != 0:
                    err = res.stderr.decode(errors="replace").strip().splitlines()
                    raise AptError(f"signing with {signer.key_id} failed: {err[-1] if err else res.returncode}")
                if signature_time(gpg, home / args[-1], env) == when:
                    break
            else:
                raise AptError(f"signing with {signer.key_id}: gpg does not sign at the requested time {when}")
        return (home / "InRelease").read_bytes(), (home / "Release.gpg").read_bytes()


def signature_time(gpg: str, path: Path, env: dict[str, str]) -> int | None:
    """The creation time of the (first) signature in ``path``, from ``gpg --list-packets`` of its
    armored signature block (for a clearsigned file gpg would list only the text)."""
    data = path.read_bytes()
    start = data.find(b"-----BEGIN PGP SIGNATURE-----")
    if start < 0:
        return None
    block = path.with_name(path.name + ".sig.asc")
    block.write_bytes(data[start:])
    res = subprocess.run([gpg, "--batch", "--list-packets", str(block)], env=env, capture_output=True, text=True,
                         check=False)  # fmt: skip
    block.unlink()
    m = re.search(r"^:signature packet:.*\n\s+version \d+, created (\d+)", res.stdout, re.M)
    return int(m.group(1)) if m else None


def public_key(signer: Signer, armor: bool = False) -> bytes:
    """The signing key's public part: binary (what apt's ``Signed-By`` file wants) or armored."""
    gpg = require_tool("gpg", "needed to export the apt signing key")
    with temp_home(signer.gnupg_home) as home:
        cmd = [gpg, "--batch", "--export", *(["--armor"] if armor else []), "--", signer.key_id]
        res = subprocess.run(cmd, env=gpg_env(home), capture_output=True, check=False)
    if res.returncode != 0 or not res.stdout:
        raise AptError(f"{signer.gnupg_home}: cannot export key {signer.key_id!r}")
    return res.stdout

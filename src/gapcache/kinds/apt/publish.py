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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import AptError
from .packages import PackageRecord, sort_records, write_packages
from .release import Release, parse_date, release_dir
from .signing import OpenSigner, Signer, key_times, open_signer, public_key, sign

__all__ = ["EPOCH_DATE", "IndexKey", "OpenSigner", "ReleaseMeta", "Signer", "open_signer", "public_key",
           "publish_repo"]  # fmt: skip

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


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def xz_bytes(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)


def publish_repo(
    indexes: Mapping[IndexKey, Sequence[PackageRecord]],
    dist: str,
    meta: ReleaseMeta,
    signer: Signer | OpenSigner,
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
    with open_signer(signer) as opened:  # one GnuPG home for the key's times and both signatures
        inrelease, detached = sign(release, opened, signing_time(meta.date, opened))
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


def signing_time(date: str, signer: Signer | OpenSigner) -> int:
    """The signature creation time: the Release Date, but never before the key was created."""
    _, created = key_times(signer)
    return max(parse_date(date) or 0, created)

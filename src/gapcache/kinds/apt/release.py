"""Release files: verify the signature (gpgv, isolated), parse, and pick the index files to fetch.

Layouts. A *suite* repository (``deb URI SUITE COMPONENT…``) has its Release files in
``dists/SUITE/`` and its indexes in ``dists/SUITE/COMPONENT/binary-ARCH/Packages*``. A *flat*
repository (``deb URI DIR/`` — the suite ends with ``/``) has Release and ``Packages*`` in ``DIR``
(``./`` or ``/``: the root) and no components. Paths listed in a Release file are relative to the
Release file's directory; :func:`release_dir` gives that directory relative to the repository root.

Verification follows apt: at least one good signature (``VALIDSIG``) by a key in the keyring, no bad
one, no weak digest (MD5/SHA-1/RIPEMD-160); signatures by keys not in the keyring are ignored (the
Debian archive signs with several keys). Only the signed text is parsed (gpgv's output), so text
outside the clearsigned block can never reach the caller.
"""

from __future__ import annotations

import bz2
import email.utils
import gzip
import hashlib
import lzma
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from debian.deb822 import Release as Deb822Release

from ...tools import require_tool
from .errors import AptError, SignatureError
from .gpg import KeySource, binary_keyrings, gpg_env, temp_home

HASH_FIELDS = {"MD5Sum", "SHA1", "SHA256", "SHA512"}
WEAK_HASHES = {"1": "MD5", "2": "SHA-1", "3": "RIPEMD-160"}
# preference order for an index listed in several compressions (plain last: Debian lists it, but
# does not serve it)
COMPRESSIONS = (".xz", ".gz", ".zst", ".bz2", "")


@dataclass(frozen=True)
class IndexRef:
    """One index file as listed in a Release file."""

    path: str  # relative to the Release file's directory, e.g. main/binary-amd64/Packages.xz
    sha256: str
    size: int
    by_hash: str | None = None  # main/binary-amd64/by-hash/SHA256/<hex> when Acquire-By-Hash: yes

    @property
    def compression(self) -> str:
        return next((c for c in COMPRESSIONS if c and self.path.endswith(c)), "")


@dataclass(frozen=True)
class Release:
    raw: bytes  # the signed text, byte-exact (what the signature covers)
    fields: dict[str, str]  # every single-line field (Origin, Label, Suite, Codename, Date, …)
    sha256: dict[str, tuple[str, int]]  # path → (sha256 hex, size)
    architectures: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    acquire_by_hash: bool = False
    signer: str | None = None  # primary key fingerprint of the good signature (None: not verified)
    md5: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def suite(self) -> str | None:
        return self.fields.get("Suite")

    @property
    def codename(self) -> str | None:
        return self.fields.get("Codename")

    @property
    def date(self) -> str | None:
        return self.fields.get("Date")

    @property
    def date_epoch(self) -> int | None:
        """``Date`` as seconds since the epoch (None when absent or unreadable)."""
        return parse_date(self.date)


def parse_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(value.strip()).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


def parse_release(data: bytes, signer: str | None = None, what: str = "Release") -> Release:
    """Parse Release text (no verification: use :func:`verify_inrelease` or :func:`verify_release`)."""
    try:
        rel = Deb822Release(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AptError(f"{what}: not UTF-8 text") from exc
    raw_fields = {k: rel.get_as_string(k).strip() for k in rel}
    fields = {k: v for k, v in raw_fields.items() if "\n" not in v and k not in HASH_FIELDS}
    tables: dict[str, dict[str, tuple[str, int]]] = {"SHA256": {}, "MD5Sum": {}}
    for name, key in (("SHA256", "sha256"), ("MD5Sum", "md5sum")):
        for entry in rel.get(name, []) if name in rel else []:
            try:
                tables[name][entry["name"]] = (entry[key].lower(), int(entry["size"]))
            except (KeyError, ValueError) as exc:
                raise AptError(f"{what}: malformed {name} line {entry!r}") from exc
    if not tables["SHA256"]:
        raise AptError(f"{what}: no SHA256 section (apt needs one; MD5/SHA-1 alone are not trusted)")
    return Release(
        raw=data,
        fields=fields,
        sha256=tables["SHA256"],
        md5=tables["MD5Sum"],
        architectures=tuple(fields.get("Architectures", "").split()),
        components=tuple(fields.get("Components", "").split()),
        acquire_by_hash=fields.get("Acquire-By-Hash", "").lower() == "yes",
        signer=signer,
    )


def verify_inrelease(inrelease: bytes, keys: KeySource | Sequence[KeySource], what: str) -> Release:
    """Verify a clearsigned InRelease with ``keys`` (keyring files or key bytes, armored or binary)
    and parse the signed text. ``what`` names the repository or URL in errors."""
    text = inrelease.lstrip()
    if not text.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----"):
        raise SignatureError(f"{what}: InRelease is not a clearsigned message")
    if text.count(b"-----BEGIN PGP SIGNED MESSAGE-----") != 1 or text.rstrip().split(b"\n")[-1].strip() != (
        b"-----END PGP SIGNATURE-----"
    ):
        raise SignatureError(f"{what}: InRelease holds more than one message or data after the signature")
    signed, signer = _gpgv(keys, inrelease, None, what)
    return parse_release(signed, signer, what)


def verify_release(release: bytes, signature: bytes, keys: KeySource | Sequence[KeySource], what: str) -> Release:
    """Verify ``Release`` against its detached ``Release.gpg`` and parse it."""
    if not signature.strip():
        raise SignatureError(f"{what}: Release.gpg is empty")
    _, signer = _gpgv(keys, signature, release, what)
    return parse_release(release, signer, what)


def _gpgv(keys: KeySource | Sequence[KeySource], sig: bytes, data: bytes | None, what: str) -> tuple[bytes, str]:
    gpgv = require_tool("gpgv", "needed to verify apt Release signatures")
    with temp_home() as home:
        keyrings = binary_keyrings(keys, home)
        (home / "sig").write_bytes(sig)
        cmd = [gpgv, "--homedir", str(home), "--status-fd", "1"]
        for k in keyrings:
            cmd += ["--keyring", str(k)]
        if data is None:
            cmd += ["--output", str(home / "out"), str(home / "sig")]
        else:
            (home / "data").write_bytes(data)
            cmd += [str(home / "sig"), str(home / "data")]
        res = subprocess.run(cmd, env=gpg_env(home), capture_output=True, check=False)
        signer = _judge(res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace"), what)
        signed = (home / "out").read_bytes() if data is None else data
    return signed, signer


def _judge(status: str, stderr: str, what: str) -> str:
    """The signer's fingerprint from gpgv's status lines, or SignatureError saying why not."""
    good, weak, missing, bad = [], [], [], []
    for line in status.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "[GNUPG:]":
            continue
        kind, args = parts[1], parts[2:]
        if kind == "VALIDSIG" and len(args) >= 9:
            if args[7] in WEAK_HASHES:
                weak.append(f"{args[0]} ({WEAK_HASHES[args[7]]})")
            else:
                good.append(args[9] if len(args) > 9 else args[0])
        elif kind in ("BADSIG", "EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
            bad.append(f"{kind} {args[0] if args else ''}".strip())
        elif kind == "NO_PUBKEY" and args:
            missing.append(args[0])
    if bad:
        raise SignatureError(f"{what}: bad signature ({', '.join(bad)})")
    if good:
        return good[0]
    if weak:
        raise SignatureError(f"{what}: signed only with a weak digest: {', '.join(weak)}")
    if missing:
        raise SignatureError(f"{what}: signed by key(s) {', '.join(missing)}, none of which is in the keyring")
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no valid signature"
    raise SignatureError(f"{what}: no valid signature ({last})")


def release_dir(suite: str) -> str:
    """The Release file's directory relative to the repository root: ``dists/SUITE/`` for a suite,
    the path itself for a flat repository (``./`` and ``/`` → ``""``; ``sub/`` → ``sub/``)."""
    if suite.endswith("/"):
        path = suite.strip("/")
        path = "" if path in ("", ".") else path.removeprefix("./") + "/"
        return path
    if not suite:
        raise AptError("empty suite name")
    return f"dists/{suite}/"


def release_paths(suite: str) -> tuple[str, str, str]:
    """``(InRelease, Release, Release.gpg)`` relative to the repository root (InRelease first: prefer it)."""
    d = release_dir(suite)
    return f"{d}InRelease", f"{d}Release", f"{d}Release.gpg"


def packages_indexes(release: Release, component: str | None, arch: str) -> list[IndexRef]:
    """The Packages index for (component, arch) in every compression the Release lists, best first
    (xz, gz, zst, bz2, plain); the caller fetches the first that the server has. ``component=None``
    is a flat repository: ``Packages*`` beside the Release file, one file for every architecture."""
    base = f"{component}/binary-{arch}/Packages" if component else "Packages"
    out = []
    for suffix in COMPRESSIONS:
        path = base + suffix
        if path in release.sha256:
            sha, size = release.sha256[path]
            folder = path.rpartition("/")[0]
            by_hash = f"{folder + '/' if folder else ''}by-hash/SHA256/{sha}" if release.acquire_by_hash else None
            out.append(IndexRef(path, sha, size, by_hash))
    return out


def check_index(ref: IndexRef, data: bytes, what: str) -> bytes:
    """The index bytes, checked against the Release entry, then decompressed."""
    if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
        raise AptError(f"{what}: {ref.path} does not match its size/SHA256 in the Release file")
    return decompress(data, ref.path, what)


def decompress(data: bytes, name: str, what: str = "") -> bytes:
    """Decompress by the file name's suffix (.gz .xz .lzma .bz2 .zst; anything else as is)."""
    import zstandard

    try:
        if name.endswith(".gz"):
            return gzip.decompress(data)
        if name.endswith((".xz", ".lzma")):
            return lzma.decompress(data)
        if name.endswith(".bz2"):
            return bz2.decompress(data)
        if name.endswith(".zst"):
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise AptError(f"{what or name}: cannot decompress {name}: {exc}") from exc
    return data

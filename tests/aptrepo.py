"""Signed apt repositories built by the tests: dpkg-deb, apt-ftparchive, gpg.

One set of packages, two layouts of the same files:

- suite: ``dists/stable/{Release,InRelease,Release.gpg}``,
  ``dists/stable/main/binary-{amd64,arm64}/Packages{,.gz,.xz}``, debs under ``pool/main/q/<name>/``;
- flat: ``Packages{,.gz,.xz}``, ``Release``, ``InRelease``, ``Release.gpg`` and the debs at the root.

The caller chooses the directory (``build_apt_repos(tmp_path_factory.mktemp("apt"))`` in a
session fixture builds it once, in about a second).
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# (name, version, archs, extra control fields)
#   qa → qb, (qalt1 | qalt2), qvirt (virtual, provided by qprov); recommends qrec
#   qb → pre-depends qc; on arm64 it also depends on qarmhelper (arm64 only)
#   qunrel depends on qa (nothing that asks for qa needs it); qa in two versions
PACKAGES: list[tuple[str, str, list[str], dict[str, str]]] = [
    ("qa", "1.0", ["amd64", "arm64"], {"Depends": "qb, qalt1 | qalt2, qvirt", "Recommends": "qrec"}),
    ("qa", "2.0", ["amd64", "arm64"], {"Depends": "qb (>= 1.0), qalt1 | qalt2, qvirt", "Recommends": "qrec"}),
    ("qb", "1.0", ["amd64"], {"Pre-Depends": "qc"}),
    ("qb", "1.0", ["arm64"], {"Pre-Depends": "qc", "Depends": "qarmhelper"}),
    ("qc", "1.0", ["all"], {}),
    ("qalt1", "1.0", ["all"], {}),
    ("qalt2", "1.0", ["all"], {}),
    ("qprov", "1.0", ["amd64", "arm64"], {"Provides": "qvirt"}),
    ("qrec", "1.0", ["all"], {}),
    ("qarmhelper", "1.0", ["arm64"], {}),
    ("qunrel", "1.0", ["amd64"], {"Depends": "qa"}),
]
ARCHS = ["amd64", "arm64"]
SUITE = "stable"
CODENAME = "gapcache-test"
COMPONENT = "main"
EPOCH = 1700000000  # SOURCE_DATE_EPOCH for the debs; the Release Date is apt-ftparchive's "now"


@dataclass(frozen=True)
class AptRepos:
    suite: Path  # repository root: sources line ``deb [signed-by=KEY] file:SUITE stable main``
    flat: Path  # repository root: sources line ``deb [signed-by=KEY] file:FLAT ./``
    public_key: bytes  # armored
    keyring: Path  # the public key as a binary keyring file (what Signed-By wants)
    gnupg: Path  # GnuPG home holding the secret key
    fingerprint: str


def _run(cmd: list[str], **kw: object) -> bytes:
    res = subprocess.run(cmd, capture_output=True, check=False, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise RuntimeError(f"{cmd} exited {res.returncode}: {res.stderr.decode(errors='replace')}")
    out: bytes = res.stdout
    return out


def make_key(home: Path, uid: str = "Apt Test Repo <apt@test>") -> tuple[bytes, str]:
    """A throw-away RSA signing key without passphrase; returns (armored public key, fingerprint)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    _run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", uid, "rsa2048",
          "sign", "never"], env=env)  # fmt: skip
    listing = _run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env).decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    pub = _run(["gpg", "--batch", "--export", "--armor", fpr], env=env)
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, check=False)
    return pub, fpr


def build_debs(out: Path) -> list[Path]:
    work = out / "src"
    debs = []
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
    for name, version, archs, fields in PACKAGES:
        for arch in archs:
            root = work / f"{name}_{version}_{arch}"
            (root / "DEBIAN").mkdir(parents=True)
            (root / "usr/share/gapcache-test").mkdir(parents=True)
            (root / f"usr/share/gapcache-test/{name}").write_text(f"{name} {version} {arch}\n")
            control = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}",
                       "Maintainer: gapcache tests <apt@test>", "Section: misc", "Priority: optional"]  # fmt: skip
            control += [f"{k}: {v}" for k, v in fields.items()]
            control += [f"Description: gapcache test package {name}", " Built by tests/aptrepo.py."]
            (root / "DEBIAN/control").write_text("\n".join(control) + "\n")
            deb = out / f"{name}_{version}_{arch}.deb"
            _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], env=env)
            debs.append(deb)
    shutil.rmtree(work)
    return debs


def _compress(packages: Path) -> None:
    data = packages.read_bytes()
    packages.with_name(packages.name + ".gz").write_bytes(gzip.compress(data, mtime=0))
    packages.with_name(packages.name + ".xz").write_bytes(lzma.compress(data))


def _sign(release: Path, env: dict[str, str]) -> None:
    base = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", "--digest-algo", "SHA512"]
    _run([*base, "--clearsign", "-o", str(release.with_name("InRelease")), str(release)], env=env)
    _run([*base, "--detach-sign", "--armor", "-o", str(release.with_name("Release.gpg")), str(release)], env=env)


def _release(directory: Path, opts: dict[str, str]) -> None:
    cmd = ["apt-ftparchive"]
    for k, v in opts.items():
        cmd += ["-o", f"APT::FTPArchive::Release::{k}={v}"]
    data = _run([*cmd, "release", "."], cwd=directory)
    (directory / "Release").write_bytes(data)


def build_apt_repos(work: Path) -> AptRepos:
    """Build both layouts under ``work`` (which must exist and be empty or new)."""
    work.mkdir(parents=True, exist_ok=True)
    home = work / "gnupg"
    pub, fpr = make_key(home)
    env = {**os.environ, "GNUPGHOME": str(home)}
    keyring = work / "key.gpg"
    _run(["gpg", "--batch", "--yes", "--export", "-o", str(keyring), fpr], env=env)
    debs = build_debs(work / "debs")

    suite = work / "suite"
    for deb in debs:
        name = deb.name.split("_", 1)[0]
        target = suite / "pool" / COMPONENT / name[0] / name / deb.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(deb, target)
    dist = suite / "dists" / SUITE
    for arch in ARCHS:
        d = dist / COMPONENT / f"binary-{arch}"
        d.mkdir(parents=True)
        (d / "Packages").write_bytes(_run(["apt-ftparchive", "--arch", arch, "packages", "pool"], cwd=suite))
        _compress(d / "Packages")
    _release(dist, {"Origin": "gapcache-test", "Label": "gapcache test", "Suite": SUITE, "Codename": CODENAME,
                    "Architectures": " ".join(ARCHS), "Components": COMPONENT})  # fmt: skip
    _sign(dist / "Release", env)

    flat = work / "flat"
    flat.mkdir()
    for deb in debs:
        shutil.copyfile(deb, flat / deb.name)
    (flat / "Packages").write_bytes(_run(["apt-ftparchive", "packages", "."], cwd=flat))
    _compress(flat / "Packages")
    _release(flat, {"Origin": "gapcache-flat", "Label": "gapcache flat", "Architectures": " ".join(ARCHS)})
    _sign(flat / "Release", env)
    shutil.rmtree(work / "debs")
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, check=False)
    return AptRepos(suite=suite, flat=flat, public_key=pub, keyring=keyring, gnupg=home, fingerprint=fpr)


_SERVED: dict[Path, AptRepos] = {}


def served_apt_repos(upstream_root: Path) -> AptRepos:
    """The repositories built once under ``upstream_root/apt`` (the session ``upstream_server``'s
    tree: ``/apt/suite``, ``/apt/flat``, ``/apt/key.gpg`` binary, ``/apt/key.asc`` armored)."""
    if upstream_root not in _SERVED:
        repos = build_apt_repos(upstream_root / "apt")
        (upstream_root / "apt/key.asc").write_bytes(repos.public_key)
        _SERVED[upstream_root] = repos
    return _SERVED[upstream_root]


def host_debian_source() -> tuple[str, str] | None:
    """(URI, suite) of the first deb822 stanza of the host's apt sources with the main component."""
    from debian.deb822 import Deb822

    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in Deb822.iter_paragraphs(path.read_text()):
            if "deb" in stanza.get("Types", "").split() and "main" in stanza.get("Components", "").split():
                uris, suites = stanza.get("URIs", "").split(), stanza.get("Suites", "").split()
                if uris and suites and uris[0].startswith(("http://", "https://")):
                    return uris[0], suites[0]
    return None


if __name__ == "__main__":  # python tests/aptrepo.py DIR: build and leave it there to look at
    import sys

    r = build_apt_repos(Path(sys.argv[1]))
    print(r)

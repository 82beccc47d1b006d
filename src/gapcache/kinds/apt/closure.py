"""Dependency closure with apt's own solver, in a configuration isolated from the host's.

``-o Dir::Etc=…`` on the command line is not enough: apt reads ``/etc/apt/apt.conf.d`` *before* it
parses the command line (``pkgInitConfig``), so the host's settings (proxies, ``GzipIndexes``,
``Install-Recommends``, pins in ``preferences.d``…) would leak in. The sandbox therefore writes its
own configuration file and names it in ``APT_CONFIG``, which apt reads first: every ``Dir::*``
points into the sandbox, so apt-config dump shows no host path but the tool binaries.

The indexes are given to apt as trusted ``file:`` repositories (one flat repository per index,
with a small Release listing its Packages), ``apt-get update`` reads them offline, and
``apt-get install --print-uris`` prints one URI per package of the closure; each URI is mapped back
to the exact record (index, Filename) it came from.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from debian.debian_support import Version

from ...tools import require_tool
from .errors import AptError, ResolveError
from .packages import PackageRecord, parse_packages
from .release import decompress

IndexSource = Path | bytes
REQUEST = re.compile(r"^[a-z0-9][a-z0-9.+-]*[a-z0-9.+](:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$")
URI_LINE = re.compile(r"^'(?P<uri>[^']+)' (?P<name>\S+) (?P<size>\d+) (?P<hash>\S*)$")
STATUS_KEEP = ("Package", "Version", "Architecture", "Multi-Arch", "Provides", "Essential")


@dataclass(frozen=True)
class Chosen:
    """One package of a closure: its record and the position of the index it came from."""

    record: PackageRecord
    index: int


class AptSandbox:
    """An apt configuration that sees nothing of the host's: its own etc, lists, cache, status.

    ``sandbox.add_source(text)`` writes a deb822 sources file; ``sandbox.apt_get(args)`` runs apt-get
    with ``APT_CONFIG`` pointing at the sandbox's configuration."""

    def __init__(self, root: Path, arch: str, *, recommends: bool = False, extra: dict[str, str] | None = None):
        self.root = root
        self.arch = arch
        self.apt_get_path = require_tool("apt-get", "apt's solver is needed on the connected host for apt repos")
        for d in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "etc/trusted.gpg.d", "state",
                  "lists/partial", "cache/archives/partial", "log", "root"):  # fmt: skip
            (root / d).mkdir(parents=True, exist_ok=True)
        self.status.touch()
        conf = {
            "Dir": f"{root}/root/",
            "Dir::Etc": f"{root}/etc/",
            "Dir::Etc::main": "apt.conf",
            "Dir::Etc::parts": "apt.conf.d",
            "Dir::Etc::sourcelist": "sources.list",
            "Dir::Etc::sourceparts": "sources.list.d",
            "Dir::Etc::preferences": "preferences",
            "Dir::Etc::preferencesparts": "preferences.d",
            "Dir::Etc::trusted": "trusted.gpg",
            "Dir::Etc::trustedparts": "trusted.gpg.d",
            "Dir::State": f"{root}/state/",
            "Dir::State::Lists": f"{root}/lists/",
            "Dir::State::status": str(self.status),
            "Dir::Cache": f"{root}/cache/",
            "Dir::Log": f"{root}/log/",
            "Dir::Media::MountPath": f"{root}/media/",
            "Acquire::cdrom::mount": f"{root}/media/",
            "Debug::NoLocking": "1",
            "APT::Architecture": arch,
            "APT::Install-Recommends": "true" if recommends else "false",
            "APT::Install-Suggests": "false",
            "APT::Sandbox::User": "root",
            "APT::Get::List-Cleanup": "true",
            "Acquire::Languages": "none",
            "Acquire::PDiffs": "false",
            "Acquire::Retries": "0",
            **(extra or {}),
        }
        lines = [f'{k} "{_quote(v)}";' for k, v in conf.items()]
        lines.append(f'APT::Architectures {{ "{_quote(arch)}"; }};')
        self.config = root / "apt.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("APT_", "DEBIAN_"))}
        self.env.update(APT_CONFIG=str(self.config), LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        self._sources = 0

    @property
    def status(self) -> Path:
        return self.root / "status"

    def add_source(self, text: str) -> None:
        self._sources += 1
        (self.root / f"etc/sources.list.d/s{self._sources}.sources").write_text(text)

    def apt_get(self, *args: str, check: bool = True, what: str = "apt") -> subprocess.CompletedProcess[str]:
        res = subprocess.run([self.apt_get_path, *args], env=self.env, capture_output=True, text=True, check=False)
        if check and res.returncode != 0:
            raise AptError(f"{what}: apt-get {args[0] if args else ''} failed: {_errors(res)}")
        return res

    def config_dump(self) -> str:
        path = shutil.which("apt-config") or "apt-config"
        return subprocess.run([path, "dump"], env=self.env, capture_output=True, text=True, check=True).stdout


def _quote(value: str) -> str:
    if '"' in value or "\n" in value:
        raise AptError(f"apt configuration value {value!r} contains a quote or newline")
    return value


def _errors(res: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (res.stderr + "\n" + res.stdout).splitlines() if ln.strip()]
    interesting = [ln for ln in lines if ln.startswith(("E:", "W:")) or "unmet" in ln or "Depends:" in ln]
    return "; ".join(interesting or lines[-5:]) or f"exit code {res.returncode}"


def _read_index(src: IndexSource, n: int) -> tuple[bytes, str]:
    if isinstance(src, bytes):
        return src, f"index #{n}"
    try:
        return decompress(src.read_bytes(), src.name, str(src)), str(src)
    except OSError as exc:
        raise AptError(f"{src}: cannot read: {exc.strerror}") from exc


def status_file(base: Sequence[str], records: Sequence[PackageRecord], arch: str) -> bytes:
    """A dpkg status file listing ``base`` (``name`` or ``name=version``) as installed. A bare name
    takes the highest version among ``records`` for ``arch`` or ``all``. Dependencies are left out
    (an installed package with unmet dependencies would make apt refuse to plan anything)."""
    out = []
    for spec in sorted(set(base)):
        name, _, version = spec.partition("=")
        candidates = [r for r in records if r.package == name and r.architecture in (arch, "all")]
        if version:
            candidates = [r for r in candidates if r.version == version]
        if candidates:
            best = max(candidates, key=lambda r: Version(r.version))
            fields = {k: best.fields[k] for k in STATUS_KEEP if k in best.fields}
        elif version:
            fields = {"Package": name, "Version": version, "Architecture": arch}
        else:
            raise ResolveError(f"base package {name!r} is in no index for {arch}: give it as {name}=VERSION")
        fields["Status"] = "install ok installed"
        out.append("".join(f"{k}: {v}\n" for k, v in fields.items()))
    return "\n".join(out).encode()


def resolve_closure(
    indexes: Sequence[IndexSource],
    requested: Sequence[str],
    arch: str,
    *,
    base: Sequence[str] = (),
    base_indexes: Sequence[IndexSource] = (),
    recommends: bool = False,
    workdir: Path | None = None,
    what: str = "apt",
) -> list[Chosen]:
    """The packages apt would download to install ``requested`` (``name``, ``name=version``,
    ``name:arch``) for ``arch`` from ``indexes`` (Packages files: paths, decompressed by suffix,
    or bytes), with ``base`` counted as installed (looked up in ``base_indexes`` and ``indexes``).
    Sorted by (name, version, architecture). ``what`` names the repository in errors."""
    if not requested:
        return []
    bad = [r for r in requested if not REQUEST.match(r)]
    if bad:
        raise ResolveError(f"{what}: not a package name (NAME, NAME=VERSION or NAME:ARCH): {', '.join(bad)}")
    tmp = Path(tempfile.mkdtemp(prefix="gcapt-solve.", dir=workdir))
    try:
        sandbox = AptSandbox(tmp / "apt", arch, recommends=recommends)
        records: list[list[PackageRecord]] = []
        roots: list[str] = []
        for n, src in enumerate(indexes):
            data, name = _read_index(src, n)
            records.append(parse_packages(data, name))
            repo = tmp / "repo" / str(n)
            repo.mkdir(parents=True)
            (repo / "Packages").write_bytes(data)
            (repo / "Release").write_text(_local_release(data))
            roots.append(str(repo))
            uri = "file:" + urllib.parse.quote(str(repo))
            sandbox.add_source(f"Types: deb\nURIs: {uri}\nSuites: ./\nTrusted: yes\n")
        base_records = [r for i, src in enumerate(base_indexes) for r in parse_packages(*_read_index(src, i))]
        flat = [r for group in records for r in group]
        sandbox.status.write_bytes(status_file(base, [*base_records, *flat], arch))
        sandbox.apt_get("update", "-qq", what=what)
        res = sandbox.apt_get(
            "install", "--print-uris", "-q", "-y", "--", *requested, check=False
        )  # -q: keeps "unmet" lines
        if res.returncode != 0:
            _raise_resolve(res, requested, arch, what)
        return _map_uris(res.stdout, roots, records, what)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _local_release(packages: bytes) -> str:
    import hashlib

    sha = hashlib.sha256(packages).hexdigest()
    return f"Origin: gapcache-closure\nDate: Thu, 01 Jan 1970 00:00:00 UTC\nSHA256:\n {sha} {len(packages)} Packages\n"


def _raise_resolve(res: subprocess.CompletedProcess[str], requested: Sequence[str], arch: str, what: str) -> None:
    text = res.stderr + "\n" + res.stdout
    unknown = re.findall(r"Unable to locate package (\S+)", text)
    if unknown:
        raise ResolveError(f"{what}: no package named {', '.join(unknown)} for {arch}")
    versions = re.findall(r"Version '([^']+)' for '([^']+)' was not found", text)
    if versions:
        raise ResolveError(f"{what}: " + ", ".join(f"{n} has no version {v} for {arch}" for v, n in versions))
    virtual = re.findall(r"Package (\S+) is a virtual package provided by", text)
    if virtual:
        raise ResolveError(f"{what}: {', '.join(virtual)} is virtual and provided by several packages: name one")
    unmet = [ln.strip() for ln in res.stdout.splitlines() if "Depends:" in ln or "but it is not" in ln]
    detail = "; ".join(unmet) if unmet else _errors(res)
    raise ResolveError(f"{what}: cannot install {' '.join(requested)} for {arch}: {detail}")


def _map_uris(output: str, roots: list[str], records: list[list[PackageRecord]], what: str) -> list[Chosen]:
    by_file = [{posixpath.normpath(r.filename): r for r in group} for group in records]
    chosen: dict[tuple[str, str, str], Chosen] = {}
    for line in output.splitlines():
        m = URI_LINE.match(line.strip())
        if not m:
            continue
        path = urllib.parse.unquote(urllib.parse.urlsplit(m["uri"]).path)
        for n, root in enumerate(roots):
            if path.startswith(root + "/"):
                rec = by_file[n].get(posixpath.normpath(path[len(root) + 1 :]))
                if rec is not None:
                    chosen.setdefault(rec.key, Chosen(rec, n))
                    break
        else:
            raise AptError(f"{what}: apt chose {m['uri']}, which matches no Filename in the indexes")
    return [chosen[k] for k in sorted(chosen)]

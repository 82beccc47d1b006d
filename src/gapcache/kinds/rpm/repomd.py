"""rpm-md: repomd.xml and primary.xml, compressed metadata, comps and modules filtered to a
subset, and the dependency closure by libsolv (dnf's own solver)."""

from __future__ import annotations

import gzip
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ...errors import GapcacheError
from ...manifest.yum import YumRepo
from ...tools import build_extra

NS = {"repo": "http://linux.duke.edu/metadata/repo", "common": "http://linux.duke.edu/metadata/common"}


@dataclass(frozen=True)
class Pkg:
    name: str
    arch: str
    evr: str
    href: str
    sha256: str
    size: int


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_repomd(data: bytes) -> dict[str, tuple[str, str, int | None]]:
    """``{type: (href, sha256, size)}`` from repomd.xml."""
    root = ET.fromstring(data)
    out = {}
    for d in root.findall("repo:data", NS):
        loc = d.find("repo:location", NS)
        cs = d.find("repo:checksum", NS)
        size = d.find("repo:size", NS)
        if loc is None or cs is None:
            continue
        if cs.get("type") != "sha256":
            raise GapcacheError(f"repomd.xml: {d.get('type')} uses {cs.get('type')} checksums (sha256 required)")
        out[str(d.get("type"))] = (
            str(loc.get("href")),
            str(cs.text).strip(),
            int(size.text) if size is not None and size.text else None,
        )
    return out


_C = "{http://linux.duke.edu/metadata/common}"
_PKG, _NAME, _ARCH, _VERSION, _CHECKSUM, _LOCATION, _SIZE = (
    _C + t for t in ("package", "name", "arch", "version", "checksum", "location", "size")
)
_FIELDS = {_NAME, _ARCH, _VERSION, _CHECKSUM, _LOCATION, _SIZE}
_FEED = 1 << 20


def parse_primary(xml: bytes) -> list[Pkg]:
    """Packages from an uncompressed primary.xml, fed to the parser 1 MiB at a time: each
    ``<package>`` read in one pass over its children (no path search per field) and dropped, so a
    60,000-package primary never stands as one tree."""
    pkgs: list[Pkg] = []
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("end",))
    for at in range(0, len(xml), _FEED):
        parser.feed(xml[at : at + _FEED])
        _drain(parser, pkgs)
    parser.close()
    _drain(parser, pkgs)
    return pkgs


def _drain(parser: ET.XMLPullParser[ET.Element], pkgs: list[Pkg]) -> None:
    for event in parser.read_events():
        if isinstance(p := event[-1], ET.Element) and p.tag == _PKG:
            f = {c.tag: c for c in p if c.tag in _FIELDS}
            if all(t in f for t in (_VERSION, _CHECKSUM, _LOCATION, _SIZE)):
                pkgs.append(_package(f))
            p.clear()


def _package(f: dict[str, ET.Element]) -> Pkg:
    name = f[_NAME].text or "" if _NAME in f else ""
    v, cs = f[_VERSION], f[_CHECKSUM]
    if cs.get("type") != "sha256":
        raise GapcacheError(f"primary: {name} has a {cs.get('type')} checksum")
    epoch = v.get("epoch") or "0"
    evr = f"{epoch}:{v.get('ver')}-{v.get('rel')}" if epoch != "0" else f"{v.get('ver')}-{v.get('rel')}"
    arch = f[_ARCH].text or "" if _ARCH in f else ""
    href, size = str(f[_LOCATION].get("href")), int(f[_SIZE].get("package") or 0)
    return Pkg(name, arch, evr, href, str(cs.text).strip(), size)


def decompress(data: bytes, href: str) -> bytes:
    if href.endswith(".gz"):
        return gzip.decompress(data)
    if href.endswith(".xz"):
        import lzma

        return lzma.decompress(data)
    if href.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if href.endswith(".bz2"):
        import bz2

        return bz2.decompress(data)
    return data


def filter_modules(modules: bytes, nevras: set[str]) -> bytes | None:
    """modules.yaml reduced to the streams whose rpms are in the subset, each listing only those rpms;
    defaults are kept for the modules that remain. None when no stream remains."""
    import yaml

    docs = [d for d in yaml.safe_load_all(modules) if isinstance(d, dict)]
    kept, names = [], set()
    for d in docs:
        if d.get("document") != "modulemd":
            continue
        data = d.get("data") or {}
        rpms = (data.get("artifacts") or {}).get("rpms") or []
        mine = [r for r in rpms if _nevra_key(str(r)) in nevras]
        if mine:
            data["artifacts"]["rpms"] = mine
            kept.append(d)
            names.add(data.get("name"))
    kept += [
        d for d in docs if d.get("document") == "modulemd-defaults" and (d.get("data") or {}).get("module") in names
    ]
    if not names:
        return None
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False) + "...\n" for d in kept).encode()


def _nevra_key(nevra: str) -> str:
    """``pa-0:2.0-1.x86_64`` (modulemd's form) → ``pa-2.0-1.x86_64`` (the lock's form; epoch 0 dropped)."""
    name_evr, _, arch = nevra.rpartition(".")
    name, _, rest = name_evr.partition("-0:")
    return f"{name}-{rest}.{arch}" if rest else nevra


def filter_comps(comps: bytes, names: set[str]) -> bytes | None:
    """The comps groups reduced to the packages a subset holds (groups left empty are dropped)."""
    root = ET.fromstring(comps)
    kept = 0
    for group in list(root.findall("group")):
        plist = group.find("packagelist")
        if plist is not None:
            for req in list(plist.findall("packagereq")):
                if (req.text or "").strip() not in names:
                    plist.remove(req)
        if plist is None or not len(plist):
            root.remove(group)
        else:
            kept += 1
    for env in list(root.findall("environment")):
        root.remove(env)  # environments name groups that may be gone; a subset does not offer them
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) if kept else None


def solve_closure(primaries: dict[str, bytes], packages: list[Pkg], repo: YumRepo, scratch: Path) -> list[Pkg]:
    """The packages of ``repo`` needed to install ``repo.packages`` (libsolv), newest versions.

    ``primaries``: the uncompressed primary.xml of ``repo`` and of each of its ``base`` repos (whose
    packages count as installed); ``packages``: ``repo``'s parsed packages (looked up by name,
    arch and evr: one dict, not a scan per solvable)."""
    solv = build_extra("solv", "solv", "the dependency closure of a yum subset")
    pool = solv.Pool()
    arch = next((a for a in repo.arch if a != "noarch"), "x86_64")
    pool.setarch(arch)
    by_key = {(p.name, p.arch, p.evr): p for p in packages}
    installed = None
    for rid in [repo.id, *repo.base]:
        primary = primaries.get(rid)
        if primary is None:
            raise GapcacheError(f"{repo.id}: base repo {rid!r} is not in the manifest")
        path = scratch / f"{rid}-primary.xml"
        path.write_bytes(primary)
        r = pool.add_repo(rid)
        r.add_rpmmd(solv.xfopen(str(path)), None)
        if rid != repo.id:
            installed = r
    if installed is not None:
        pool.installed = installed
    pool.addfileprovides()
    pool.createwhatprovides()
    jobs = []
    for name in repo.packages:
        sel = pool.select(name, solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_DOTARCH)
        if sel.isempty():
            raise GapcacheError(f"{repo.id}: no package named {name!r}")
        jobs += sel.jobs(solv.Job.SOLVER_INSTALL)
    solver = pool.Solver()
    problems = solver.solve(jobs)
    if problems:
        raise GapcacheError(f"{repo.id}: cannot resolve: " + "; ".join(str(p) for p in problems))
    chosen = []
    for s in solver.transaction().newsolvables():
        pkg = by_key.get((s.name, s.arch, s.evr))
        if s.repo.name == repo.id and pkg is not None:
            chosen.append(pkg)
    return sorted(chosen, key=lambda p: p.href)

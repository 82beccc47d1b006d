"""RPM (yum/dnf) repositories: whole repos byte-exact, or a dependency-closed subset.

Manifest section::

    yum:
      - id: cuda-rhel9-x86_64
        baseurl: https://…/cuda/repos/rhel9/x86_64/
        gpgkey: [https://…/D42D0685.pub]
        arch: [x86_64, noarch]
        mode: packages                  # or full
        packages: [cuda-drivers, nvidia-container-toolkit]
        base: [rhel9-baseos]            # ids whose packages count as installed (the OS media)

Verification: ``repomd.xml`` (and its ``.asc`` signature, checked with the repo's keys when
present) → each metadata file by its checksum → each package by the checksum in primary.
A full mirror keeps the upstream metadata byte-exact. A subset is closed under dependencies by
libsolv (``solv``, dnf's own solver) and gets new repodata from createrepo_c at build time, its
``repomd.xml`` signed with the site key (kept on the connected side; only the public key travels).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...blobs import BlobIndex, Handler
from ...errors import Failure, GapcacheError, HTTPStatusError
from ...lock import GENERATED, Artifact, Item
from ...manifest.yum import YumRepo
from ...store import Store
from ..base import ResolveContext

NS = {"repo": "http://linux.duke.edu/metadata/repo", "common": "http://linux.duke.edu/metadata/common"}
SITE_KEY_NAME = "gapcache-site.pub"


@dataclass(frozen=True)
class Pkg:
    name: str
    arch: str
    evr: str
    href: str
    sha256: str
    size: int


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_signature(data: bytes, signature: bytes, keys: list[bytes], what: str) -> None:
    """Check a detached signature with gpg in a throw-away keyring holding only ``keys``."""
    with gnupg_home(None) as env:
        home = env["GNUPGHOME"]
        for k in keys:
            subprocess.run(
                ["gpg", "--batch", "--quiet", "--import"], input=k, env=env, capture_output=True, check=False
            )
        (Path(home) / "data").write_bytes(data)
        (Path(home) / "data.asc").write_bytes(signature)
        res = subprocess.run(
            ["gpg", "--batch", "--verify", str(Path(home) / "data.asc"), str(Path(home) / "data")],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise GapcacheError(f"{what}: bad signature ({res.stderr.strip().splitlines()[-1] if res.stderr else ''})")


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


def parse_primary(xml_gz: bytes) -> list[Pkg]:
    root = ET.fromstring(gzip.decompress(xml_gz))
    pkgs = []
    for p in root.findall("common:package", NS):
        v = p.find("common:version", NS)
        cs = p.find("common:checksum", NS)
        loc = p.find("common:location", NS)
        size = p.find("common:size", NS)
        if v is None or cs is None or loc is None or size is None:
            continue
        if cs.get("type") != "sha256":
            raise GapcacheError(f"primary: {p.findtext('common:name', '', NS)} has a {cs.get('type')} checksum")
        epoch = v.get("epoch") or "0"
        evr = f"{epoch}:{v.get('ver')}-{v.get('rel')}" if epoch != "0" else f"{v.get('ver')}-{v.get('rel')}"
        pkgs.append(Pkg(str(p.findtext("common:name", "", NS)), str(p.findtext("common:arch", "", NS)), evr,
                        str(loc.get("href")), str(cs.text).strip(), int(size.get("package") or 0)))  # fmt: skip
    return pkgs


@dataclass
class RepoMeta:
    repo: YumRepo
    baseurl: str
    repomd: bytes
    signature: bytes | None
    keys: list[tuple[str, bytes]]
    files: dict[str, tuple[str, str, int | None]]
    primary: bytes
    packages: list[Pkg]
    comps: bytes | None = None
    modules: bytes | None = None


async def candidate_baseurls(repo: YumRepo, ctx: ResolveContext) -> list[str]:
    """The baseurl, or the mirrors a mirrorlist (one URL per line) or metalink (XML) names."""
    if repo.baseurl:
        return [repo.baseurl.rstrip("/") + "/"]
    if repo.mirrorlist:
        text = (await ctx.downloader.get_bytes(repo.mirrorlist, max_size=1 << 20)).decode(errors="replace")
        urls = [line.strip() for line in text.splitlines() if line.strip().startswith(("http://", "https://"))]
    else:
        assert repo.metalink is not None
        root = ET.fromstring(await ctx.downloader.get_bytes(repo.metalink, max_size=4 << 20))
        urls = [
            (u.text or "").strip().removesuffix("repodata/repomd.xml")
            for u in root.iter()
            if u.tag.endswith("}url") and (u.text or "").strip().startswith(("http://", "https://"))
        ]
    if not urls:
        raise GapcacheError(f"{repo.id}: the {'mirrorlist' if repo.mirrorlist else 'metalink'} names no mirror")
    return [u.rstrip("/") + "/" for u in urls]


async def fetch_repo_meta(repo: YumRepo, ctx: ResolveContext) -> RepoMeta:
    dl = ctx.downloader
    repomd = b""
    errors = []
    for base in await candidate_baseurls(repo, ctx):
        try:
            repomd = await dl.get_bytes(base + "repodata/repomd.xml", max_size=16 << 20)
            break
        except GapcacheError as exc:
            errors.append(str(exc))
    else:
        raise GapcacheError(f"{repo.id}: no mirror answered: {'; '.join(errors)}")
    keys = []
    for url in repo.gpgkey:
        keys.append((url.rstrip("/").rsplit("/", 1)[-1], await dl.get_bytes(url, max_size=1 << 20)))
    signature = None
    try:
        signature = await dl.get_bytes(base + "repodata/repomd.xml.asc", max_size=1 << 20)
    except HTTPStatusError as exc:
        if exc.status != 404:
            raise
    if signature is not None:
        if not keys:
            raise GapcacheError(f"{repo.id}: repomd.xml is signed but the repo lists no gpgkey")
        await asyncio.to_thread(verify_signature, repomd, signature, [k for _, k in keys], f"{repo.id} repomd.xml")
    files = parse_repomd(repomd)
    if "primary" not in files:
        raise GapcacheError(f"{repo.id}: repomd.xml has no primary metadata")
    primary = await fetch_checked(dl, base, files["primary"], repo.id)
    comps = await fetch_checked(dl, base, files["group"], repo.id) if "group" in files else None
    modules = None
    if "modules" in files and repo.mode == "packages":
        modules = decompress(await fetch_checked(dl, base, files["modules"], repo.id), files["modules"][0])
    pkgs = [p for p in parse_primary(primary) if p.arch in repo.arch]
    return RepoMeta(repo, base, repomd, signature, keys, files, primary, pkgs, comps, modules)


async def fetch_checked(dl: Any, base: str, entry: tuple[str, str, int | None], repo_id: str) -> bytes:
    href, sha, _ = entry
    data: bytes = await dl.get_bytes(base + href, max_size=1 << 30)
    if _sha256(data) != f"sha256:{sha}":
        raise GapcacheError(f"{repo_id}: {href} does not match its checksum in repomd.xml")
    return data


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


def solve_closure(metas: dict[str, RepoMeta], repo: YumRepo, scratch: Path) -> list[Pkg]:
    """The packages of ``repo`` needed to install ``repo.packages`` (libsolv), newest versions."""
    import solv

    pool = solv.Pool()
    arch = next((a for a in repo.arch if a != "noarch"), "x86_64")
    pool.setarch(arch)
    by_solvable: dict[str, Pkg] = {}
    installed = None
    for rid in [repo.id, *repo.base]:
        meta = metas.get(rid)
        if meta is None:
            raise GapcacheError(f"{repo.id}: base repo {rid!r} is not in the manifest")
        path = scratch / f"{rid}-primary.xml.gz"
        path.write_bytes(meta.primary)
        r = pool.add_repo(rid)
        r.add_rpmmd(solv.xfopen(str(path)), None)
        if rid != repo.id:
            installed = r
        for s in r.solvables:
            match = [p for p in meta.packages if p.name == s.name and p.arch == s.arch and p.evr == s.evr]
            if match and rid == repo.id:
                by_solvable[f"{s.name}-{s.evr}.{s.arch}"] = match[0]
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
        key = f"{s.name}-{s.evr}.{s.arch}"
        if s.repo.name == repo.id and key in by_solvable:
            chosen.append(by_solvable[key])
    return sorted(chosen, key=lambda p: p.href)


class RpmKind:
    name = "rpm"
    listener = "repos"

    async def resolve(self, section: list[YumRepo], ctx: ResolveContext) -> list[Item]:
        metas: dict[str, RepoMeta] = {}
        for repo in section:
            try:
                metas[repo.id] = await fetch_repo_meta(repo, ctx)
            except (GapcacheError, ET.ParseError, OSError) as exc:
                ctx.failures.append(Failure.of(self.name, repo.id, str(exc)))
        items = []
        for repo in section:
            meta = metas.get(repo.id)
            if meta is None:
                continue
            try:
                items.append(self._item(meta, metas, ctx))
            except (GapcacheError, ET.ParseError, OSError) as exc:
                ctx.failures.append(Failure.of(self.name, repo.id, str(exc)))
        return items

    def _item(self, meta: RepoMeta, metas: dict[str, RepoMeta], ctx: ResolveContext) -> Item:
        repo = meta.repo
        arts: list[Artifact] = []
        keys = [f"yum/gpgkeys/{name}" for name, _ in meta.keys]
        for (name, data), path in zip(meta.keys, keys, strict=True):
            digest = ctx.keep(data)
            arts.append(Artifact(path=path, source=next(u for u in repo.gpgkey if u.rstrip("/").endswith(name)),
                                 digest=digest, size=len(data), media_type="application/pgp-keys"))  # fmt: skip
        if repo.mode == "full":
            pkgs = meta.packages
            ctx.keep(meta.repomd)
            md_url = meta.baseurl + "repodata/repomd.xml"
            arts.append(Artifact(path=f"yum/{repo.id}/repodata/repomd.xml", source=md_url, digest=_sha256(meta.repomd),
                                 size=len(meta.repomd), media_type="application/xml"))  # fmt: skip
            if meta.signature is not None:
                ctx.keep(meta.signature)
                arts.append(Artifact(path=f"yum/{repo.id}/repodata/repomd.xml.asc",
                                     source=meta.baseurl + "repodata/repomd.xml.asc", digest=_sha256(meta.signature),
                                     size=len(meta.signature), media_type="application/pgp-signature"))  # fmt: skip
            for href, sha, size in meta.files.values():
                arts.append(Artifact(path=f"yum/{repo.id}/{href}", source=meta.baseurl + href, digest=f"sha256:{sha}",
                                     size=size, media_type="application/octet-stream"))  # fmt: skip
        else:
            with tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch:
                pkgs = solve_closure(metas, repo, Path(scratch))
            if not repo.newest_only:  # every version of what the closure needs
                wanted = {(p.name, p.arch) for p in pkgs}
                pkgs = sorted({*pkgs, *(p for p in meta.packages if (p.name, p.arch) in wanted)}, key=lambda p: p.href)
        for p in pkgs:
            arts.append(Artifact(path=f"yum/{repo.id}/{p.href}", source=meta.baseurl + p.href,
                                 digest=f"sha256:{p.sha256}", size=p.size, media_type="application/x-rpm"))  # fmt: skip
        resolved: dict[str, Any] = {
            "id": repo.id, "mode": repo.mode, "keys": [k.rsplit("/", 1)[-1] for k in keys],
            "packages": [f"{p.name}-{p.evr}.{p.arch}" for p in pkgs],
        }  # fmt: skip
        if repo.mode == "packages" and meta.modules is not None:
            modules = filter_modules(meta.modules, {f"{p.name}-{p.evr}.{p.arch}" for p in pkgs})
            if modules is not None:  # added to the new repodata by modifyrepo_c in publish
                resolved["modules"] = ctx.keep(modules)
        if repo.mode == "packages" and meta.comps is not None:
            comps = filter_comps(meta.comps, {p.name for p in pkgs})
            if comps is not None:  # kept in the store for publish; createrepo_c writes it into the repodata
                resolved["comps"] = ctx.keep(comps)
        request = repo.model_dump(exclude_none=True)
        return Item(kind=self.name, name=repo.id, request=request, resolved=resolved, artifacts=arts)

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        """A subset gets repodata from createrepo_c, its repomd.xml signed with the site key."""
        out = []
        for item in items:
            if item.resolved.get("mode") != "packages":
                out.append(item)
                continue
            try:
                out.append(publish_subset(item, store))
            except (subprocess.CalledProcessError, OSError) as exc:
                detail = (
                    exc.stderr.decode(errors="replace").strip()
                    if isinstance(exc, subprocess.CalledProcessError)
                    else ""
                )
                raise GapcacheError(f"{item.name}: cannot generate repodata: {exc} {detail}") from exc
        return out

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .serve import YumRepos

        return YumRepos(items, blobs, public_url).handle


def site_keyring() -> Path:
    """The site signing key's GnuPG home (``$XDG_CONFIG_HOME/gapcache/keys/gnupg``), created once."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "gapcache" / "keys" / "gnupg"
    if not (base / "pubring.kbx").exists():
        with gnupg_home(base, write_back=True) as env:
            subprocess.run(
                ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                 "gapcache site key <gapcache@localhost>", "rsa3072", "sign", "never"],
                env=env, capture_output=True, check=True,
            )  # fmt: skip
    return base


@contextlib.contextmanager
def gnupg_home(source: Path | None, write_back: bool = False) -> Iterator[dict[str, str]]:
    """Run gpg on a copy of ``source`` in a short temporary home (gpg-agent's socket path must fit
    in 108 bytes, which a deep config directory does not); copy changes back when asked."""
    tmp = Path(tempfile.mkdtemp(prefix="gcg.", dir="/tmp"))
    try:
        if source is not None and source.is_dir():
            shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("S.*"))
        os.chmod(tmp, 0o700)
        env = {**os.environ, "GNUPGHOME": str(tmp)}
        yield env
        if write_back and source is not None:
            source.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copytree(tmp, source, dirs_exist_ok=True, ignore=shutil.ignore_patterns("S.*"))
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(tmp)},
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


def publish_subset(item: Item, store: Store) -> Item:
    repo_id = str(item.resolved["id"])
    prefix = f"yum/{repo_id}/"
    keep = [a for a in item.artifacts if a.source != GENERATED]
    with tempfile.TemporaryDirectory(prefix="gapcache-createrepo-") as tmp:
        root = Path(tmp) / "repo"
        for a in keep:
            if a.path.startswith(prefix) and a.path.endswith(".rpm") and a.digest:
                target = root / a.path[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(store.path(a.digest), target)
                os.utime(target, (0, 0))  # primary records file times: keep the output reproducible
        cmd = ["createrepo_c", "--quiet", "--no-database", "--revision", "0", "--set-timestamp-to-revision",
               "--simple-md-filenames"]  # fmt: skip
        if item.resolved.get("comps"):
            groupfile = Path(tmp) / "comps.xml"
            groupfile.write_bytes(store.path(str(item.resolved["comps"])).read_bytes())
            cmd += ["--groupfile", str(groupfile)]
        subprocess.run([*cmd, str(root)], check=True, capture_output=True)
        if item.resolved.get("modules"):
            modfile = Path(tmp) / "modules.yaml"
            modfile.write_bytes(store.path(str(item.resolved["modules"])).read_bytes())
            subprocess.run(["modifyrepo_c", "--mdtype=modules", "--simple-md-filenames", str(modfile),
                            str(root / "repodata")], check=True, capture_output=True)  # fmt: skip
            # modifyrepo_c stamps its record with the current time; createrepo_c's are all 0 (--revision 0)
            md = root / "repodata/repomd.xml"
            md.write_text(re.sub(r"<timestamp>\d+</timestamp>", "<timestamp>0</timestamp>", md.read_text()))
        with gnupg_home(site_keyring()) as env:
            repomd = root / "repodata/repomd.xml"
            # sign "at" the key's creation time: the same repodata and key give the same signature bytes
            listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env,
                                     capture_output=True, text=True, check=True).stdout  # fmt: skip
            created = next(line.split(":")[5] for line in listing.splitlines() if line.startswith("sec:"))
            subprocess.run(["gpg", "--batch", "--yes", "--faked-system-time", f"{created}!", "--detach-sign",
                            "--armor", str(repomd)], env=env, capture_output=True, check=True)  # fmt: skip
            pub = subprocess.run(
                ["gpg", "--batch", "--export", "--armor"], env=env, capture_output=True, check=True
            ).stdout
        generated = []
        for f in sorted((root / "repodata").iterdir()):
            data = f.read_bytes()
            generated.append(Artifact(path=f"{prefix}repodata/{f.name}", source=GENERATED, digest=store.put_bytes(data),
                                      size=len(data), media_type="application/octet-stream"))  # fmt: skip
        generated.append(Artifact(path=f"yum/gpgkeys/{SITE_KEY_NAME}", source=GENERATED, digest=store.put_bytes(pub),
                                  size=len(pub), media_type="application/pgp-keys"))  # fmt: skip
    keys = [*item.resolved.get("keys", []), SITE_KEY_NAME]
    return item.model_copy(update={"artifacts": keep + generated, "resolved": {**item.resolved, "keys": keys}})

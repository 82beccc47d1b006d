"""Self-bootstrap: every archive carries gapcache itself, so a bare offline host can install it.

Not a manifest section: ``gapcache build`` adds one item (kind ``bootstrap``, name ``gapcache``) from
its options (``--bootstrap-python 3.10,3.11,3.12 --bootstrap-platform x86_64,aarch64``, the default;
``--no-bootstrap``). Its artifacts, artifacts of the lock like any other:

- ``bootstrap/<wheel>``: the wheels of what the offline side needs (load, serve, vars: gapcache's own
  requirements without extras, taken from its installed metadata) for every (Python, platform)
  target, resolved like the ``python`` kind does (uv for the other targets, files and sha256 from
  the index; sdists never), plus pip's wheel;
- ``bootstrap/gapcache-<version>-py3-none-any.whl``: generated from the installed package
  (:mod:`.wheel`, deterministic);
- ``install.sh``: generated from the template beside this module (POSIX sh).

The archive stores these under their own names right after the lock (``archive.pack``), so on the
offline host ``tar -xf ARCHIVE install.sh && sh install.sh ARCHIVE`` needs nothing but tar and a
Python >= 3.10. Served on the files listener at ``/install.sh`` and ``/bootstrap/`` (other hosts:
``pip install --no-index --find-links http://MIRROR:8004/bootstrap/ gapcache``).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement
from pydantic import BaseModel, ConfigDict, field_validator

from ...blobs import BlobIndex, Handler
from ...errors import GapcacheError
from ...lock import GENERATED, Artifact, Item
from ...manifest.python import PythonSection, Target
from ...store import Store
from ..base import ResolveContext
from ..python import PythonKind
from . import wheel

# RHEL 9's python3.11 (and 3.9, too old), Ubuntu 22.04's 3.10, Ubuntu 24.04's 3.12
DEFAULT_PYTHONS = ["3.10", "3.11", "3.12"]
DEFAULT_PLATFORMS = ["x86_64", "aarch64"]
GLIBC = "manylinux_2_34"  # the oldest glibc among them: RHEL 9 (2.34); Ubuntu 22.04 2.35, 24.04 2.39
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
INSTALL_SH = "install.sh"
TEMPLATE = Path(__file__).with_name("install.sh")


class BootstrapOptions(BaseModel):
    """What ``gapcache build`` bootstraps: the offline hosts' Pythons and CPUs."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    pythons: list[str] = DEFAULT_PYTHONS
    platforms: list[str] = DEFAULT_PLATFORMS
    index_url: str | None = None  # default: the index pip on this host is configured with

    @field_validator("pythons")
    @classmethod
    def _pythons(cls, v: list[str]) -> list[str]:
        for py in v:
            parts = py.split(".")
            if len(parts) != 2 or not all(p.isdigit() for p in parts) or (int(parts[0]), int(parts[1])) < (3, 10):
                raise ValueError(f"bootstrap python {py!r}: expected 3.N with N >= 10 (gapcache needs Python >= 3.10)")
        if not v:
            raise ValueError("no bootstrap python given")
        return sorted(set(v), key=lambda p: tuple(int(x) for x in p.split(".")))

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if p not in ARCHES]
        if bad:
            raise ValueError(f"bootstrap platform {bad[0]!r}: expected x86_64 or aarch64")
        if not v:
            raise ValueError("no bootstrap platform given")
        return sorted({ARCHES[p] for p in v})

    def targets(self) -> list[Target]:
        return [Target(python=py, platform=f"{GLIBC}_{arch}") for py in self.pythons for arch in self.platforms]

    def pairs(self) -> list[str]:
        """``PYTHON:ARCH`` for each target (what install.sh matches the host against)."""
        return [f"{py}:{arch}" for py in self.pythons for arch in self.platforms]


def core_requirements() -> list[str]:
    """gapcache's own requirements without extras (what load, serve and vars need), from its metadata."""
    reqs = importlib.metadata.requires("gapcache") or []
    return [r for r in reqs if Requirement(r).marker is None or "extra" not in str(Requirement(r).marker)]


def render_install_sh(version: str, pairs: list[str]) -> bytes:
    text = TEMPLATE.read_text()
    return text.replace("@VERSION@", version).replace("@TARGETS@", " ".join(pairs)).encode()


class BootstrapKind:
    name = "bootstrap"
    listener = "files"

    async def resolve(self, section: BootstrapOptions | None, ctx: ResolveContext) -> list[Item]:
        if section is None:
            return []
        scratch = ctx.scratch / "bootstrap"
        scratch.mkdir(exist_ok=True)
        sub = ResolveContext(downloader=ctx.downloader, scratch=scratch, probe_sizes=ctx.probe_sizes)
        reqs = core_requirements()
        python = PythonSection(
            requirements=reqs, targets=section.targets(), sdists="never", index_url=section.index_url
        )
        resolved = await PythonKind(extra=["pip"]).resolve(python, sub)
        for f in sub.failures:  # named as the bootstrap's: `python pydantic-core==…: no file for …`
            ctx.fail(self.name, "gapcache", f"{f.item}: {f.reason}")
        if sub.failures:
            return []
        version = wheel.version()
        arts: dict[str, Artifact] = {}
        files: dict[str, dict[str, object]] = {}
        for item in resolved:
            for a in item.artifacts:
                if not a.path.endswith(".whl"):
                    continue  # PEP 658 .metadata: pip --find-links reads the wheels
                fname = a.path.rsplit("/", 1)[-1]
                arts[fname] = a.model_copy(update={"path": f"bootstrap/{fname}"})
                files[fname] = {"project": item.resolved["project"], "version": item.resolved["version"]}
        gapcache_whl = wheel.wheel_name(version)
        arts[gapcache_whl] = Artifact(path=f"bootstrap/{gapcache_whl}", source=GENERATED, media_type="application/zip")
        arts[INSTALL_SH] = Artifact(path=INSTALL_SH, source=GENERATED, media_type="text/x-shellscript")
        projects = sorted({str(v["project"]) for v in files.values()})
        return [
            Item(
                kind=self.name,
                name="gapcache",
                request={"pythons": section.pythons, "platforms": section.platforms},
                resolved={
                    "version": version,
                    "requirements": reqs,
                    "targets": section.pairs(),
                    "projects": projects,
                    "files": dict(sorted(files.items())),
                },
                artifacts=list(arts.values()),
            )
        ]

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        """Generate gapcache's wheel and install.sh (the same bytes for the same gapcache and targets)."""
        out = []
        for item in items:
            version = str(item.resolved["version"])
            if version != wheel.version():
                raise GapcacheError(
                    f"the lock bootstraps gapcache {version}, this is gapcache {wheel.version()}: "
                    "build with that version, or without --locked"
                )
            name, data = wheel.build_wheel()
            generated = {
                f"bootstrap/{name}": data,
                INSTALL_SH: render_install_sh(version, [str(p) for p in item.resolved["targets"]]),
            }
            arts = []
            for a in item.artifacts:
                if a.source == GENERATED and a.path in generated:
                    body = generated[a.path]
                    a = a.model_copy(update={"digest": store.put_bytes(body), "size": len(body)})
                arts.append(a)
            out.append(item.model_copy(update={"artifacts": arts}))
        return out

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from ...filetree import FilesTree

        return FilesTree(items, blobs, prefix="").handle


def summary(item: Item) -> str:
    """One line for the build report and ``ls``: version, targets, wheel count."""
    wheels = sum(1 for a in item.artifacts if a.path.endswith(".whl"))
    targets = ", ".join(str(t).replace(":", " on ") for t in item.resolved.get("targets", []))
    return f"gapcache {item.resolved.get('version')} for Python {targets} ({wheels} wheels, install.sh)"

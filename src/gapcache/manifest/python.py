"""The ``python:`` section: requirements resolved for the nodes' Pythons and CPUs (targets)."""

from __future__ import annotations

import re
from typing import Literal

from packaging.tags import Tag, compatible_tags, cpython_tags
from pydantic import BaseModel, ConfigDict, field_validator

PLATFORM_RE = re.compile(r"^(manylinux2014|manylinux_2_(\d+))_(x86_64|aarch64)$")


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str
    platform: str
    implementation: str = "cp"

    @field_validator("python")
    @classmethod
    def _python(cls, v: str) -> str:
        if not re.fullmatch(r"3\.\d{1,2}", v):
            raise ValueError(f"python {v!r}: expected 3.N (e.g. 3.10)")
        return v

    @field_validator("platform")
    @classmethod
    def _platform(cls, v: str) -> str:
        if not PLATFORM_RE.match(v):
            raise ValueError(f"platform {v!r}: expected manylinux_2_NN_<x86_64|aarch64> or manylinux2014_<arch>")
        return v

    @field_validator("implementation")
    @classmethod
    def _impl(cls, v: str) -> str:
        if v != "cp":
            raise ValueError("only CPython (cp) targets are supported")
        return v

    def label(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.platform}"

    def uv_platform(self) -> str:
        m = PLATFORM_RE.match(self.platform)
        assert m is not None
        return f"{m.group(3)}-{m.group(1)}"

    def tags(self) -> list[Tag]:
        """Every wheel tag this target accepts, best first."""
        m = PLATFORM_RE.match(self.platform)
        assert m is not None
        arch = m.group(3)
        glibc = 17 if m.group(1) == "manylinux2014" else int(m.group(2))
        plats = []
        for minor in range(glibc, 4, -1):
            plats.append(f"manylinux_2_{minor}_{arch}")
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}.get(minor)
            if legacy:
                plats.append(f"{legacy}_{arch}")
        version = tuple(int(x) for x in self.python.split("."))
        interp = f"cp{self.python.replace('.', '')}"
        return [*cpython_tags(version, platforms=plats), *compatible_tags(version, interp, plats)]


# Ubuntu 22.04 (3.10), Ubuntu 24.04 (3.12), RHEL 9 (3.9 and the python3.11 package), x86_64 and aarch64
DEFAULT_TARGETS = [
    Target(python=py, platform=f"manylinux_2_28_{arch}")
    for py in ("3.9", "3.10", "3.11", "3.12")
    for arch in ("x86_64", "aarch64")
]


class PythonSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requirements: list[str] = []
    requirements_files: list[str] = []
    targets: list[Target] = DEFAULT_TARGETS
    sdists: Literal["allow", "never"] = "allow"
    index_url: str | None = None

    @field_validator("requirements")
    @classmethod
    def _reqs(cls, v: list[str]) -> list[str]:
        from packaging.requirements import InvalidRequirement, Requirement

        for r in v:
            try:
                Requirement(r)
            except InvalidRequirement as exc:
                raise ValueError(f"{r!r}: {exc}") from exc
        return v

"""The ``galaxy:`` section: Ansible collections (with their dependencies) and roles.

galaxy:
  requirements: roles/requirements.yml     # ansible-galaxy's own file (relative to the manifest)
  collections:                             # and/or inline, in the same format
    - {name: community.general, version: ">=7.0.0,<8.0.0"}
    - ansible.posix                        # any version: the newest
  roles:
    - {src: geerlingguy.ntp, version: 2.3.3}
    - {src: https://github.com/NVIDIA/ansible-role-nvidia-driver, version: v2.3.0, name: nvidia.nvidia_driver}
  server: https://galaxy.ansible.com/       # the default; a Galaxy NG / Automation Hub URL works too
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

COLLECTION_NAME = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$", re.IGNORECASE)
_SPEC = re.compile(r"^\s*(==|!=|>=|<=|>|<|=)?\s*v?(\d+(?:\.\d+){0,2}(?:[-+][0-9A-Za-z.+-]*)?)\s*$")


def check_version_spec(spec: str) -> str:
    """``*``, ``1.2.3`` or comma-separated ``OP VERSION`` clauses (ansible-galaxy's syntax)."""
    if spec.strip() in ("*", ""):
        return "*"
    for clause in spec.split(","):
        if not _SPEC.match(clause):
            raise ValueError(f"version {spec!r}: expected '*', '1.2.3' or clauses like '>=1.0.0,<2.0.0'")
    return spec.strip()


class CollectionReq(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # requirements.yml may carry more (signatures…)

    name: str
    version: str = "*"
    source: str | None = None  # another Galaxy server for this one
    type: str = "galaxy"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not COLLECTION_NAME.match(v):
            raise ValueError(f"{v!r} is not a collection name (namespace.name)")
        return v

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: object) -> str:
        return check_version_spec(str(v) if v is not None else "*")

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v != "galaxy":
            raise ValueError(f"collection type {v!r}: only Galaxy collections are mirrored")
        return v


class RoleReq(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    src: str
    version: str | None = None
    name: str | None = None
    scm: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        if isinstance(v, str):  # "src[,version[,name]]"
            parts = [p.strip() for p in v.split(",")]
            return {k: p for k, p in zip(("src", "version", "name"), parts[:3], strict=False) if p}
        if isinstance(v, dict) and "role" in v and "src" not in v:
            return {**v, "src": v["role"]}
        if isinstance(v, dict) and v.get("version") is not None:
            return {**v, "version": str(v["version"])}
        return v

    def kind(self) -> str:
        """``galaxy`` (owner.name from the Galaxy API), ``git`` or ``url`` (a tarball)."""
        src = self.src
        if self.scm == "git" or src.startswith("git+"):
            return "git"
        if "://" not in src:
            return "galaxy"
        if "github.com" in src and not src.endswith((".tar.gz", ".tgz")):
            return "git"  # what ansible-galaxy does with such a src
        return "url"

    def url(self) -> str:
        return self.src.removeprefix("git+")

    def role_name(self) -> str:
        if self.name:
            return self.name
        if self.kind() == "galaxy":
            return self.src
        base = self.url().rstrip("/").rsplit("/", 1)[-1]
        for suffix in (".git", ".tar.gz", ".tgz", ".tar"):
            base = base.removesuffix(suffix)
        return base.split(",")[0]


class GalaxySection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requirements: str | None = None  # made absolute (relative to the manifest) when the manifest is read
    collections: list[CollectionReq] = []
    roles: list[RoleReq] = []
    server: str = "https://galaxy.ansible.com/"

    @field_validator("collections", mode="before")
    @classmethod
    def _collections(cls, v: object) -> object:
        return coerce_collections(v)

    @field_validator("server")
    @classmethod
    def _server(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"server {v!r}: expected an http(s) URL")
        return v if v.endswith("/") else v + "/"


def coerce_collections(v: object) -> object:
    """``name`` or ``name:version`` strings as ansible-galaxy accepts them → mappings."""
    if not isinstance(v, list):
        return v
    out: list[object] = []
    for c in v:
        if isinstance(c, str):
            name, _, version = c.partition(":")
            out.append({"name": name.strip(), "version": version.strip() or "*"})
        else:
            out.append(c)
    return out

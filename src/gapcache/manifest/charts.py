"""The ``charts:`` section (and the top-level ``images_discover`` / ``images_exclude``).

::

    charts:
      - repo: https://helm.ngc.nvidia.com/nvidia     # a classic chart repository (index.yaml)
        name: gpu-operator
        version: v24.9.0                             # exact, or a range as Helm reads it: ~24.9, ^24, ">=24.3 <25"
        images: discover                             # add the images it runs to what is mirrored
        values: {driver: {enabled: false}}           # optional: values used when discovering
      - ref: oci://registry-1.docker.io/bitnamicharts/redis   # an OCI chart
        version: 19.x
    images_discover: false      # the default of every chart's ``images:`` (discover / none)
    images_exclude:             # discovered references never mirrored: references or fnmatch
      - docker.io/library/busybox:1.36                        # patterns (quay.io/prometheus/*)

Credentials for chart repositories and OCI registries are the registries' (basic auth per host,
``~/.docker/config.json``, ``--registry-auth``); ``registries: {host: {insecure: true}}`` makes an
OCI chart registry plain HTTP.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from .images import RegistryConfig


class ChartEntry(BaseModel):
    """One chart: ``repo`` + ``name`` (a classic repository) or ``ref`` (``oci://host/path/name``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str | None = None
    name: str | None = None
    ref: str | None = None
    version: str = ""  # exact or a semver range (checked when resolving); "" = the latest release
    images: Literal["discover", "none"] | None = None  # None: the global images_discover
    values: dict[str, Any] = {}

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: object) -> object:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)  # `version: 1.2` in YAML is a float; Helm reads the text
        return v

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("https://", "http://")):
            raise ValueError(f"repo {v!r}: expected an http(s) URL (OCI charts: ref: oci://host/path/name)")
        return v.rstrip("/") if v else v

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith("oci://") or v.count("/") < 3:
            raise ValueError(f"ref {v!r}: expected oci://host/path/name")
        from ..names import parse_ref

        rest = v[len("oci://") :]
        if "@" in rest or ":" in rest.rsplit("/", 1)[-1]:
            raise ValueError(f"ref {v!r}: give the version with version:, not in the reference")
        parse_ref(rest + ":x")  # a valid repository name
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ChartEntry:
        if self.ref is not None:
            if self.repo is not None or self.name is not None:
                raise ValueError("give either ref: oci://… or repo: + name:, not both")
        elif self.repo is None or not self.name:
            raise ValueError("a chart needs repo: and name: (or ref: oci://host/path/name)")
        return self

    def label(self) -> str:
        where = self.ref if self.ref else f"{self.repo} {self.name}"
        return f"{where} {self.version or '(latest)'}"


class ChartsSection(BaseModel):
    """What the chart kind resolves: the entries, the discovery settings, the registries' settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    charts: list[ChartEntry] = []
    images_discover: bool = False
    images_exclude: list[str] = []
    registries: dict[str, RegistryConfig] = {}

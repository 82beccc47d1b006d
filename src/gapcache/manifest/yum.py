"""The ``yum:`` section: RPM repositories, whole (``mode: full``) or a dependency-closed subset."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..names import check_repo_id


class YumRepo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    baseurl: str | None = None
    mirrorlist: str | None = None
    metalink: str | None = None
    gpgkey: list[str] = []
    arch: list[str] = ["x86_64", "noarch"]
    mode: Literal["full", "packages"] = "full"
    packages: list[str] = []
    newest_only: bool = True
    base: list[str] = []
    # false: fetch the metadata only, to be a `base:` of another repo's closure (the OS media the
    # nodes already have); nothing of it goes into the archive
    mirror: bool = True
    # dnf's option: with gpgkey given, repomd.xml must be signed (repomd.xml.asc) unless this is false
    repo_gpgcheck: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_repo_id(v)

    @field_validator("baseurl", "mirrorlist", "metalink")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://", "file://")):
            raise ValueError("must be an http(s):// or file:// URL")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> YumRepo:
        if sum(x is not None for x in (self.baseurl, self.mirrorlist, self.metalink)) != 1:
            raise ValueError("give exactly one of baseurl, mirrorlist, metalink")
        return self

"""The ``apt:`` section: Debian/Ubuntu repositories, whole (``mode: full``) or a dependency-closed
subset (``mode: packages``).

    apt:
      - id: ubuntu-jammy
        url: http://archive.ubuntu.com/ubuntu
        urls: {arm64: http://ports.ubuntu.com/ubuntu-ports}   # an arch from another archive
        suites: [jammy, jammy-updates]                         # or "/" (or "DIR/"): a flat repo
        components: [main, universe]                           # not for a flat repo
        architectures: [amd64, arm64]
        keyring: /usr/share/keyrings/ubuntu-archive-keyring.gpg   # or a URL; armored or binary
        mode: packages
        packages: [jq, "curl=7.81.0-1ubuntu1.16"]
        recommends: false
        base: [libc6]                                          # counted as installed
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator, model_validator

from ..names import check_repo_id

ARCH = re.compile(r"^[a-z0-9][a-z0-9-]*$")
WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")
PACKAGE = re.compile(r"^[a-z0-9][a-z0-9.+-]*[a-z0-9.+](:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$")


def _is_url(v: str) -> bool:
    return v.startswith(("http://", "https://"))


class AptRepo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, AfterValidator(check_repo_id)]
    url: str
    urls: dict[str, str] = {}  # architecture → another archive's URL (Ubuntu's ports)
    suites: list[str]
    components: list[str] = []
    architectures: list[str] = ["amd64"]
    keyring: str | None = None  # a path or an http(s) URL; armored or binary
    mode: Literal["full", "packages"] = "full"
    packages: list[str] = []
    recommends: bool = False
    base: list[str] = []  # package names (or name=version) that count as installed
    trusted: bool = False  # mirror even if the Release signature is missing or bad

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _is_url(v):
            raise ValueError("must be an http(s):// URL")
        return v.rstrip("/") + "/"

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: dict[str, str]) -> dict[str, str]:
        for arch, url in v.items():
            if not _is_url(url):
                raise ValueError(f"{arch}: must be an http(s):// URL")
        return {a: u.rstrip("/") + "/" for a, u in v.items()}

    @field_validator("suites", mode="before")
    @classmethod
    def _suites(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("suites")
    @classmethod
    def _suite_names(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError('give at least one suite (or "/" for a flat repository)')
        for s in v:
            flat = s.endswith("/")
            parts = [p for p in s.strip("/").split("/") if p not in ("", ".")]
            if (
                ".." in parts
                or (not flat and "/" in s)
                or not all(WORD.match(p) for p in parts)
                or (not flat and not parts)
            ):
                raise ValueError(f"{s!r}: a suite name, or a directory ending with '/' for a flat repository")
        if len({s.endswith("/") for s in v}) > 1:
            raise ValueError("flat (ending with '/') and suite names cannot be mixed in one repo")
        if len(set(v)) != len(v):
            raise ValueError("a suite is listed twice")
        return v

    @field_validator("components", "architectures")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        for w in v:
            if not ARCH.match(w):
                raise ValueError(f"{w!r}: lower-case letters, digits and '-' only")
        if len(set(v)) != len(v):
            raise ValueError("an entry is listed twice")
        return v

    @field_validator("packages", "base")
    @classmethod
    def _packages(cls, v: list[str]) -> list[str]:
        for p in v:
            if not PACKAGE.match(p):
                raise ValueError(f"{p!r}: not a package name (NAME, NAME=VERSION or NAME:ARCH)")
        return v

    @property
    def flat(self) -> bool:
        return self.suites[0].endswith("/")

    def url_for(self, arch: str) -> str:
        return self.urls.get(arch, self.url)

    @model_validator(mode="after")
    def _consistent(self) -> AptRepo:
        if self.flat and self.components:
            raise ValueError("a flat repository (suite ending with '/') takes no components")
        if not self.flat and not self.components:
            raise ValueError("components: give at least one (e.g. [main])")
        if not self.architectures:
            raise ValueError("architectures: give at least one")
        extra = sorted(set(self.urls) - set(self.architectures))
        if extra:
            raise ValueError(f"urls: {', '.join(extra)} is not in architectures")
        if self.mode == "packages" and not self.packages:
            raise ValueError("mode: packages needs a packages list")
        if self.mode == "full" and (self.packages or self.base):
            raise ValueError("packages and base are for mode: packages (mode: full mirrors every package)")
        if self.keyring is None and not self.trusted:
            raise ValueError("keyring: give the upstream's key (a path or URL), or set `trusted: true` to skip checks")
        return self

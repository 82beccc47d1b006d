"""The ``git:`` section: git repositories pinned to a commit, with their submodules.

    git:
      - url: https://github.com/NVIDIA/deepops.git
        ref: 23.08                # a branch, a tag, a full commit id, or HEAD (the default)
        submodules: true          # pin and carry every submodule, recursively (the default)

Each repository is served at ``/git/<host>/<path>.git`` on the files listener (the upstream host
and path kept, like every logical name).
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

from ..names import host_component

GIT_PREFIX = "git/"  # logical paths of repositories, served at /git/ on the files listener
_REF_BAD = re.compile(r"(\.\.|[\x00-\x20~^:?*\[\\]|@\{|//|^/|/$|\.lock$|^-)")


def check_git_url(url: str) -> str:
    """An http(s) URL naming a repository (what the mirror can stand in for)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"git URL {url!r}: scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"git URL {url!r} has no host")
    if not parts.path.strip("/"):
        raise ValueError(f"git URL {url!r} names no repository")
    if parts.query or parts.fragment or parts.username or re.search(r"\s", url):
        raise ValueError(f"git URL {url!r}: no query, fragment, credentials or whitespace")
    segments = parts.path.strip("/").split("/")
    if any(s in (".", "..") or not s for s in segments):
        raise ValueError(f"git URL {url!r}: an empty, '.' or '..' path segment")
    return url


def repo_name(url: str) -> str:
    """``https://github.com/NVIDIA/deepops`` → ``github.com/NVIDIA/deepops.git`` (the mirror's name
    for a repository: the host as in every logical name, the path with one ``.git``)."""
    path = urlsplit(url).path.strip("/").removesuffix(".git")
    return f"{host_component(url)}/{path}.git"


class GitEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, AfterValidator(check_git_url)]
    ref: str = "HEAD"
    submodules: bool = True

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        if not v or _REF_BAD.search(v):
            raise ValueError(f"{v!r} is not a valid branch, tag or commit name")
        return v


GitSection = list[GitEntry]

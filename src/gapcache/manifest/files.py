"""The ``files:`` section: plain files by URL, optionally pinned, placed under ``files/``."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..lock import share_fields_set
from ..names import FILES_PREFIX, HEX64, default_file_path


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    sha256: str | None = None
    path: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https", "file"):
            raise ValueError(f"scheme must be http, https or file, not {parts.scheme or 'none'!r}")
        if parts.scheme != "file" and not parts.hostname:
            raise ValueError("URL has no host")
        if not parts.path or parts.path.endswith("/"):
            raise ValueError("URL must name a file, not a directory")
        if re.search(r"\s", v):
            raise ValueError("URL contains whitespace")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.lower().removeprefix("sha256:")
        if not HEX64.match(v):
            raise ValueError("not 64 hex digits")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("/"):
            raise ValueError("must be relative (it is placed under the mirror's files tree)")
        return v

    @model_validator(mode="after")
    def _compact(self) -> FileEntry:
        share_fields_set(self)  # 100,000 entries: one set of field names, not one each
        return self

    def logical_path(self) -> str:
        return FILES_PREFIX + (self.path if self.path is not None else default_file_path(self.url))


FilesSection = list[FileEntry]

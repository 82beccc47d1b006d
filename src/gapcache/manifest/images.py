"""The ``images:`` section (with the top-level ``platforms:`` and ``registries:`` it uses)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from ..names import parse_ref, validate_platforms


class ImageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str
    platforms: list[str] | None = None

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        parse_ref(v)
        return v

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str] | None) -> list[str] | None:
        return validate_platforms(v) if v is not None else None


class RegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    insecure: bool = False  # plain HTTP


def coerce_images(v: Any) -> Any:
    if isinstance(v, list):
        return [{"ref": x} if isinstance(x, str) else x for x in v]
    return v


class ImagesSection(BaseModel):
    """What the image kind resolves: the entries, the default platforms and per-registry settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: list[ImageEntry] = []
    platforms: list[str] = ["linux/amd64"]
    registries: dict[str, RegistryConfig] = {}

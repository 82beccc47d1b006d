"""Every error gapcache raises, in one place.

    GapcacheError                 exit_code 1 unless a subclass says otherwise
    ├── UsageError                2  bad command line
    ├── ManifestError             2  the manifest is malformed (file, entry, what is wrong)
    ├── FormatError               2  a manifest, lock or archive of a newer/unknown format
    ├── EnvironmentProblem        3  the machine cannot do it
    │   └── DiskFull                 not enough free space (checked up front, or ENOSPC)
    ├── FetchError                1  one artifact could not be downloaded
    │   ├── HTTPStatusError          the upstream answered 4xx/5xx (after retries)
    │   └── DigestMismatch           the bytes do not hash to what was expected
    ├── ArchiveError              1  an archive is damaged or hostile
    │   └── UnsafeMember             a member that must never be extracted
    └── VerifyError               1  a blob at rest does not match its digest

The CLI prints ``str(error)``: one clear line naming the item.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """One item that could not be resolved, fetched or published: reported, never fatal to the others."""

    item: str  # "<kind> <name>", e.g. "image docker.io/library/ubuntu:22.04"
    reason: str

    @classmethod
    def of(cls, kind: str, name: str, reason: str) -> Failure:
        return cls(f"{kind} {name}", reason)


class GapcacheError(Exception):
    exit_code = 1


class UsageError(GapcacheError):
    exit_code = 2


class ManifestError(GapcacheError):
    exit_code = 2

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: invalid manifest ({len(problems)} problem(s)):\n{lines}")


class FormatError(GapcacheError):
    exit_code = 2


class EnvironmentProblem(GapcacheError):
    exit_code = 3


class DiskFull(EnvironmentProblem):
    def __init__(self, where: str, needed: int | None = None, free: int | None = None) -> None:
        self.where = where
        self.needed = needed
        self.free = free
        if needed is not None and free is not None:
            msg = f"not enough disk space in {where}: need {human_bytes(needed)}, {human_bytes(free)} free"
        else:
            msg = f"disk full while writing to {where}"
        super().__init__(msg)


class FetchError(GapcacheError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class HTTPStatusError(FetchError):
    def __init__(self, url: str, status: int, reason: str = "") -> None:
        self.status = status
        super().__init__(url, f"HTTP {status}{' ' + reason if reason else ''}")


class DigestMismatch(FetchError):
    def __init__(self, url: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(url, f"digest mismatch: expected {expected}, got {actual}")


class ArchiveError(GapcacheError):
    pass


class UnsafeMember(ArchiveError):
    def __init__(self, archive: str, member: str, why: str) -> None:
        self.member = member
        super().__init__(f"{archive}: refused member {member!r}: {why}")


class VerifyError(GapcacheError):
    pass


def describe(exc: BaseException) -> str:
    """One line for a failure: gapcache's own errors as they are, anything else with its type."""
    if isinstance(exc, GapcacheError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")

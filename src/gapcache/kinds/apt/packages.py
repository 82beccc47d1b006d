"""Packages indexes: records with the fields gapcache needs, and each stanza byte-exact.

Stanzas are split here (so ``raw`` is exactly the upstream bytes, ready to re-publish); field
values are read with deb822 rules (continuation lines start with a space or tab) and relation
fields are parsed by python-debian's ``PkgRelation`` on demand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from debian.deb822 import PkgRelation

from .errors import AptError

if TYPE_CHECKING:
    Relation = PkgRelation.ParsedRelation  # a TypedDict: name, archqual, version (op, ver), arch, restrictions

RELATION_FIELDS = ("Pre-Depends", "Depends", "Recommends", "Suggests", "Provides", "Conflicts", "Breaks", "Replaces")


@dataclass(frozen=True)
class PackageRecord:
    package: str
    version: str
    architecture: str
    filename: str  # relative to the repository root (suite layout) or the flat directory
    size: int
    sha256: str | None  # None when the index carries no SHA256 (old repositories)
    depends: str = ""
    pre_depends: str = ""
    recommends: str = ""
    provides: str = ""
    raw: bytes = b""  # the stanza byte-exact, ending with one newline, without the blank separator
    fields: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.package, self.version, self.architecture

    def relations(self, name: str) -> list[list[Relation]]:
        """A relation field parsed by python-debian: a list of alternatives lists, each alternative
        ``{"name", "version": (op, ver) | None, "arch", "archqual", …}``."""
        value = self.fields.get(name, "")
        return PkgRelation.parse_relations(value) if value else []

    def provided_names(self) -> list[str]:
        return [alt["name"] for group in self.relations("Provides") for alt in group]


def iter_stanzas(data: bytes) -> Iterator[bytes]:
    """The paragraphs of a deb822 file, byte-exact; blank (or whitespace-only) lines separate them."""
    current: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if not line.strip():
            if current:
                yield _terminated(b"".join(current))
                current = []
            continue
        current.append(line)
    if current:
        yield _terminated(b"".join(current))


def _terminated(stanza: bytes) -> bytes:
    return stanza if stanza.endswith(b"\n") else stanza + b"\n"


def parse_fields(stanza: bytes, what: str = "Packages") -> dict[str, str]:
    """``{field: value}`` of one paragraph; multi-line values keep their continuation lines joined by
    newlines (leading space kept, as deb822 has them)."""
    fields: dict[str, str] = {}
    last: str | None = None
    for line in stanza.decode("utf-8", errors="replace").splitlines():
        if line.startswith(("#",)):
            continue
        if line[:1] in (" ", "\t"):
            if last is None:
                raise AptError(f"{what}: continuation line before any field: {line[:60]!r}")
            fields[last] += "\n" + line
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name:
            raise AptError(f"{what}: malformed line {line[:60]!r}")
        last = name
        fields[name] = value.strip()
    return fields


def _record(stanza: bytes, what: str) -> PackageRecord:
    f = parse_fields(stanza, what)
    missing = [k for k in ("Package", "Version", "Architecture", "Filename") if not f.get(k)]
    if missing:
        head = stanza.split(b"\n", 1)[0].decode(errors="replace")
        raise AptError(f"{what}: stanza {head!r} lacks {', '.join(missing)}")
    try:
        size = int(f.get("Size", "0"))
    except ValueError as exc:
        raise AptError(f"{what}: {f['Package']} {f['Version']}: bad Size {f.get('Size')!r}") from exc
    return PackageRecord(
        package=f["Package"],
        version=f["Version"],
        architecture=f["Architecture"],
        filename=f["Filename"],
        size=size,
        sha256=f["SHA256"].lower() if f.get("SHA256") else None,
        depends=f.get("Depends", ""),
        pre_depends=f.get("Pre-Depends", ""),
        recommends=f.get("Recommends", ""),
        provides=f.get("Provides", ""),
        raw=stanza,
        fields=f,
    )


def parse_packages(data: bytes, what: str = "Packages") -> list[PackageRecord]:
    """Every record of an (uncompressed) Packages index, in file order. ``what`` names the index
    (repository and path) in errors."""
    return [_record(s, what) for s in iter_stanzas(data)]


def write_packages(records: Iterable[PackageRecord]) -> bytes:
    """A Packages index of ``records`` in the given order, each stanza byte-exact as upstream had it and
    followed by a blank line (as Debian and apt-ftparchive write them)."""
    return b"".join(r.raw + b"\n" for r in records)


def sort_records(records: Iterable[PackageRecord]) -> list[PackageRecord]:
    """A stable, reproducible order (name, architecture, version as text, filename); duplicates of
    the same (name, version, architecture, filename) kept once."""
    seen: dict[tuple[str, str, str, str], PackageRecord] = {}
    for r in records:
        seen.setdefault((r.package, r.architecture, r.version, r.filename), r)
    return [seen[k] for k in sorted(seen)]

"""Semantic versions and version constraints exactly as Helm reads them.

Helm uses Masterminds semver v3 (``NewVersion`` / ``NewConstraint``); this is a port of its
rules (v3.4), so a range in a manifest selects the same chart version ``helm pull --version``
would:

- versions are loose: a ``v`` prefix and missing minor/patch are accepted (``v1.2`` is 1.2.0);
  build metadata (``+build``) is ignored when comparing;
- ``1.2.3`` / ``=1.2.3`` exact; ``1.2`` / ``1.2.x`` / ``1.*`` wildcards (a missing part is a
  wildcard in a constraint); ``*`` anything;
- ``~1.2.3`` >=1.2.3 <1.3.0, ``~1.2`` >=1.2.0 <1.3.0, ``~1`` >=1.0.0 <2.0.0;
- ``^1.2.3`` >=1.2.3 <2.0.0, ``^0.2.3`` >=0.2.3 <0.3.0, ``^0.0.3`` =0.0.3, ``^0`` <1.0.0;
- ``>``, ``>=``/``=>``, ``<``, ``<=``/``=<``, ``!=``; ``>1.2`` means >=1.3.0 (the wildcard
  must be exceeded) and ``<=1.2`` means <1.3.0;
- ``1.2 - 1.4.5`` hyphen ranges (>=1.2 <=1.4.5); spaces or ``,`` join an AND group; ``||`` ORs
  groups;
- pre-releases (``1.2.3-rc.1``) match only when some constraint of the same AND group carries a
  pre-release (``>=1.2.3-0``), or when ``devel`` is asked (Helm's ``--devel``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ...errors import GapcacheError

__all__ = ["Constraint", "SemverError", "Version", "best_match", "matches", "parse_version", "sort_versions"]


class SemverError(GapcacheError, ValueError):
    """A version or constraint Helm would not parse (a manifest error: exit code 2)."""

    exit_code = 2


_LOOSE = re.compile(
    r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_IDENT = re.compile(r"[0-9A-Za-z\-]+")


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    major: int
    minor: int
    patch: int
    pre: str = ""
    meta: str = ""
    original: str = ""

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            s += "-" + self.pre
        if self.meta:
            s += "+" + self.meta
        return s

    def compare(self, other: Version) -> int:
        a = (self.major, self.minor, self.patch)
        b = (other.major, other.minor, other.patch)
        if a != b:
            return -1 if a < b else 1
        if self.pre == other.pre:
            return 0
        if not self.pre:
            return 1
        if not other.pre:
            return -1
        return _compare_pre(self.pre, other.pre)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.compare(other) == 0

    def __lt__(self, other: Version) -> bool:
        return self.compare(other) < 0

    def __hash__(self) -> int:
        return hash((self.major, self.minor, self.patch, self.pre))


def _compare_part(s: str, o: str) -> int:
    if s == o:
        return 0
    if not s:
        return -1
    if not o:
        return 1
    s_num, o_num = s.isdigit(), o.isdigit()
    if s_num and o_num:
        return (int(s) > int(o)) - (int(s) < int(o))
    if s_num:
        return -1  # numbers sort before identifiers
    if o_num:
        return 1
    return 1 if s > o else -1


def _compare_pre(a: str, b: str) -> int:
    pa, pb = a.split("."), b.split(".")
    for i in range(max(len(pa), len(pb))):
        d = _compare_part(pa[i] if i < len(pa) else "", pb[i] if i < len(pb) else "")
        if d:
            return d
    return 0


def parse_version(text: str) -> Version:
    """A version as Masterminds ``NewVersion`` reads it; :class:`SemverError` if it cannot."""
    m = _LOOSE.fullmatch(text)
    if m is None:
        raise SemverError(f"invalid semantic version: {text!r}")
    pre, meta = m.group(5) or "", m.group(8) or ""
    for part in pre.split(".") if pre else []:
        if part.isdigit() and len(part) > 1 and part[0] == "0":
            raise SemverError(f"invalid semantic version: {text!r} (pre-release segment starts with 0)")
    for part in meta.split(".") if meta else []:
        if not _IDENT.fullmatch(part):
            raise SemverError(f"invalid semantic version: {text!r} (bad metadata)")
    return Version(
        int(m.group(1)),
        int((m.group(2) or ".0")[1:]),
        int((m.group(3) or ".0")[1:]),
        pre,
        meta,
        text,
    )


def _try_version(text: str) -> Version | None:
    try:
        return parse_version(text)
    except SemverError:
        return None


# --- constraints ------------------------------------------------------------------------------

_CV = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_CV_NOGROUPS = re.sub(r"\((?!\?)", "(?:", _CV)
# Longest operators first: the same matches Go's leftmost-first alternation reaches by backtracking.
_OPS_ORDERED = r"!=|>=|=>|<=|=<|~>|=|>|<|~|\^"
_ONE = re.compile(rf"^\s*({_OPS_ORDERED}|)\s*({_CV})\s*$")
_FIND = re.compile(rf"(?:{_OPS_ORDERED}|)\s*{_CV_NOGROUPS}")
_VALID = re.compile(
    rf"^(\s*(?:{_OPS_ORDERED}|)\s*{_CV_NOGROUPS}\s*)((?:\s+|,\s*)(?:{_OPS_ORDERED}|)\s*{_CV_NOGROUPS}\s*)*$"
)
_RANGE = re.compile(rf"\s*({_CV_NOGROUPS})\s+-\s+({_CV_NOGROUPS})\s*")


def _is_x(s: str) -> bool:
    return s in ("x", "X", "*")


@dataclass(frozen=True)
class _Term:
    op: str
    con: Version
    orig: str
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool

    def check(self, v: Version, include_pre: bool) -> bool:
        if v.pre and not include_pre:
            return False
        return _CHECKS[self.op](v, self)


def _parse_term(text: str) -> _Term:
    m = _ONE.match(text)
    if m is None:
        raise SemverError(f"improper constraint: {text!r}")
    op, orig, major = m.group(1), m.group(2), m.group(3)
    minor, patch, pre = (m.group(4) or ""), (m.group(5) or ""), (m.group(6) or "")
    dirty = minor_dirty = patch_dirty = False
    if _is_x(major) or not major:
        ver, dirty = "0.0.0" + pre, True
    elif _is_x(minor[1:]) or not minor:
        ver, dirty, minor_dirty = f"{major}.0.0{pre}", True, True
    elif _is_x(patch[1:]) or not patch:
        ver, dirty, patch_dirty = f"{major}{minor}.0{pre}", True, True
    else:
        ver = f"{major}{minor}{patch}{pre}"
    con = _try_version(ver)
    if con is None:
        raise SemverError(f"improper constraint: {text!r}")
    return _Term(op, con, orig, dirty, minor_dirty, patch_dirty)


def _tilde(v: Version, c: _Term) -> bool:
    if v < c.con:
        return False
    if (c.con.major, c.con.minor, c.con.patch) == (0, 0, 0) and not c.minor_dirty and not c.patch_dirty:
        return True
    if v.major != c.con.major:
        return False
    return not (v.minor != c.con.minor and not c.minor_dirty)


def _tilde_or_equal(v: Version, c: _Term) -> bool:
    return _tilde(v, c) if c.dirty else v == c.con


def _not_equal(v: Version, c: _Term) -> bool:
    if c.dirty:
        if c.con.major != v.major:
            return True
        if c.con.minor != v.minor and not c.minor_dirty:
            return True
        if c.minor_dirty:
            return False
        if c.con.patch != v.patch and not c.patch_dirty:
            return True
        if c.patch_dirty:
            if v.pre or c.con.pre:
                return _compare_pre(v.pre, c.con.pre) != 0
            return False
    return v != c.con


def _greater(v: Version, c: _Term) -> bool:
    if not c.dirty:
        return v > c.con
    if v.major != c.con.major:
        return v.major > c.con.major
    if c.minor_dirty:
        return False
    if c.patch_dirty:
        return v.minor > c.con.minor
    return v > c.con


def _less_equal(v: Version, c: _Term) -> bool:
    if not c.dirty:
        return v <= c.con
    if v.major > c.con.major:
        return False
    return not (v.major == c.con.major and v.minor > c.con.minor and not c.minor_dirty)


def _caret(v: Version, c: _Term) -> bool:
    if v < c.con:
        return False
    if c.con.major > 0 or c.minor_dirty:
        return v.major == c.con.major
    if v.major > 0:
        return False
    if c.con.minor > 0 or c.patch_dirty:
        return v.minor == c.con.minor
    if v.minor > 0:
        return False
    return v.patch == c.con.patch


_CHECKS: dict[str, Callable[[Version, _Term], bool]] = {
    "": _tilde_or_equal,
    "=": _tilde_or_equal,
    "!=": _not_equal,
    ">": _greater,
    "<": lambda v, c: v < c.con,
    ">=": lambda v, c: v >= c.con,
    "=>": lambda v, c: v >= c.con,
    "<=": _less_equal,
    "=<": _less_equal,
    "~": _tilde,
    "~>": _tilde,
    "^": _caret,
}


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint: OR of AND groups (``Constraint.parse(">=1.2 <2 || ^3")``)."""

    text: str
    groups: tuple[tuple[_Term, ...], ...]
    group_has_pre: tuple[bool, ...]

    @classmethod
    def parse(cls, text: str) -> Constraint:
        rewritten = _RANGE.sub(lambda m: f">= {m.group(1)}, <= {m.group(2)} ", text)
        groups: list[tuple[_Term, ...]] = []
        has_pre: list[bool] = []
        for part in rewritten.split("||"):
            if not _VALID.match(part):
                raise SemverError(f"improper constraint: {text!r}")
            terms = tuple(_parse_term(t) for t in _FIND.findall(part))
            groups.append(terms)
            has_pre.append(any(t.con.pre for t in terms))
        return cls(text, tuple(groups), tuple(has_pre))

    def check(self, version: Version | str, *, devel: bool = False) -> bool:
        v = version if isinstance(version, Version) else _try_version(version)
        if v is None:
            return False
        return any(
            all(t.check(v, devel or pre) for t in group)
            for group, pre in zip(self.groups, self.group_has_pre, strict=True)
        )


def matches(constraint: str, version: str, *, devel: bool = False) -> bool:
    """Whether ``version`` satisfies ``constraint`` (an unparsable version never does)."""
    return Constraint.parse(constraint).check(version, devel=devel)


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Parsable versions, highest first (Helm's index order); unparsable ones are dropped."""
    parsed = [(v, p) for v in versions if (p := _try_version(v)) is not None]
    parsed.sort(key=lambda vp: vp[1], reverse=True)
    return [v for v, _ in parsed]


def best_match(constraint: str, versions: Iterable[str], *, devel: bool = False) -> str | None:
    """The highest of ``versions`` that satisfies ``constraint``, as Helm picks a chart version.

    Like Helm's index lookup: a version string equal to the constraint wins outright (so
    ``1.0.0+build`` or an odd version is still found by its exact spelling); an empty constraint
    means ``*`` (the latest release, pre-releases only with ``devel``). Raises
    :class:`SemverError` when the constraint cannot be parsed.
    """
    listed = list(versions)
    text = constraint.strip()
    if text and text in listed:
        return text
    c = Constraint.parse(text or "*")
    for v in sort_versions(listed):
        if c.check(v, devel=devel):
            return v
    return None

"""The ``apt:`` manifest section: what is accepted, and line-precise errors (exit 2)."""

from __future__ import annotations

import re

import pytest

from gapcache.errors import ManifestError
from gapcache.manifest import parse_manifest

KEY = "keyring: /usr/share/keyrings/debian-archive-keyring.gpg"


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as exc:
        parse_manifest(text, "m.yaml")
    return exc.value.problems


def test_suite_and_flat_repos_parse() -> None:
    m = parse_manifest(
        "format: 1\napt:\n"
        f"  - id: deb\n    url: http://deb.example/debian\n    suites: [bookworm, bookworm-updates]\n"
        f"    components: [main]\n    architectures: [amd64, arm64]\n    {KEY}\n"
        "    urls: {arm64: 'http://ports.example/debian/'}\n    mode: packages\n    packages: [jq, 'curl=7.88.1-10']\n"
        "    base: [libc6]\n    recommends: true\n"
        "  - id: cuda\n    url: https://cuda.example/repos/ubuntu2204/x86_64/\n    suites: /\n"
        "    keyring: https://cuda.example/repos/ubuntu2204/x86_64/3bf863cc.pub\n",
        "m.yaml",
    )
    deb, cuda = m.apt
    assert deb.url == "http://deb.example/debian/" and deb.url_for("arm64") == "http://ports.example/debian/"
    assert deb.url_for("amd64") == deb.url and not deb.flat and deb.recommends
    assert cuda.suites == ["/"] and cuda.flat and cuda.components == [] and cuda.mode == "full"
    assert cuda.architectures == ["amd64"] and not cuda.trusted
    assert m.section("apt") == m.apt


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("    suites: /\n    components: [main]\n", "flat repository"),
        ("    suites: [stable]\n", "components: give at least one"),
        ("    suites: [stable, ./]\n    components: [main]\n", "cannot be mixed"),
        ("    suites: [../x/]\n", "a suite name"),
        ("    suites: [stable]\n    components: [main]\n    urls: {arm64: 'http://x/'}\n", "not in architectures"),
        ("    suites: [stable]\n    components: [main]\n    mode: packages\n", "needs a packages list"),
        ("    suites: [stable]\n    components: [main]\n    packages: ['-oDir=/']\n", "not a package name"),
        ("    suites: [stable]\n    components: [Main Street]\n", "lower-case"),
    ],
)
def test_bad_entries_name_the_line_and_field(entry: str, message: str) -> None:
    text = f"format: 1\napt:\n  - id: r\n    url: http://x.example/debian\n    {KEY}\n{entry}"
    got = problems(text)
    assert len(got) == 1 and re.match(r"m\.yaml:[3-8]: apt\[0\]", got[0]) and message in got[0], got


def test_keyring_required_unless_trusted() -> None:
    base = "format: 1\napt:\n  - id: r\n    url: http://x.example/d\n    suites: /\n"
    assert "trusted: true" in problems(base)[0]
    assert parse_manifest(base + "    trusted: true\n", "m.yaml").apt[0].trusted


def test_repo_ids_are_unique_across_yum_and_apt() -> None:
    text = (
        "format: 1\nyum:\n  - id: same\n    baseurl: http://y.example/el9/\n"
        f"apt:\n  - id: other\n    url: http://x.example/d\n    suites: /\n    {KEY}\n"
        f"  - id: same\n    url: http://x.example/d\n    suites: /\n    {KEY}\n"
        f"  - id: other\n    url: http://x.example/e\n    suites: /\n    {KEY}\n"
    )
    assert problems(text) == [
        "m.yaml:10: apt[1].id: 'same' already used by yum[0] (repo ids are unique across yum and apt)",
        "m.yaml:14: apt[2].id: 'other' already used by apt[0]",
    ]

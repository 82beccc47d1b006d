from __future__ import annotations

from pathlib import Path

import pytest

from gapcache.errors import FormatError, ManifestError
from gapcache.manifest import load_manifest, parse_manifest

GOOD_SHA = "a" * 64

MALFORMED: list[tuple[str, str, str]] = [
    ("not-a-mapping", "- a\n- b\n", "m.yaml:1: the manifest must be a mapping with `format: 1`"),
    ("yaml-syntax", "format: 1\nfiles: [\n  {url: x\n", "m.yaml:4: YAML syntax error: "),
    ("format-missing", "files: []\n", "m.yaml:1: format: required field is missing"),
    ("format-wrong", "format: 0\n", "m.yaml:1: format: must be 1"),
    ("files-not-list", "format: 1\nfiles: {url: x}\n", "m.yaml:2: files: Input should be a valid list"),
    (
        "url-missing",
        "format: 1\nfiles:\n  - sha256: " + GOOD_SHA + "\n",
        "m.yaml:3: files[0].url: required field is missing",
    ),
    (
        "url-scheme",
        "format: 1\nfiles:\n  - url: http://h/a\n  - url: ftp://h/b\n",
        "m.yaml:4: files[1].url: scheme must be http, https or file, not 'ftp'",
    ),
    (
        "sha-not-hex",
        "format: 1\nfiles:\n"
        + "".join(f"  - url: http://h/{i}\n" for i in range(3))
        + "  - url: http://h/3\n    sha256: 12zz\n",
        "m.yaml:7: files[3].sha256: not 64 hex digits",
    ),
    (
        "path-traversal",
        "format: 1\nfiles:\n  - url: http://h/a\n    path: ../../etc/passwd\n",
        "m.yaml:3: files[0].path: 'files/../../etc/passwd' has an empty, '.' or '..' segment",
    ),
    (
        "duplicate-path",
        "format: 1\nfiles:\n  - url: http://h/a\n    path: x\n  - url: http://h/b\n    path: x\n",
        "m.yaml:5: files[1]: path 'files/x' already used by files[0] with another URL",
    ),
    ("unknown-section", "format: 1\nfilez: []\n", "m.yaml:2: filez: unknown field"),
    (
        "unknown-entry-key",
        "format: 1\nfiles:\n  - url: http://h/a\n    sha: " + GOOD_SHA + "\n",
        "m.yaml:4: files[0].sha: unknown field",
    ),
    ("url-no-host", "format: 1\nfiles:\n  - url: 'http:///a'\n", "m.yaml:3: files[0].url: URL has no host"),
]


@pytest.mark.parametrize(("case", "text", "message"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_manifest_names_file_line_entry_and_problem(case: str, text: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.yaml")
    assert info.value.exit_code == 2
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_newer_format_is_refused_with_upgrade_hint() -> None:
    with pytest.raises(FormatError, match=r"format 2 is newer.*upgrade"):
        parse_manifest("format: 2\n", "m.yaml")


def test_all_problems_reported_at_once() -> None:
    text = "format: 1\nfiles:\n  - url: ftp://h/a\n  - url: http://h/b\n    sha256: nothex\n"
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.yaml")
    assert len(info.value.problems) == 2


def test_default_paths_keep_host_and_port() -> None:
    m = parse_manifest(
        "format: 1\nfiles:\n"
        "  - url: https://dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm\n"
        "  - url: http://127.0.0.1:8080/a%20b.txt\n"
        "  - url: https://example.org:443/x\n"
        "  - url: file:///srv/x.yaml\n"
        "  - url: http://h/y\n    path: custom/y\n    sha256: SHA256:" + "AB" * 32 + "\n",
        "m.yaml",
    )
    paths = [f.logical_path() for f in m.files]
    assert paths == [
        "files/dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm",
        "files/127.0.0.1_8080/a b.txt",
        "files/example.org/x",
        "files/local/srv/x.yaml",
        "files/custom/y",
    ]
    assert m.files[4].sha256 == "ab" * 32


def test_unreadable_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "missing.yaml")

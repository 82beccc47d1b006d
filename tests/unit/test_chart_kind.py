"""The chart kind's glue without a network: exclusion patterns, discovered images handed to the
image kind (deduplicated against the manifest's images), the served base URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gapcache.kinds import KINDS
from gapcache.kinds.base import ResolveContext
from gapcache.kinds.chart.resolve import excluded
from gapcache.kinds.chart.serve import ChartRepo
from gapcache.kinds.image import discovered_refs
from gapcache.manifest import parse_manifest


def test_chart_kind_resolves_before_the_image_kind() -> None:
    order = list(KINDS)
    assert order.index("chart") < order.index("image")
    assert (KINDS["chart"].listener, KINDS["image"].listener) == ("charts", "registry")


@pytest.mark.parametrize(
    ("ref", "patterns", "want"),
    [
        ("docker.io/library/busybox:1.36", ["busybox:1.36"], True),
        ("busybox:1.36", ["docker.io/library/busybox:*"], True),
        ("docker.io/library/busybox:1.36", ["busybox:*"], True),
        ("quay.io/prometheus/node-exporter:v1", ["quay.io/prometheus/*"], True),
        ("quay.io/other/x:1", ["quay.io/prometheus/*"], False),
        ("nvcr.io/nvidia/driver:550", ["nvcr.io/nvidia/driver"], False),  # :latest only
        ("nvcr.io/nvidia/driver:550", [], False),
    ],
)
def test_images_exclude(ref: str, patterns: list[str], want: bool) -> None:
    assert excluded(ref, patterns) is want


def test_discovered_images_are_deduplicated(tmp_path: Path) -> None:
    m = parse_manifest("format: 1\nimages: [nginx:1.25]\n", "m.yaml")
    ctx = ResolveContext(downloader=None, scratch=tmp_path)  # type: ignore[arg-type]
    ctx.discovered_images += [
        ("docker.io/library/nginx:1.25", "chart a 1.0.0"),  # the manifest lists it already
        ("quay.io/x/y:2", "chart b 1.0.0"),
        ("quay.io/x/y:2", "chart a 1.0.0"),
        ("quay.io/x/y:2", "chart a 1.0.0"),
        ("Not A Ref!!", "chart c 0.1.0"),
    ]
    found = discovered_refs(m.section("image"), ctx)
    assert [(str(r), s) for r, s in found] == [("quay.io/x/y:2", ["chart a 1.0.0", "chart b 1.0.0"])]
    (failure,) = ctx.failures
    assert failure.item == "image Not A Ref!!" and "discovered in chart c 0.1.0" in failure.reason


class _Req:
    def __init__(self, host: str) -> None:
        self.host = host
        self.secure = False  # a plain-HTTP connection


@pytest.mark.parametrize(
    ("public", "host", "want"),
    [
        (None, "10.0.0.5:8002", "http://10.0.0.5:8002"),
        (None, "[fd00::1]:8002", "http://[fd00::1]:8002"),
        (None, "bad host/x", ""),
        ("https://charts.lan/", "x:8002", "https://charts.lan"),
        ("mirror.lan", "10.0.0.5:8002", "http://mirror.lan:8002"),
    ],
)
def test_served_base(public: str | None, host: str, want: str) -> None:
    repo = ChartRepo([], None, public)  # type: ignore[arg-type]
    req: Any = _Req(host)
    assert repo.base(req) == want


def test_chart_section() -> None:
    m = parse_manifest(
        "format: 1\ncharts:\n  - {repo: 'https://h/c', name: a, images: discover, values: {x: 1}}\n"
        "  - {ref: 'oci://h.io/p/b', version: ^1}\nimages_discover: true\nimages_exclude: ['quay.io/*']\n"
        "registries: {h.io: {insecure: true}}\n",
        "m.yaml",
    )
    s = m.section("chart")
    assert s.images_discover and s.images_exclude == ["quay.io/*"] and s.registries["h.io"].insecure
    assert s.charts[0].values == {"x": 1} and s.charts[1].ref == "oci://h.io/p/b"

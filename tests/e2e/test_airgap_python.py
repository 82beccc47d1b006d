"""Python packages end to end, with the host's configured index (a real PyPI) as the upstream:
resolve for other Pythons and CPUs, then install with pip and uv inside `unshare -n`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from conftest import gapcache

HERE = Path(__file__).parent
T310A = "cp310-manylinux_2_28_aarch64"
T311X = "cp311-manylinux_2_28_x86_64"
T312X = "cp312-manylinux_2_28_x86_64"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("python")
    m = tmp / "py.yaml"
    m.write_text(
        "format: 1\npython:\n"
        "  requirements: [requests, markupsafe, \"exceptiongroup; python_version < '3.11'\"]\n"
        "  targets:\n"
        "    - {python: '3.10', platform: manylinux_2_28_aarch64}\n"
        "    - {python: '3.11', platform: manylinux_2_28_x86_64}\n"
        "    - {python: '3.12', platform: manylinux_2_28_x86_64}\n"
    )
    res = gapcache("build", "-f", m, "-o", tmp / "py.tar", "--store", tmp / "store", timeout=600)
    assert res.returncode == 0, res.stderr
    return tmp, json.loads((tmp / "py.tar.lock.json").read_text())


@pytest.mark.slow
def test_cross_target_wheels_and_markers(built: tuple[Path, dict[str, object]]) -> None:
    _, lock = built
    items = {i["name"].split("==")[0]: i for i in lock["items"]}  # type: ignore[attr-defined]
    for boot in ("pip", "setuptools", "wheel"):
        assert boot in items
    ms = [a["path"].rsplit("/", 1)[-1] for a in items["markupsafe"]["artifacts"] if a["path"].endswith(".whl")]
    tags = sorted({(t.interpreter, t.platform.rsplit("_", 1)[-1] if "aarch64" in t.platform else "x86_64")
                   for f in ms for t in parse_wheel_filename(f)[3]})  # fmt: skip
    assert tags == [("cp310", "aarch64"), ("cp311", "x86_64"), ("cp312", "x86_64")], ms
    assert all("manylinux" in f for f in ms) and len(ms) == 3
    assert items["exceptiongroup"]["resolved"]["targets"] == [T310A]  # marker: python < 3.11 only
    assert items["requests"]["resolved"]["targets"] == [T310A, T311X, T312X]
    for item in lock["items"]:  # type: ignore[attr-defined]
        for a in item["artifacts"]:
            if a["path"].endswith(".whl"):
                meta = item["resolved"]["files"][a["path"].rsplit("/", 1)[-1]]
                assert meta.get("metadata", "").startswith("sha256:"), a["path"]  # PEP 658 for every wheel


@pytest.mark.slow
def test_pip_and_uv_install_inside_an_air_gap(built: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    tmp, lock = built
    hashed = []
    for item in lock["items"]:  # type: ignore[attr-defined]
        res = item["resolved"]
        if T311X in res["targets"] and res["project"] in (
            "requests",
            "urllib3",
            "idna",
            "certifi",
            "charset-normalizer",
        ):
            hashes = " ".join(f"--hash={a['digest']}" for a in item["artifacts"]
                              if not a["path"].endswith(".metadata"))  # fmt: skip
            hashed.append(f"{res['project']}=={res['version']} {hashes}")
    reqs = tmp_path / "hashed.txt"
    reqs.write_text("\n".join(hashed) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    uv = str(Path(sys.executable).parent / "uv")
    cmd = ["unshare", "-n", "bash", str(HERE / "airgap_python.sh"), sys.executable, uv, str(tmp / "py.tar"),
           str(tmp_path / "root"), str(out), str(reqs)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    logs = "".join(p.read_text() for p in out.glob("*.log"))
    assert res.returncode == 0, res.stdout + res.stderr + logs
    assert (out / "route.txt").read_text() == ""
    versions = {i["resolved"]["project"]: i["resolved"]["version"] for i in lock["items"]}  # type: ignore[attr-defined]
    assert (out / "pip-import.txt").read_text().strip() == versions["requests"]
    assert (out / "uv-import.txt").read_text().strip() == versions["requests"]
    assert (out / "missing.rc").read_text().strip() != "0"
    assert "No matching distribution found for surely-not-in-the-mirror-pkg" in (out / "missing.log").read_text()
    misses = [json.loads(x) for x in (tmp_path / "root/misses.jsonl").read_text().splitlines()]
    assert any(m["listener"] == "pypi" and "surely-not-in-the-mirror-pkg" in m["path"] for m in misses)
    # PEP 691 JSON: structure, hashes, and .metadata files that hash-match
    doc = json.loads((out / "requests.json").read_text())
    assert doc["meta"]["api-version"] == "1.1" and doc["name"] == "requests"
    for f in doc["files"]:
        assert set(f) >= {"filename", "url", "hashes", "requires-python", "core-metadata", "size"}
        assert f["url"].startswith("/packages/requests/")
        blob = tmp_path / "root/blobs/sha256" / f["hashes"]["sha256"]
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == f["hashes"]["sha256"]
        meta = tmp_path / "root/blobs/sha256" / f["core-metadata"]["sha256"]
        assert meta.read_bytes().startswith(b"Metadata-Version:")
    page = (out / "markupsafe.html").read_text()
    assert 'data-core-metadata="sha256=' in page and "#sha256=" in page and "data-requires-python" in page
    assert (out / "redirect.txt").read_text().startswith("301 ")


@pytest.mark.slow
def test_unsatisfiable_for_one_target_names_the_target(tmp_path: Path) -> None:
    m = tmp_path / "py.yaml"
    m.write_text(
        "format: 1\npython:\n  requirements: ['numpy==1.21.0']\n  sdists: never\n  targets:\n"
        "    - {python: '3.12', platform: manylinux_2_28_x86_64}\n"
    )
    res = gapcache("build", "-f", m, "-o", tmp_path / "x.tar", "--store", tmp_path / "store", timeout=300)
    assert res.returncode == 1
    assert "cp312-manylinux_2_28_x86_64" in res.stderr and "numpy" in res.stderr
    assert not (tmp_path / "x.tar").exists()

"""Self-bootstrap end to end: build an archive carrying gapcache (wheels for Python 3.11 on x86_64 from
the host's configured index, a real PyPI), then on a "bare host" — inside `unshare -n`, `env -i`, a fresh
directory, Debian's /usr/bin/python3 — `tar -xf ARCHIVE install.sh && sh install.sh --prefix P ARCHIVE`,
and the installed gapcache loads, serves (curl fetches a file), lists, verifies and writes vars.
Also: the split and zstd forms (install.sh beside them), a Python too old, a Python the archive
carries no wheels for."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import gapcache
from helpers import serve_dir

BARE = {"PATH": "/usr/bin:/bin"}  # env -i: nothing of this host's Python, pip or gapcache settings
BUILD_ONLY = ("uv", "solv", "helm_python", "pip")  # the `build` extra (and pip) stay out of the venv
DATA = b"bootstrap e2e: served by a gapcache installed from its own archive\n"


@dataclass
class Built:
    tmp: Path
    archive: Path
    lock: dict[str, object]


@pytest.fixture(scope="session")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """ONE build that reaches the index (pip's configured one); every other form is built --locked from it."""
    if "--bootstrap-python" not in gapcache("build", "--help").stdout:
        pytest.skip("cli.py does not wire the bootstrap options yet (cli_build.add_bootstrap_options)")
    tmp = tmp_path_factory.mktemp("bootstrap")
    with serve_dir(tmp / "upstream") as base:
        (tmp / "upstream/hello.txt").write_bytes(DATA)
        m = tmp / "m.yaml"
        m.write_text(f"format: 1\nfiles:\n  - url: {base}/hello.txt\n    path: example.com/hello.txt\n")
        res = gapcache("build", "-f", m, "-o", tmp / "b.tar", "--store", tmp / "store",
                       "--bootstrap-python", "3.11", "--bootstrap-platform", "x86_64", timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "bootstrap: gapcache" in res.stderr and "install.sh" in res.stderr, res.stderr
    yield Built(tmp, tmp / "b.tar", json.loads((tmp / "b.tar.lock.json").read_text()))


def bare(script: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with sh in a new network namespace (loopback only) and an empty environment."""
    cmd = ["unshare", "-n", "env", "-i", *(f"{k}={v}" for k, v in {**BARE, **(env or {})}.items()), "sh", "-c", script]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_lock_carries_the_bootstrap(bootstrapped: Built) -> None:
    items = [i for i in bootstrapped.lock["items"] if i["kind"] == "bootstrap"]  # type: ignore[attr-defined]
    assert len(items) == 1 and items[0]["name"] == "gapcache"
    paths = {a["path"] for a in items[0]["artifacts"]}
    assert "install.sh" in paths and all(p == "install.sh" or p.startswith("bootstrap/") for p in paths)
    names = {p.split("/")[1].split("-")[0].lower() for p in paths if p.endswith(".whl")}
    assert {"gapcache", "pip", "aiohttp", "pydantic", "cryptography", "zstandard"} <= names
    assert not names & {"uv", "solv", "helm_python_sdk"}, names  # build-only: the `build` extra
    members = subprocess.run(["tar", "-tf", bootstrapped.archive], capture_output=True, text=True, check=True)
    listed = members.stdout.split()
    assert listed[:2] == ["gapcache.lock.json", "install.sh"]
    boot = [n for n in listed if n.startswith("bootstrap/")]
    assert len(boot) == len(paths) - 1 and listed.index(boot[-1]) < min(
        i for i, n in enumerate(listed) if n.startswith("blobs/")
    )
    # once: the bootstrap bytes are not repeated as blobs/sha256 members
    digests = {a["digest"][7:] for a in items[0]["artifacts"]}
    assert not {n.rsplit("/", 1)[-1] for n in listed if n.startswith("blobs/")} & digests
    ls = gapcache("ls", bootstrapped.archive)
    assert ls.returncode == 0 and "bootstrap" in ls.stdout and "gapcache" in ls.stdout


@pytest.mark.slow
def test_install_load_serve_on_a_bare_offline_host(bootstrapped: Built, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    script = f"""
set -e
ip link set lo up
ip route > route.txt
tar -xf {bootstrapped.archive} install.sh 2>/dev/null
sh install.sh --prefix P {bootstrapped.archive} > install.log 2>&1 || {{ cat install.log; exit 1; }}
P/bin/gapcache --version > version.txt
P/bin/python -c 'import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])' \
  {" ".join(BUILD_ONLY)} > extras.txt
P/bin/gapcache load {bootstrapped.archive} --root R -q
P/bin/gapcache ls --root R > ls.txt
P/bin/gapcache verify --root R -q
P/bin/gapcache vars --root R --mirror-host 127.0.0.1 -o vars > vars.log 2>&1
P/bin/gapcache serve --root R --bind 127.0.0.1 > serve.log 2>&1 &
S=$!
trap 'kill $S 2>/dev/null; wait $S 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -sf -o got.txt http://127.0.0.1:8004/example.com/hello.txt && break; sleep 0.05; done
curl -sf http://127.0.0.1:8004/bootstrap/ > listing.html
sh install.sh --prefix P {bootstrapped.archive} > again.log 2>&1
"""
    res = bare(script, host)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (host / "route.txt").read_text() == ""  # the namespace has no way out
    log = (host / "install.log").read_text()
    assert "no network" in log and "gapcache mirrors" in log, log
    assert (host / "version.txt").read_text().strip() == "gapcache 0.1.0"
    assert (host / "extras.txt").read_text().strip() == ""  # no uv, solv, helm; not even pip in the venv
    assert (host / "got.txt").read_bytes() == DATA
    assert "bootstrap" in (host / "ls.txt").read_text()
    assert (host / "vars/offline_repo_vars.yml").is_file()
    assert "gapcache-0.1.0-py3-none-any.whl" in (host / "listing.html").read_text()
    assert "installed gapcache 0.1.0" in (host / "again.log").read_text()  # a re-run is harmless


@pytest.mark.slow
def test_split_and_zstd_archives_carry_install_sh_beside(bootstrapped: Built, tmp_path: Path) -> None:
    lock = bootstrapped.tmp / "b.tar.lock.json"
    store = bootstrapped.tmp / "store"
    for extra, out in ((["--split-size", "8M"], "s.tar"), (["--compress", "zstd"], "z.tar.zst")):
        res = gapcache("build", "--locked", lock, "-o", tmp_path / out, "--store", store, *extra, timeout=600)
        assert res.returncode == 0, res.stderr
        assert (tmp_path / f"{out}.install.sh").is_file(), res.stderr
        assert f"sh {tmp_path / out}.install.sh" in res.stderr, res.stderr
    parts = sorted(tmp_path.glob("s.part*.tar"))
    assert len(parts) > 1
    first = subprocess.run(["tar", "-tf", parts[0]], capture_output=True, text=True, check=True).stdout.split()
    later = subprocess.run(["tar", "-tf", parts[1]], capture_output=True, text=True, check=True).stdout.split()
    assert first[1] == "install.sh" and not [n for n in later if not n.startswith("blobs/") and n != first[0]]
    script = f"""
set -e
ip link set lo up
sh {tmp_path}/s.tar.install.sh --prefix S > split.log 2>&1 || {{ cat split.log; exit 1; }}
S/bin/gapcache load {tmp_path}/s.toc.json --root RS -q
sh {tmp_path}/z.tar.zst.install.sh --prefix Z > zstd.log 2>&1 || {{ cat zstd.log; exit 1; }}
Z/bin/gapcache load {tmp_path}/z.tar.zst --root RZ -q
"""
    host = tmp_path / "host"
    host.mkdir()
    res = bare(script, host)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "s.toc.json" in (host / "split.log").read_text()  # the next command names the table of contents


@pytest.mark.slow
def test_a_python_too_old_or_not_carried_gets_a_clear_message(bootstrapped: Built, tmp_path: Path) -> None:
    subprocess.run(["tar", "-xf", bootstrapped.archive, "-C", tmp_path, "install.sh"], check=True, capture_output=True)
    for version, want in (("3.8", "dnf install python3.11"), ("3.12", "carries gapcache wheels for Python 3.11 on")):
        fake = tmp_path / f"python{version}"
        fake.write_text(f"#!/bin/sh\necho {version}\n")  # answers the version query like that Python would
        fake.chmod(0o755)
        res = bare(f"sh install.sh --prefix P {bootstrapped.archive}", tmp_path, {"PYTHON": str(fake)})
        assert res.returncode == 3, res.stdout + res.stderr
        assert want in res.stderr, res.stderr
        assert not (tmp_path / "P").exists()

"""Self-bootstrap pieces without a network: gapcache's generated wheel, the archive's bootstrap members
(placement in plain, split and zstd archives; what the reader refuses), the build options, and
install.sh's checks that come before it touches the archive."""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gapcache.archive import ArchiveReader, pack
from gapcache.archive.format import LOCK_MEMBER, PAX_FORMAT, PAX_LOCK_SHA256, tar_header, tar_pad
from gapcache.cli_build import bootstrap_options
from gapcache.errors import ArchiveError, GapcacheError, UnsafeMember, UsageError
from gapcache.kinds.bootstrap import BootstrapOptions, core_requirements, render_install_sh, wheel
from gapcache.lock import GENERATED, Artifact, Item, Lock
from gapcache.root import Root
from gapcache.store import Store


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


BOOT = {"install.sh": b"#!/bin/sh\necho hi\n", "bootstrap/pip-1-py3-none-any.whl": b"P" * 3000,
        "bootstrap/x-1-py3-none-any.whl": b"X" * 5000}  # fmt: skip
FILES = {"files/h/a": b"a" * 4000, "files/h/b": b"b" * 4000, "files/h/c": b"c" * 4000}


def make(tmp: Path, boot: dict[str, bytes] = BOOT) -> tuple[Lock, Store]:
    store = Store(tmp / "store")
    store.ensure()
    items = [
        Item(kind="file", name=p, request={}, artifacts=[Artifact(path=p, source="file:///x", digest=store.put_bytes(d),
                                                                  size=len(d))])
        for p, d in FILES.items()
    ]  # fmt: skip
    if boot:
        arts = [Artifact(path=p, source=GENERATED, digest=store.put_bytes(d), size=len(d)) for p, d in boot.items()]
        items.append(Item(kind="bootstrap", name="gapcache", request={}, resolved={}, artifacts=arts))
    return Lock.build(items), store


def names(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        return tf.getnames()


# ---- the generated wheel ------------------------------------------------------------------------


def test_the_wheel_is_deterministic_and_complete() -> None:
    name, data = wheel.build_wheel()
    assert name == f"gapcache-{wheel.version()}-py3-none-any.whl"
    assert wheel.build_wheel()[1] == data  # the same installed package: the same bytes
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = zf.namelist()
        info = f"gapcache-{wheel.version()}.dist-info"
        assert {f"{info}/METADATA", f"{info}/WHEEL", f"{info}/RECORD", f"{info}/entry_points.txt"} <= set(members)
        assert "gapcache/kinds/bootstrap/install.sh" in members and "gapcache/cli.py" in members
        assert not [m for m in members if "__pycache__" in m or m.endswith(".pyc")]
        assert {zi.date_time for zi in zf.infolist()} == {wheel.EPOCH}
        assert "gapcache = gapcache.cli:main" in zf.read(f"{info}/entry_points.txt").decode()
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        assert len(record) == len(members)


@pytest.mark.slow
def test_the_wheel_installs_with_pip_offline(tmp_path: Path) -> None:
    name, data = wheel.build_wheel()
    (tmp_path / name).write_bytes(data)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    env = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null"}
    subprocess.run([sys.executable, "-m", "pip", "--python", venv / "bin/python", "install", "-q", "--no-index",
                    "--no-deps", tmp_path / name], check=True, env=env)  # fmt: skip
    out = subprocess.run([venv / "bin/python", "-c", "import gapcache; print(gapcache.__version__)"],
                         capture_output=True, text=True, check=True, env=env)  # fmt: skip
    assert out.stdout.strip() == wheel.version()
    assert (venv / "bin/gapcache").is_file()


def test_core_requirements_leave_out_the_build_extra() -> None:
    reqs = {r.split("==")[0].split(";")[0].lower() for r in core_requirements()}
    assert {"aiohttp", "pydantic", "pyyaml", "zstandard", "cryptography", "prometheus-client"} <= reqs
    assert not reqs & {"uv", "solv", "helm-python-sdk", "pytest", "mypy"}


# ---- archive members ----------------------------------------------------------------------------


def test_bootstrap_members_follow_the_lock_once(tmp_path: Path) -> None:
    lock, store = make(tmp_path)
    res = pack(lock, store, tmp_path / "a.tar")
    got = names(tmp_path / "a.tar")
    assert got[:4] == [LOCK_MEMBER, "install.sh", "bootstrap/pip-1-py3-none-any.whl", "bootstrap/x-1-py3-none-any.whl"]
    assert len(got) == 4 + len(FILES) and all(n.startswith("blobs/sha256/") for n in got[4:])
    assert res.bootstrap == 3 and res.blobs == 6 and res.installer is None
    with ArchiveReader(tmp_path / "a.tar") as r:
        blobs = {b.digest: b"".join(b.chunks) for b in r.blobs()}
    assert blobs == {digest(d): d for d in [*BOOT.values(), *FILES.values()]}
    root = Root(tmp_path / "root")
    root.load([tmp_path / "a.tar"])
    assert all(root.store.has(digest(d)) for d in BOOT.values())


def test_split_and_zstd_placement_and_install_sh_beside(tmp_path: Path) -> None:
    lock, store = make(tmp_path)
    res = pack(lock, store, tmp_path / "s.tar", split_size=12000)
    assert len(res.parts) > 1 and res.installer == tmp_path / "s.tar.install.sh"
    assert res.installer.read_bytes() == BOOT["install.sh"]
    assert names(res.parts[0])[1:4] == list(BOOT)
    for part in res.parts[1:]:
        assert not [n for n in names(part)[1:] if not n.startswith("blobs/")]
    z = pack(lock, store, tmp_path / "z.tar.zst", compress="zstd")
    assert z.installer == tmp_path / "z.tar.zst.install.sh"
    seen = set()
    with ArchiveReader(tmp_path / "z.tar.zst") as r:
        for b in r.blobs():
            assert digest(b"".join(b.chunks)) == b.digest
            seen.add(b.digest)
    assert seen == set(lock.blobs())
    Root(tmp_path / "rs").load([res.toc] if res.toc else res.parts)
    Root(tmp_path / "rz").load([tmp_path / "z.tar.zst"])


def test_an_archive_without_bootstrap_still_loads(tmp_path: Path) -> None:
    lock, store = make(tmp_path, boot={})
    res = pack(lock, store, tmp_path / "old.tar", compress="zstd")
    assert res.installer is None and not (tmp_path / "old.tar.zst.install.sh").exists()
    Root(tmp_path / "root").load([tmp_path / "old.tar"])


def handmade(path: Path, lock: Lock, members: list[tuple[str, bytes]]) -> Path:
    """A tar with the lock (and its PAX digest) and then ``members`` as given."""
    lock_bytes = lock.to_bytes()
    pax = {PAX_FORMAT: "1", PAX_LOCK_SHA256: hashlib.sha256(lock_bytes).hexdigest()}
    out = tar_header(LOCK_MEMBER, len(lock_bytes), pax) + lock_bytes + tar_pad(len(lock_bytes))
    for name, data in members:
        out += tar_header(name, len(data)) + data + tar_pad(len(data))
    path.write_bytes(out + b"\0" * 1024)
    return path


def blob_members() -> list[tuple[str, bytes]]:
    return [(f"blobs/sha256/{digest(d)[7:]}", d) for d in sorted(FILES.values(), key=digest)]


def read_all(path: Path) -> None:
    with ArchiveReader(path) as r:
        for b in r.blobs():
            b"".join(b.chunks)


def test_the_reader_refuses_bootstrap_members_the_lock_does_not_name(tmp_path: Path) -> None:
    lock, _ = make(tmp_path)
    good = list(BOOT.items())
    bad = handmade(tmp_path / "x.tar", lock, [*good, ("bootstrap/evil.whl", b"e")])
    with pytest.raises(UnsafeMember, match="bootstrap file the lock does not list"):
        read_all(bad)
    plain, _ = make(tmp_path / "p", boot={})  # a lock without bootstrap: install.sh is not accepted either
    with pytest.raises(UnsafeMember, match=r"install\.sh"):
        read_all(handmade(tmp_path / "y.tar", plain, [("install.sh", BOOT["install.sh"])]))
    with pytest.raises(UnsafeMember, match="after the blobs"):
        read_all(handmade(tmp_path / "z.tar", lock, [*blob_members(), *good]))


def test_the_reader_and_load_refuse_bootstrap_bytes_that_do_not_match(tmp_path: Path) -> None:
    lock, _ = make(tmp_path)
    tampered = dict(BOOT)
    tampered["bootstrap/x-1-py3-none-any.whl"] = b"Y" * 5000  # same size, other bytes
    archive = handmade(tmp_path / "t.tar", lock, [*tampered.items(), *blob_members()])
    with pytest.raises(ArchiveError, match=r"bootstrap/x-1-py3-none-any\.whl is corrupt"):
        read_all(archive)
    root = Root(tmp_path / "root")
    with pytest.raises(GapcacheError, match="corrupt"):
        root.load([archive])
    assert not (tmp_path / "root/locks").exists() or not list((tmp_path / "root/locks").iterdir())
    short = dict(BOOT)
    short["install.sh"] = b"#!/bin/sh\n"
    with pytest.raises(ArchiveError, match=r"install\.sh has 10 bytes"):
        read_all(handmade(tmp_path / "s.tar", lock, list(short.items())))


# ---- options and install.sh ---------------------------------------------------------------------


def test_build_options(monkeypatch: pytest.MonkeyPatch) -> None:
    def ns(**kw: object) -> argparse.Namespace:
        return argparse.Namespace(**{"bootstrap_python": None, "bootstrap_platform": None, "no_bootstrap": False,
                                     **kw})  # fmt: skip

    monkeypatch.delenv("GAPCACHE_BOOTSTRAP", raising=False)
    default = bootstrap_options(ns())
    assert default.pythons == ["3.10", "3.11", "3.12"] and default.platforms == ["aarch64", "x86_64"]
    assert [t.platform for t in default.targets()][:2] == ["manylinux_2_34_aarch64", "manylinux_2_34_x86_64"]
    assert bootstrap_options(ns(no_bootstrap=True)) is None
    monkeypatch.setenv("GAPCACHE_BOOTSTRAP", "0")
    assert bootstrap_options(ns()) is None
    asked = bootstrap_options(ns(bootstrap_python="3.12,3.11", bootstrap_platform="amd64"))
    assert asked.pythons == ["3.11", "3.12"] and asked.platforms == ["x86_64"]
    with pytest.raises(UsageError, match=r"3\.9"):
        bootstrap_options(ns(bootstrap_python="3.9"))
    with pytest.raises(UsageError, match="ppc64le"):
        bootstrap_options(ns(bootstrap_platform="ppc64le"))
    with pytest.raises(UsageError, match="contradict"):
        bootstrap_options(ns(no_bootstrap=True, bootstrap_python="3.11"))
    assert BootstrapOptions().pairs() == [f"{p}:{a}" for p in ("3.10", "3.11", "3.12") for a in ("aarch64", "x86_64")]


def run_install_sh(tmp: Path, python_answers: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / "install.sh").write_bytes(render_install_sh("0.1.0", ["3.11:x86_64", "3.11:aarch64"]))
    fake = tmp / "python-fake"
    fake.write_text(f"#!/bin/sh\necho {python_answers}\n")
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "HOME": str(tmp)}
    return subprocess.run(["sh", tmp / "install.sh", *args], capture_output=True, text=True, env=env, cwd=tmp)


def test_install_sh_names_what_to_install_for_a_python_too_old(tmp_path: Path) -> None:
    res = run_install_sh(tmp_path, "3.8", "--prefix", str(tmp_path / "P"), "a.tar")
    assert res.returncode == 3
    assert "needs Python >= 3.10" in res.stderr and "dnf install python3.11" in res.stderr
    assert "Python 3.11 on x86_64" in res.stderr
    res = run_install_sh(tmp_path, "3.12", "--prefix", str(tmp_path / "P"), "a.tar")
    assert res.returncode == 3 and "--bootstrap-python X.Y" in res.stderr
    assert not (tmp_path / "P").exists()
    res = run_install_sh(tmp_path, "3.11")
    assert res.returncode == 2 and "usage: sh install.sh" in res.stderr


def test_a_build_without_the_build_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from gapcache.errors import EnvironmentProblem
    from gapcache.kinds.python import uv_binary

    monkeypatch.setitem(sys.modules, "uv", None)  # `import uv` fails as where the extra is not installed
    with pytest.raises(EnvironmentProblem, match=r"pip install 'gapcache\[build\]'") as exc:
        uv_binary()
    assert exc.value.exit_code == 3

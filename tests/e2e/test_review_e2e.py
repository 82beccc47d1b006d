"""The review at the gap, end to end: one archive built from real upstreams with every kind there is
— plain files, images (Debian's docker-registry, one image with a license annotation, one with a
license label), Python (a local PEP 503 index with a wheel whose metadata states its license), yum
(the signed test repo: a dependency-closed subset with generated, signed repodata, and a full
mirror) — then:

- reproducibility: ``build --locked`` from another store, with other file mtimes in the store,
  another umask and at a later time gives byte-identical archives (whole, split parts + TOC, zstd);
  a changed lock gives a different archive;
- ``inventory``: every item with its digest and the license its content states (the RPM's License
  tag agrees with ``rpm -qp``); SPDX 2.3 and CycloneDX 1.5 validate against their schemas.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import UpstreamHandle, gapcache
from gapcache.inventory import inventory, render
from gapcache.lock import Lock, read_lock
from helpers import serve_dir
from registry import docker_registry
from reviewkit import labelled_image, validate_cyclonedx, validate_spdx, wheel, wheel_name, write_index

pytestmark = pytest.mark.slow


@dataclass
class Online:
    tmp: Path
    lock: Path
    archive: Path
    env: dict[str, str]
    image: str  # the annotated image's repository name


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def online(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: UpstreamHandle, yum_upstream: str
) -> Iterator[Online]:
    tmp = tmp_path_factory.mktemp("review")
    dists = {wheel_name("gapdemo", "1.0"): wheel("gapdemo", "1.0", "BSD-2-Clause")}
    for boot in ("pip", "setuptools", "wheel"):  # the python kind always adds these
        dists[wheel_name(boot, "99.0")] = wheel(boot, "99.0", "MIT")
    write_index(tmp / "index", dists)
    kubeadm = upstream_server.put("review/kubeadm", b"kubeadm binary\n" * 100_000)  # 1.5 MB: split into parts
    with docker_registry(tmp / "registry") as reg, serve_dir(tmp / "index") as index:
        labelled_image(tmp / "oci", "1", "Apache-2.0", "1.0.0")
        reg.push(tmp / "oci", "1", "team/annotated:1")
        labelled_image(tmp / "oci2", "2", "BSD-3-Clause", "2.0.0", in_config=True)
        reg.push(tmp / "oci2", "2", "team/labelled:2")
        manifest = tmp / "review.yaml"
        manifest.write_text(
            "format: 1\n"
            f"files:\n  - url: {kubeadm}\n"
            f"images:\n  - {reg.host}/team/annotated:1\n  - {reg.host}/team/labelled:2\n"
            f"registries:\n  {reg.host}: {{insecure: true}}\n"
            f"python:\n  requirements: [gapdemo]\n  index_url: {index}/simple/\n"
            "  targets:\n    - {python: '3.11', platform: manylinux_2_28_x86_64}\n"
            "yum:\n"
            f"  - id: sub\n    baseurl: {yum_upstream}/\n    gpgkey: [{yum_upstream}/RPM-GPG-KEY-test]\n"
            "    mode: packages\n    packages: [pa]\n"
            f"  - id: full\n    baseurl: {yum_upstream}/\n    gpgkey: [{yum_upstream}/RPM-GPG-KEY-test]\n"
        )
        env = {"XDG_CONFIG_HOME": str(tmp / "config")}
        archive = tmp / "online" / "review.tar"
        archive.parent.mkdir()
        res = gapcache("build", "-f", manifest, "-o", archive, "--store", tmp / "store1", "-q", env=env, timeout=600)
        assert res.returncode == 0, res.stderr
        # the upstreams stay up: a rebuild from a fresh store fetches everything again
        yield Online(tmp, archive.with_name("review.tar.lock.json"), archive, env, f"{reg.host}/team/annotated")


def _rebuild(o: Online, name: str, store: str, *extra: str, umask: int = 0o022, lock: Path | None = None) -> Path:
    out = o.tmp / name / "review.tar"
    out.parent.mkdir(exist_ok=True)
    res = gapcache("build", "--locked", lock or o.lock, "-o", out, "--store", o.tmp / store, "-q", *extra,
                   env=o.env, umask=umask, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out


def _touch_store(store: Path, when: float) -> None:
    for p in store.rglob("*"):
        os.utime(p, (when, when), follow_symlinks=False)


def test_every_kind_is_in_the_archive(online: Online) -> None:
    kinds = {i.kind for i in read_lock(online.lock).items}
    assert kinds == {"file", "image", "python", "rpm"}


def test_locked_images_from_a_fresh_store(online: Online) -> None:
    """Manifests fetched by digest ask for their media type: a registry answers OCI manifests by Accept."""
    _rebuild(online, "fresh-images", "store-fresh")


def test_same_lock_same_bytes_across_stores_clocks_and_umask(online: Online) -> None:
    first = _sha(online.archive)
    time.sleep(1.1)  # another second on the clock
    _touch_store(online.tmp / "store1", 1_000_000_000)  # other mtimes on every stored blob
    again = _rebuild(online, "same-store", "store1", umask=0o077)
    assert _sha(again) == first
    fresh = _rebuild(online, "other-store", "store2", umask=0o002)  # a new store: everything else fetched again
    assert _sha(fresh) == first
    _touch_store(online.tmp / "store2", time.time() + 86400)
    assert _sha(_rebuild(online, "other-store-later", "store2")) == first
    # the lock beside the archive too
    assert again.with_name("review.tar.lock.json").read_bytes() == online.lock.read_bytes()


def test_split_parts_toc_and_zstd_are_reproducible(online: Online) -> None:
    outs = []
    for name, store, umask in (("split-a", "store1", 0o022), ("split-b", "store2", 0o077)):
        outs.append(_rebuild(online, name, store, "--split-size", "1M", umask=umask))
        time.sleep(1.1)
    a, b = (o.parent for o in outs)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and "review.toc.json" in names
    assert len([n for n in names if ".part" in n]) >= 2
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    z1 = _rebuild(online, "z1", "store1", "--compress", "zstd")
    z1 = z1.rename(z1.with_suffix(".tar.zst"))
    time.sleep(1.1)
    z2 = _rebuild(online, "z2", "store2", "--compress", "zstd", umask=0o077)
    assert z1.read_bytes() == z2.read_bytes()


def test_a_changed_lock_changes_the_archive(online: Online) -> None:
    lock = read_lock(online.lock)
    smaller = Lock.build([i for i in lock.items if i.kind != "file"])
    path = online.tmp / "smaller.lock.json"
    path.write_bytes(smaller.to_bytes())
    assert _sha(_rebuild(online, "smaller", "store1", lock=path)) != _sha(online.archive)


def test_inventory_of_the_real_archive(online: Online) -> None:
    lock = read_lock(online.lock)
    inv = inventory(archive=online.archive)
    rows = {(c.kind, c.name): c for c in inv.components}
    assert len(inv.components) == len(lock.items)
    for item in lock.items:
        if item.kind == "image":
            assert rows[("image", item.resolved["name"])].digest == item.resolved["digest"]
    annotated = rows[("image", online.image.replace(":", "_", 1))]
    assert (annotated.version, annotated.license) == ("1", "Apache-2.0")
    labelled = next(c for c in inv.components if c.kind == "image" and c.name.endswith("team/labelled"))
    assert labelled.license == "BSD-3-Clause"
    demo = rows[("python", "gapdemo")]
    assert (demo.version, demo.license) == ("1.0", "BSD-2-Clause")
    whl = next(i for i in lock.items if i.kind == "python" and i.name == "gapdemo==1.0").artifacts
    assert demo.digest == next(a.digest for a in whl if a.path.endswith(".whl"))
    sub = rows[("rpm", "sub")]
    assert sorted((p.name, p.version) for p in sub.packages) == [("pa", "2.0-1"), ("pb", "1.0-1"), ("pc", "1.0-1")]
    assert {p.license for p in sub.packages} == {"MIT"}  # tests/rpmrepo.py: License: MIT
    full = rows[("rpm", "full")]
    assert len(full.packages) == 5
    kube = next(c for c in inv.components if c.kind == "file")
    assert kube.size == 1_500_000 and kube.license is None
    if shutil.which("rpm"):  # the pure-Python header reader agrees with rpm itself
        import subprocess

        from gapcache.inventory.source import open_archive

        with open_archive(online.archive) as src:
            for p in sub.packages:
                assert p.digest is not None
                loc = src.locs[p.digest]
                rpm_file = online.tmp / f"{p.name}.rpm"
                with open(loc.path, "rb") as f:
                    f.seek(loc.offset)
                    rpm_file.write_bytes(f.read(loc.size))
                qf = subprocess.run(["rpm", "-qp", "--nosignature", "--qf", "%{LICENSE} %{VERSION}-%{RELEASE}",
                                     str(rpm_file)], capture_output=True, text=True, check=True).stdout  # fmt: skip
                assert qf == f"{p.license} {p.version}"
    table = render(inv, "table")
    assert "Apache-2.0" in table and "BSD-2-Clause" in table and "summary by kind:" in table
    validate_spdx(json.loads(render(inv, "spdx")))
    validate_cyclonedx(json.loads(render(inv, "cyclonedx")))

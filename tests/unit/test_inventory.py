"""Inventory, SBOM and diff on archives packed from a hand-made lock (every kind's content made in
Python: a wheel, an sdist, an RPM, a .deb, an OCI image with a license annotation, a plain file).
No network; the end-to-end versions (real registries, index, yum repo) are in
tests/e2e/test_review_e2e.py."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gapcache.archive import pack
from gapcache.cli_inventory import add_commands
from gapcache.diff import diff_locks, diff_paths
from gapcache.errors import human_bytes
from gapcache.inventory import inventory, open_archive, render, wanted_blobs
from gapcache.inventory.deb import dep5_license
from gapcache.inventory.licenses import spdx_expression
from gapcache.inventory.python import parse_metadata
from gapcache.inventory.rpm import read_rpm_header
from gapcache.lock import GENERATED, Artifact, Item, Lock
from gapcache.store import Store
from reviewkit import (
    fake_deb,
    fake_rpm,
    metadata,
    sdist,
    sha256,
    validate_cyclonedx,
    validate_spdx,
    wheel,
    wheel_name,
)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Built:
    lock: Lock
    archive: Path
    store: Store


def _art(store: Store, path: str, data: bytes, source: str, media_type: str = "application/octet-stream") -> Artifact:
    digest = store.put_bytes(data)
    return Artifact(path=path, source=source, digest=digest, size=len(data), media_type=media_type)


def image_item(store: Store, name: str, tag: str, licenses: str | None) -> Item:
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
    layer = b"layer bytes of " + name.encode()
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                    "size": len(layer)}],
    }  # fmt: skip
    if licenses:
        manifest_doc["annotations"] = {"org.opencontainers.image.licenses": licenses}
    manifest = json.dumps(manifest_doc).encode()
    base = f"https://{name.split('/')[0]}/v2/{name.split('/', 1)[1]}"
    md = sha256(manifest)
    arts = [
        _art(store, f"images/{name}/manifests/{md}", manifest, f"{base}/manifests/{md}", OCI_MANIFEST),
        _art(store, f"images/{name}/blobs/{sha256(config)}", config, f"{base}/blobs/{sha256(config)}", OCI_CONFIG),
        _art(store, f"images/{name}/blobs/{sha256(layer)}", layer, f"{base}/blobs/{sha256(layer)}",
             "application/vnd.oci.image.layer.v1.tar+gzip"),
    ]  # fmt: skip
    resolved = {"name": name, "digest": md, "media_type": OCI_MANIFEST, "platforms": [], "tag": tag}
    return Item(kind="image", name=f"{name}:{tag}", request={"ref": f"{name}:{tag}"}, resolved=resolved, artifacts=arts)


def python_item(store: Store, project: str, version: str, license_: str, with_sdist: bool = False) -> Item:
    whl = wheel(project, version, license_)
    fname = wheel_name(project, version)
    url = f"https://pypi.example/files/{fname}"
    arts = [_art(store, f"pypi/{project}/{fname}", whl, url, "application/zip")]
    meta = metadata(project, version, license_)
    arts.append(_art(store, f"pypi/{project}/{fname}.metadata", meta, GENERATED, "text/plain"))
    if with_sdist:
        sd = sdist(project, version, license_)
        arts.append(_art(store, f"pypi/{project}/{project}-{version}.tar.gz", sd,
                         f"https://pypi.example/files/{project}-{version}.tar.gz", "application/gzip"))  # fmt: skip
    resolved = {"project": project, "version": version, "targets": [], "files": {}}
    return Item(kind="python", name=f"{project}=={version}", request={"project": project}, resolved=resolved,
                artifacts=arts)  # fmt: skip


def rpm_item(store: Store, repo: str, pkgs: list[tuple[str, str, str]]) -> Item:
    base = f"https://yum.example/{repo}/"
    arts = [_art(store, f"yum/{repo}/repodata/repomd.xml", f"<repomd>{pkgs}</repomd>".encode(),
                 base + "repodata/repomd.xml", "application/xml")]  # fmt: skip
    for name, version, license_ in pkgs:
        fname = f"Packages/{name}-{version}-1.x86_64.rpm"
        data = fake_rpm(name, version, "1", "x86_64", license_)
        arts.append(_art(store, f"yum/{repo}/{fname}", data, base + fname, "application/x-rpm"))
    resolved = {"id": repo, "mode": "full", "keys": [], "packages": [f"{n}-{v}-1.x86_64" for n, v, _ in pkgs]}
    return Item(kind="rpm", name=repo, request={"id": repo, "baseurl": base}, resolved=resolved, artifacts=arts)


def apt_item(store: Store, repo: str) -> Item:
    data = fake_deb("libdemo", "1.2-3", "amd64", "GPL-2.0-or-later")
    path = f"apt/{repo}/pool/main/libd/libdemo_1.2-3_amd64.deb"
    art = _art(store, path, data, f"https://deb.example/{path}", "application/vnd.debian.binary-package")
    rel = _art(store, f"apt/{repo}/dists/stable/InRelease", b"signed release", "https://deb.example/InRelease")
    return Item(kind="apt", name=repo, request={"id": repo, "uri": "https://deb.example/"},
                resolved={"id": repo}, artifacts=[art, rel])  # fmt: skip


def file_item(store: Store, path: str, data: bytes) -> Item:
    art = _art(store, f"files/{path}", data, f"https://{path}")
    return Item(kind="file", name=f"files/{path}", request={"url": f"https://{path}"}, artifacts=[art])


def build_archive(tmp: Path, items: list[Item], store: Store, name: str = "review.tar", **kw: Any) -> Built:
    lock = Lock.build(items)
    out = tmp / name
    pack(lock, store, out, **kw)
    return Built(lock, out, store)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp = tmp_path_factory.mktemp("inventory")
    store = Store(tmp / "store")
    store.ensure()
    items = [
        file_item(store, "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm", b"kubeadm binary\n" * 100),
        image_item(store, "nvcr.io/nvidia/k8s-device-plugin", "v0.15.0", "Apache-2.0"),
        image_item(store, "docker.io/library/busybox", "1.36", None),
        python_item(store, "gapdemo", "1.0", "BSD-2-Clause", with_sdist=True),
        python_item(store, "freetext", "2.0", "Some Custom License"),
        rpm_item(store, "el9", [("pa", "2.0", "MIT"), ("pb", "1.0", "GPLv2+ and MIT")]),
        apt_item(store, "jammy"),
    ]
    return build_archive(tmp, items, store)


def _rows(inv: Any) -> dict[tuple[str, str], Any]:
    return {(c.kind, c.name): c for c in inv.components}


def test_every_item_with_its_fields_and_license(built: Built) -> None:
    inv = inventory(archive=built.archive)
    rows = _rows(inv)
    assert len(rows) == len(built.lock.items) == 7
    kubeadm = rows[("file", "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm")]
    art = built.lock.items[[i.kind for i in built.lock.items].index("file")].artifacts[0]
    assert (kubeadm.digest, kubeadm.size, kubeadm.source, kubeadm.license) == (art.digest, art.size, art.source, None)
    plugin = rows[("image", "nvcr.io/nvidia/k8s-device-plugin")]
    assert (plugin.version, plugin.license) == ("v0.15.0", "Apache-2.0")
    image = next(i for i in built.lock.items if i.name.startswith("nvcr.io"))
    assert plugin.digest == image.resolved["digest"] and plugin.size == sum(a.size or 0 for a in image.artifacts)
    assert plugin.source is not None and plugin.source.endswith(f"/manifests/{plugin.digest}")
    assert rows[("image", "docker.io/library/busybox")].license is None
    demo = rows[("python", "gapdemo")]
    assert (demo.version, demo.license) == ("1.0", "BSD-2-Clause")
    assert [(p.name, p.version, p.license) for p in demo.packages] == [("gapdemo", "1.0", "BSD-2-Clause")] * 2
    assert rows[("python", "freetext")].license == "Some Custom License"
    el9 = rows[("rpm", "el9")]
    assert [(p.name, p.version, p.license) for p in el9.packages] == [
        ("pa", "2.0-1", "MIT"), ("pb", "1.0-1", "GPLv2+ and MIT")
    ]  # fmt: skip
    assert el9.packages[0].purl == "pkg:rpm/pa@2.0-1?arch=x86_64"
    jammy = rows[("apt", "jammy")]
    assert [(p.name, p.version, p.license) for p in jammy.packages] == [("libdemo", "1.2-3", "GPL-2.0-or-later")]


def test_table_lists_each_row_and_a_summary_by_kind(built: Built) -> None:
    text = render(inventory(archive=built.archive), "table")
    lines = text.splitlines()
    plugin = next(x for x in lines if x.startswith("image") and "k8s-device-plugin" in x)
    for field in ("v0.15.0", "Apache-2.0", "sha256:", "https://nvcr.io/v2/nvidia/k8s-device-plugin/manifests/"):
        assert field in plugin
    pa = next(x for x in lines if " pa " in f" {x.split()[1]} " and x.startswith("rpm"))
    assert "2.0-1" in pa and "MIT" in pa and "Packages/pa-2.0-1.x86_64.rpm" in pa
    demo_rows = [x for x in lines if x.startswith("python") and "gapdemo" in x]
    assert len(demo_rows) == 3 and all("BSD-2-Clause" in x for x in demo_rows)  # the project + wheel + sdist
    assert "summary by kind:" in lines
    summary = lines[lines.index("summary by kind:") + 1 :]
    image_line = next(x for x in summary if x.strip().startswith("image"))
    assert "2 item(s)" in image_line
    assert next(x for x in summary if x.strip().startswith("rpm")).count("2 package(s)") == 1
    total = built.lock.total_size()
    assert any(x.startswith(f"total: 7 item(s), {len(built.lock.blobs())} blob(s)") for x in summary), summary
    doc = json.loads(render(inventory(archive=built.archive), "json"))
    assert doc["total"]["bytes"] == total and doc["summary"]["python"]["items"] == 2


def test_spdx_and_cyclonedx_validate_against_their_schemas(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    inv = inventory(archive=built.archive)
    spdx = json.loads(render(inv, "spdx"))
    validate_spdx(spdx)
    cdx = json.loads(render(inv, "cyclonedx"))
    validate_cyclonedx(cdx)
    assert spdx["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    by_name = {p["name"]: p for p in spdx["packages"]}
    assert by_name["nvcr.io/nvidia/k8s-device-plugin"]["licenseDeclared"] == "Apache-2.0"
    assert by_name["pa"]["licenseDeclared"] == "MIT"
    assert by_name["pb"]["licenseDeclared"] == "LicenseRef-GPLv2-and-MIT"  # an RPM short name: kept as text
    assert by_name["freetext"]["licenseDeclared"].startswith("LicenseRef-")
    assert any(x["extractedText"] == "Some Custom License" for x in spdx["hasExtractedLicensingInfos"])
    assert by_name["docker.io/library/busybox"]["licenseDeclared"] == "NOASSERTION"
    contains = [r for r in spdx["relationships"] if r["relationshipType"] == "CONTAINS"]
    assert len(contains) == 2 + 3 + 1  # rpms, python dists (wheel + sdist, wheel), deb
    comps = {c["name"]: c for c in cdx["components"]}
    assert comps["nvcr.io/nvidia/k8s-device-plugin"]["licenses"] == [{"expression": "Apache-2.0"}]
    assert comps["gapdemo"]["components"][0]["licenses"] == [{"expression": "BSD-2-Clause"}]
    assert comps["freetext"]["licenses"] == [{"license": {"name": "Some Custom License"}}]
    assert cdx == json.loads(render(inventory(archive=built.archive), "cyclonedx"))  # deterministic


def test_inventory_of_a_split_compressed_and_differential_archive(built: Built, tmp_path: Path) -> None:
    whole = inventory(archive=built.archive).to_json()
    whole.pop("title")
    for name, kw in (("split.tar", {"split_size": 64 << 10}), ("z.tar.zst", {"compress": "zstd"})):
        other = build_archive(tmp_path, list(built.lock.items), built.store, name, **kw)
        target = other.archive.with_name("split.toc.json") if "split_size" in kw else other.archive
        got = inventory(archive=target).to_json()
        got.pop("title")
        assert got == whole, name
    # a differential archive: the licenses of blobs it leaves out are not stated, the rest are
    base = Lock.build([i for i in built.lock.items if i.kind != "rpm"])
    delta = build_archive(tmp_path, list(built.lock.items), built.store, "delta.tar", since=base)
    inv = inventory(archive=delta.archive)
    assert inv.differential and inv.blobs_present < inv.blobs
    rows = _rows(inv)
    assert rows[("rpm", "el9")].packages[0].license == "MIT"
    assert rows[("image", "nvcr.io/nvidia/k8s-device-plugin")].license is None  # its manifest is in the base
    assert "differential" in render(inv, "table")


def test_compressed_archive_copies_out_only_what_it_reads(built: Built, tmp_path: Path) -> None:
    z = build_archive(tmp_path, list(built.lock.items), built.store, "only.tar.zst", compress="zstd")
    want = wanted_blobs(z.lock)
    with open_archive(z.archive, wanted_blobs) as src:
        assert set(src.locs) == want
        layers = {a.digest for i in z.lock.items for a in i.artifacts if "layer" in a.media_type}
        assert not layers & set(src.locs)
        tmpdir = next(iter(src.locs.values())).path.parent
        assert tmpdir.is_dir()
    assert not tmpdir.exists()


def test_root_inventory_matches_the_archive(built: Built, tmp_path: Path) -> None:
    from gapcache.root import Root

    Root(tmp_path / "root").load([built.archive])
    a = inventory(archive=built.archive).to_json()
    r = inventory(root=tmp_path / "root").to_json()
    assert a["items"] == r["items"] and a["summary"] == r["summary"]


# ---- extractors ---------------------------------------------------------------------------------------


def test_rpm_header_reader(tmp_path: Path) -> None:
    import io

    hdr = read_rpm_header(io.BytesIO(fake_rpm("cuda-drivers", "550.54", "1.el9", "x86_64", "NVIDIA License", 3)))
    assert hdr is not None
    assert (hdr.name, hdr.evr, hdr.arch, hdr.license) == ("cuda-drivers", "3:550.54-1.el9", "x86_64", "NVIDIA License")
    assert read_rpm_header(io.BytesIO(b"not an rpm" * 20)) is None


def test_python_metadata_license_rules() -> None:
    assert parse_metadata(metadata("a", "1", "MIT")).license == "MIT"
    long_text = "Permission is hereby granted, free of charge, " * 20
    classified = metadata("a", "1", long_text, ("License :: OSI Approved :: Apache Software License",))
    assert parse_metadata(classified).license == "Apache-2.0"  # a whole license text: the classifier says it
    expr = b"Metadata-Version: 2.4\nName: a\nVersion: 1\nLicense-Expression: MIT OR Apache-2.0\nLicense: x\n\n"
    assert parse_metadata(expr).license == "MIT OR Apache-2.0"
    assert parse_metadata(metadata("a", "1", "UNKNOWN")).license is None


def test_license_expressions() -> None:
    assert spdx_expression("MIT") == "MIT"
    assert spdx_expression("mit or apache-2.0") == "MIT OR Apache-2.0"
    assert spdx_expression("GPLv2+") is None  # an RPM short name, not SPDX: carried as text
    assert spdx_expression(None) is None
    assert dep5_license("Format: x\n\nFiles: *\nLicense: Expat\n text\n") == "Expat"
    assert dep5_license("not machine readable\n") is None


# ---- diff ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_locks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Lock, Lock, Store]:
    tmp = tmp_path_factory.mktemp("diff")
    store = Store(tmp / "store")
    store.ensure()
    keep = file_item(store, "example.org/keep.txt", b"same\n")
    old = Lock.build([keep, file_item(store, "example.org/gone.txt", b"gone\n" * 10),
                      python_item(store, "requests", "2.31.0", "Apache-2.0")])  # fmt: skip
    new = Lock.build([keep, file_item(store, "example.org/new.txt", b"new\n" * 300),
                      python_item(store, "requests", "2.32.3", "Apache-2.0")])  # fmt: skip
    (tmp / "old.lock.json").write_bytes(old.to_bytes())
    (tmp / "new.lock.json").write_bytes(new.to_bytes())
    pack(old, store, tmp / "old.tar")
    pack(new, store, tmp / "new.tar")
    return tmp / "old.lock.json", tmp / "new.lock.json", old, new, store


def test_diff_reports_added_removed_changed_exactly(two_locks: tuple[Path, Path, Lock, Lock, Store]) -> None:
    old_path, new_path, old, new, _ = two_locks
    d = diff_locks(old, new)
    assert [i.name for i in d.added] == ["files/example.org/new.txt"]
    assert [i.name for i in d.removed] == ["files/example.org/gone.txt"]
    assert [(c.old.name, c.new.name) for c in d.changed] == [("requests==2.31.0", "requests==2.32.3")]
    assert d.unchanged == 1
    text, differ = diff_paths(old_path, new_path)
    assert differ
    lines = text.splitlines()
    assert lines[1] == "added: 1 item(s), 1.2 KiB"
    assert lines[2].startswith("  + file    files/example.org/new.txt  sha256:") and lines[2].endswith("(1.2 KiB)")
    assert "removed: 1 item(s), 50 B" in lines and any(
        x.startswith("  - file    files/example.org/gone.txt") for x in lines
    )
    changed = next(x for x in lines if x.startswith("  ~ "))
    old_size = sum(a.size or 0 for a in old.items[-1].artifacts)
    new_size = sum(a.size or 0 for a in new.items[-1].artifacts)
    assert "python  requests  2.31.0 → 2.32.3" in changed
    assert f"({human_bytes(old_size)} → {human_bytes(new_size)})" in changed
    assert "unchanged: 1 item(s)" in lines
    assert [x for x in lines if x.startswith(("  + ", "  - ", "  ~ "))] == [
        x for x in lines if x.startswith("  ") and not x.startswith("      ")
    ]


def test_diff_json_and_archives(two_locks: tuple[Path, Path, Lock, Lock, Store]) -> None:
    old_path, new_path, old, new, _ = two_locks
    doc = json.loads(diff_paths(old_path, new_path, as_json=True)[0])
    assert [i["name"] for i in doc["added"]] == ["files/example.org/new.txt"]
    assert doc["added"][0]["size"] == 1200
    assert doc["changed"][0]["old"]["version"] == "2.31.0" and doc["changed"][0]["new"]["version"] == "2.32.3"
    new_only = {d: s for d, s in new.blobs().items() if d not in old.blobs()}
    assert doc["new_blobs"] == {"count": len(new_only), "bytes": sum(new_only.values())}
    on_archives = json.loads(diff_paths(old_path.with_name("old.tar"), new_path.with_name("new.tar"), as_json=True)[0])
    for key in ("added", "removed", "changed", "unchanged", "new_blobs"):
        assert on_archives[key] == doc[key]
    same, differ = diff_paths(new_path, new_path.with_name("new.tar"))
    assert not differ and "changed: 0 item(s)" in same


def test_diff_matches_two_tags_of_one_image_by_full_name(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.ensure()
    one = image_item(store, "quay.io/team/app", "1", None)
    two = image_item(store, "quay.io/team/app", "2", None)
    d = diff_locks(Lock.build([one]), Lock.build([one, two]))
    assert [i.name for i in d.added] == ["quay.io/team/app:2"] and not d.changed and d.unchanged == 1


# ---- the command line ----------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gapcache")
    sub = p.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = p.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_commands(built: Built, two_locks: tuple[Path, Path, Lock, Lock, Store], capsys: Any) -> None:
    assert _cli(["inventory", str(built.archive)]) == 0
    assert "summary by kind:" in capsys.readouterr().out
    assert _cli(["inventory", str(built.archive), "--format", "spdx"]) == 0
    validate_spdx(json.loads(capsys.readouterr().out))
    old_path, new_path, *_ = two_locks
    assert _cli(["diff", str(old_path), str(new_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["unchanged"] == 1
    assert _cli(["diff", str(new_path), str(new_path)]) == 0
    with pytest.raises(SystemExit):
        _cli(["inventory", "--help"])
    help_text = capsys.readouterr().out
    assert "examples:" in help_text and "gapcache inventory deepops.tar" in help_text

"""Bounded memory and single passes at scale (issue 16, goal 5), on small archives: the lock checked
without keeping a model per item (lock.LockScan), ``verify`` of a split archive reading each part
once, a failed load of a split archive leaving nothing behind, ``ls`` printing rows as it reads,
and the manifest read from parser events (no node tree) with the same data and errors as before."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gapcache.archive import ArchiveReader, read_head, verify_archive
from gapcache.cli import main
from gapcache.errors import ArchiveError, GapcacheError, ManifestError
from gapcache.lock import LockScan, parse_lock
from gapcache.manifest import _compose, _compose_nodes, _load_plain, parse_manifest
from gapcache.root import Root
from helpers import build_local, random_bytes

CONTENT = {f"d{i % 3}/f{i}.bin": random_bytes(300_000 + i) for i in range(6)} | {
    "same.txt": b"two\n",
    "again.txt": b"two\n",
}


def _rchar() -> int:
    """Bytes this process has read so far (``/proc/self/io``: every read and pread, cached or not)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    tmp = tmp_path_factory.mktemp("split")
    res = build_local(tmp, CONTENT, split_size=1 << 20)
    assert res.packed is not None and res.packed.toc is not None and len(res.packed.parts) >= 2
    return tmp, res.packed.parts, res.packed.toc


def test_lock_scan_keeps_the_facts_of_the_parsed_lock(split: tuple[Path, list[Path], Path]) -> None:
    _, parts, _ = split
    head = read_head(parts[0])
    scan = LockScan(head.lock_bytes, "x").run()
    lock = parse_lock(head.lock_bytes, "x")
    assert scan.blobs == lock.blobs() and list(scan.blobs) == sorted(scan.blobs)
    assert scan.count == len(lock.items) == len(CONTENT)
    assert scan.total_size() == lock.total_size()
    keyed = LockScan(head.lock_bytes, "x", keys=True).run()
    assert keyed.keys == {f"{i.kind}\0{i.name}" for i in lock.items}
    with ArchiveReader(parts[0], parse=False) as r:  # the reader left the lock unparsed: scanned instead
        assert r.head.scan().blobs == lock.blobs() and r.head.bootstrap() == {}


@pytest.mark.parametrize("damage", ["no digest", "a path claimed twice", "bad digest"])
def test_lock_scan_refuses_what_parse_lock_refuses(split: tuple[Path, list[Path], Path], damage: str) -> None:
    _, parts, _ = split
    data = read_head(parts[0]).lock_bytes
    doc = json.loads(data)
    arts = [a for i in doc["items"] for a in i["artifacts"]]
    if damage == "no digest":
        del arts[3]["digest"]
    elif damage == "bad digest":
        arts[3]["digest"] = "sha256:xyz"
    else:
        arts[3]["path"] = arts[2]["path"]
        arts[3]["digest"] = arts[0]["digest"] if arts[2]["digest"] != arts[0]["digest"] else arts[1]["digest"]
    # the layout gapcache writes (validated in batches) and a foreign layout (validated whole)
    for bad in (json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n", json.dumps(doc).encode()):
        with pytest.raises(GapcacheError, match="invalid lock"):
            LockScan(bad, "lock.json").run()
        with pytest.raises(GapcacheError, match="invalid lock"):
            parse_lock(bad, "lock.json")


def test_verify_of_a_split_archive_reads_each_part_once(split: tuple[Path, list[Path], Path]) -> None:
    _, parts, toc = split
    total = sum(p.stat().st_size for p in parts)
    before = _rchar()
    report = verify_archive([toc])
    read = _rchar() - before
    assert report.ok and report.blobs == len(set(CONTENT.values()))
    assert total <= read < total * 1.2, f"read {read} bytes of {total}"


def test_verify_names_a_damaged_part_of_a_split_archive(tmp_path: Path) -> None:
    res = build_local(tmp_path, CONTENT, split_size=1 << 20)
    assert res.packed is not None and res.packed.toc is not None
    last = res.packed.parts[-1]
    with ArchiveReader(last) as r:
        blob = next(iter(r.blobs()))
    assert blob.offset is not None
    with open(last, "r+b") as f:
        f.seek(blob.offset + 7)
        byte = f.read(1)
        f.seek(blob.offset + 7)
        f.write(bytes([byte[0] ^ 0x55]))
    report = verify_archive([res.packed.toc])
    assert f"{last.name}: sha256 does not match the table of contents; re-send this part" in report.problems
    assert any(blob.digest in p and "corrupt" in p for p in report.problems)
    os.truncate(last, last.stat().st_size - 512)
    assert verify_archive([res.packed.toc]).problems == [
        f"{last.name}: size {last.stat().st_size}, expected {last.stat().st_size + 512}; re-send this part"
    ]


@pytest.mark.parametrize("with_toc", [True, False])
def test_a_failed_load_of_a_split_archive_leaves_nothing(tmp_path: Path, with_toc: bool) -> None:
    """The first parts are staged before the corrupt blob of the last one is found: nothing stays."""
    res = build_local(tmp_path, CONTENT, split_size=1 << 20)
    assert res.packed is not None and res.packed.toc is not None
    last = res.packed.parts[-1]
    with ArchiveReader(last) as r:
        offset = next(iter(r.blobs())).offset
    assert offset is not None
    data = bytearray(last.read_bytes())
    data[offset + 100] ^= 0x01
    last.write_bytes(bytes(data))
    root = Root(tmp_path / "deep" / "root")
    with pytest.raises(ArchiveError, match=r"corrupt|table of contents"):
        root.load([res.packed.toc] if with_toc else res.packed.parts)
    assert not (tmp_path / "deep").exists()  # every directory the load created is gone
    # a root that had a load before keeps exactly what it had
    good = build_local(tmp_path / "other", {"x.bin": b"x" * 5000})
    assert good.packed is not None
    root.load([good.packed.parts[0]])
    before = sorted(p.relative_to(root.path) for p in root.path.rglob("*"))
    with pytest.raises(ArchiveError):
        root.load([res.packed.toc] if with_toc else res.packed.parts)
    assert sorted(p.relative_to(root.path) for p in root.path.rglob("*")) == before


def test_ls_streams_the_same_rows(split: tuple[Path, list[Path], Path], capsys: pytest.CaptureFixture[str]) -> None:
    tmp, parts, toc = split
    lock = read_head(parts[0]).lock
    rows = [{"kind": i.kind, "name": i.name, "size": sum(a.size or 0 for a in i.artifacts)} for i in lock.items]
    assert main(["ls", str(toc), "--json"]) == 0
    assert capsys.readouterr().out == json.dumps(rows, indent=1) + "\n"  # the bytes json.dumps gave before
    assert main(["ls", str(toc)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(toc) and len(out) == len(rows) + 2
    assert out[-1].startswith(f"{len(rows)} item(s), {len(lock.blobs())} blob(s), ")
    root = tmp / "root"
    assert main(["load", str(toc), "--root", str(root), "-q"]) == 0
    capsys.readouterr()
    assert main(["ls", "--root", str(root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed] == [r["name"] for r in rows] and {r["set"] for r in listed} == {"out"}
    assert main(["verify", "--root", str(root), "-q"]) == 0


YAML = """\
format: 1
base: &base {url: "https://example.org/a/b.tar.gz", sha256: null}
files:
  - *base
  - url: https://example.org/c.txt
    path: 'x: y'
  - {<<: *base, path: z}
nested: [[1, 2.5, true, ~, 2020-01-02], {yes: no, 3: "3"}]
multi: |
  line one
  line two
"""


def test_manifest_data_from_events_is_the_composed_data() -> None:
    data, lines = _compose_nodes(YAML)
    assert _load_plain(YAML) == data == _compose(YAML)[0]
    assert _load_plain("") is None and _compose_nodes("")[0] is None
    lazy = _compose(YAML)[1]  # composed when first asked
    assert lazy.get(("files", 2), 1) == lines[("files", 2)] == 7 and ("nested",) in lazy and lazy == lines
    with pytest.raises(ManifestError, match="YAML syntax error"):
        parse_manifest("format: 1\n---\nformat: 1\n", "m.yaml")
    with pytest.raises(ManifestError, match=r"m\.yaml:5: files\[1\]\.sha256: not 64 hex digits"):
        parse_manifest(
            "format: 1\nfiles:\n  - url: https://e.org/a\n  - url: https://e.org/b\n    sha256: '12'\n", "m.yaml"
        )
    with pytest.raises(ManifestError, match="undefined alias"):
        parse_manifest("format: 1\nfiles: [*nope]\n", "m.yaml")

"""Upstream registries for the tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1,
seeded with images the tests write as OCI layouts and push with skopeo."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port, wait_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def layer(files: dict[str, bytes]) -> bytes:
    """A gzip'd tar layer with fixed metadata (the same files give the same digest)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o755, 0
            tf.addfile(ti, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def write_image(layout: Path, tag: str, platforms: dict[str, list[bytes]]) -> str:
    """An OCI layout holding ``tag``: one manifest, or an index when several platforms are given.

    ``platforms`` maps "os/arch" to its layers (gzip'd tars). Returns the tag's digest.
    """
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descs = []
    for plat, layers in platforms.items():
        os_, arch = plat.split("/")
        layer_descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, x)} for x in layers]
        diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(x)).hexdigest() for x in layers]
        config = json.dumps(
            {"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": diff_ids},
             "config": {"Cmd": ["/hello"]}},
            sort_keys=True,
        ).encode()  # fmt: skip
        manifest = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(layout, config)},
             "layers": layer_descs},
            sort_keys=True,
        ).encode()  # fmt: skip
        descs.append(
            {"mediaType": OCI_MANIFEST, **_blob(layout, manifest), "platform": {"os": os_, "architecture": arch}}
        )
    if len(descs) == 1:
        top = {k: v for k, v in descs[0].items() if k != "platform"}
    else:
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}, sort_keys=True).encode()
        top = {"mediaType": OCI_INDEX, **_blob(layout, index)}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    idx_path = layout / "index.json"
    existing = json.loads(idx_path.read_text())["manifests"] if idx_path.exists() else []
    existing = [m for m in existing if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    idx_path.write_text(json.dumps({"schemaVersion": 2, "manifests": [*existing, top]}))
    return str(top["digest"])


@dataclass
class Registry:
    port: int
    root: Path
    creds: tuple[str, str] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def push(self, layout: Path, tag: str, ref: str, fmt: str | None = None) -> None:
        cmd = ["skopeo", "copy", "--all", "--dest-tls-verify=false", "--preserve-digests"]
        if fmt:
            cmd = ["skopeo", "copy", "--dest-tls-verify=false", "--format", fmt]
        if self.creds:
            cmd += ["--dest-creds", f"{self.creds[0]}:{self.creds[1]}"]
        subprocess.run([*cmd, f"oci:{layout}:{tag}", f"docker://{self.host}/{ref}"], check=True, capture_output=True)

    def raw_manifest(self, ref: str) -> bytes:
        cmd = ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{self.host}/{ref}"]
        if self.creds:
            cmd += ["--creds", f"{self.creds[0]}:{self.creds[1]}"]
        return subprocess.run(cmd, check=True, capture_output=True).stdout


@contextlib.contextmanager
def docker_registry(root: Path, creds: tuple[str, str] | None = None) -> Iterator[Registry]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    auth = ""
    if creds:
        htpasswd = subprocess.run(["htpasswd", "-Bbn", *creds], check=True, capture_output=True, text=True).stdout
        (root / "htpasswd").write_text(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {root / 'htpasswd'}\n"
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    with open(root / "registry.log", "w") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(port, None)
            yield Registry(port, root, creds)
        finally:
            proc.terminate()
            proc.wait(10)

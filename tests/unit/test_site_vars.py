"""`gapcache vars --https` names the mirror's CA in every client's configuration (and carries the CA
that `serve --tls auto` keeps in the root), instead of trusting hosts blindly."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gapcache import tls
from gapcache.lock import Artifact, Item, Lock
from gapcache.root import Root
from gapcache.store import atomic_write
from vars_cli import run_gapcache


def _item(kind: str, name: str, path: str, resolved: dict[str, str], request: dict[str, str]) -> Item:
    dg = "sha256:" + hashlib.sha256(path.encode()).hexdigest()
    art = Artifact(path=path, source=f"https://up.example/{path}", digest=dg, size=1)
    return Item(kind=kind, name=name, request=request, resolved=resolved, artifacts=[art])


def _root(tmp: Path) -> Path:
    lock = Lock(items=[
        _item("image", "nvcr.io/nvidia/cuda:12", "images/nvcr.io/nvidia/cuda/manifests/x",
              {"name": "nvcr.io/nvidia/cuda", "digest": "sha256:" + "0" * 64, "tag": "12"},
              {"ref": "nvcr.io/nvidia/cuda:12"}),
        _item("python", "six==1.17.0", "python/six/six.whl", {"project": "six"}, {"project": "six"}),
    ])  # fmt: skip
    root = Root(tmp / "root")
    name = lock.sha256() + ".json"
    root.locks.mkdir(parents=True)
    atomic_write(root.locks / name, lock.to_bytes())
    atomic_write(root.current_file, (name + "\n").encode())
    tls.auto(root.path / "tls", ["m.lan"])
    return root.path


def test_https_vars_name_the_ca_and_carry_it(tmp_path: Path) -> None:
    root = _root(tmp_path)
    out = tmp_path / "out"
    res = run_gapcache("vars", "--https", "--mirror-host", "m.lan", "--root", str(root), "-o", str(out))
    assert res.returncode == 0, res.stderr
    ca = "/etc/gapcache/ca.crt"
    pip = (out / "clients/pip.conf").read_text()
    assert f"cert = {ca}" in pip and "trusted-host" not in pip and "https://m.lan:8003/simple/" in pip
    assert f'ca = "{ca}"' in (out / "clients/containerd/certs.d/nvcr.io/hosts.toml").read_text()
    pem = (root / "tls/ca.crt").read_text()
    assert (out / "clients/ca.crt").read_text() == pem
    assert (out / "clients/containers/certs.d/m.lan:5000/ca.crt").read_text() == pem
    assert (out / "clients/docker/certs.d/m.lan:5000/ca.crt").read_text() == pem
    sh = (out / "offline_repo_shell_vars.sh").read_text()
    assert f'export PIP_CERT="{ca}"' in sh and "PIP_TRUSTED_HOST" not in sh
    assert f"gapcache_mirror_ca: {ca}" in (out / "offline_repo_vars.yml").read_text()
    # plain http: no CA anywhere, hosts trusted as before
    res = run_gapcache("vars", "--mirror-host", "m.lan", "--root", str(root), "-o", str(tmp_path / "plain"))
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "plain/clients/ca.crt").exists()
    assert "trusted-host = m.lan" in (tmp_path / "plain/clients/pip.conf").read_text()

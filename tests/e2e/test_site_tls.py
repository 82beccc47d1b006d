"""TLS end to end: ``serve --tls auto`` makes a CA and a server certificate in the root; curl, pip and
skopeo then fetch a file, install a package and inspect an image trusting only that CA — no
insecure flags — on 127.0.0.1. The CA is published at /ca.crt; a client without it is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import UpstreamHandle, cli_env, free_port, gapcache, wait_port
from helpers import serve_dir
from registry import docker_registry, layer, write_image
from reviewkit import wheel, wheel_name, write_index
from sitekit import get

pytestmark = pytest.mark.slow
CA_VARS = {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, upstream_server: UpstreamHandle) -> Iterator[Path]:
    """A root loaded with a file, an image and a Python package."""
    tmp = tmp_path_factory.mktemp("tls")
    dists = {wheel_name(n, v): wheel(n, v, "MIT") for n, v in [("gapdemo", "1.0"), ("pip", "99.0"),
                                                                ("setuptools", "99.0"), ("wheel", "99.0")]}  # fmt: skip
    write_index(tmp / "index", dists)
    url = upstream_server.put("tls/kubeadm", b"kubeadm over tls\n" * 1000)
    with docker_registry(tmp / "registry") as reg, serve_dir(tmp / "index") as index:
        write_image(tmp / "oci", "1", {"linux/amd64": [layer({"hello": b"hi\n"})]})
        reg.push(tmp / "oci", "1", "team/app:1")
        m = tmp / "m.yaml"
        m.write_text(
            f"format: 1\nfiles:\n  - url: {url}\n"
            f"images:\n  - {reg.host}/team/app:1\nregistries:\n  {reg.host}: {{insecure: true}}\n"
            f"python:\n  requirements: [gapdemo]\n  index_url: {index}/simple/\n"
            "  targets:\n    - {python: '3.11', platform: manylinux_2_28_x86_64}\n"
        )
        res = gapcache("build", "-f", m, "-o", tmp / "a.tar", "--store", tmp / "store", "-q", timeout=600)
        assert res.returncode == 0, res.stderr
        name = f"{reg.host.replace(':', '_')}/team/app"
    res = gapcache("load", tmp / "a.tar", "--root", tmp / "root", "-q")
    assert res.returncode == 0, res.stderr
    (tmp / "image.txt").write_text(name)
    yield tmp


def test_tls_auto_with_curl_pip_and_skopeo(mixed: Path, tmp_path: Path) -> None:
    root = mixed / "root"
    ports = {n: free_port() for n in ("registry", "pypi", "files")}
    cmd = [sys.executable, "-m", "gapcache", "serve", "--root", str(root), "--bind", "127.0.0.1", "--tls", "auto",
           "--tls-name", "mirror.test", "--port", "repos=0", "--port", "charts=0",
           *[x for n, p in ports.items() for x in ("--port", f"{n}={p}")]]  # fmt: skip
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(cmd, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            for p in ports.values():
                wait_port(p, proc)
            _clients(root, ports, mixed, tmp_path)
        finally:
            proc.terminate()
            proc.wait(10)
    assert "made" in (tmp_path / "serve.log").read_text()


def _clients(root: Path, ports: dict[str, int], mixed: Path, tmp: Path) -> None:
    ca = root / "tls" / "ca.crt"
    assert ca.is_file() and (root / "tls/ca.key").stat().st_mode & 0o077 == 0
    files = f"https://127.0.0.1:{ports['files']}"
    # the CA is published on the files listener, and is the one in the root
    assert get(f"{files}/ca.crt", ca) == (200, ca.read_bytes())
    # curl: verified against the CA only; without it, refused
    path = f"127.0.0.1_{_upstream_port(root)}/tls/kubeadm"
    out = subprocess.run(["curl", "-sSf", "--cacert", str(ca), f"{files}/{path}"], capture_output=True)
    assert out.returncode == 0 and out.stdout == b"kubeadm over tls\n" * 1000, out.stderr
    bad = subprocess.run(["curl", "-sSf", "--capath", "/nonexistent", "--cacert", "/dev/null", f"{files}/{path}"],
                         capture_output=True)  # fmt: skip
    assert bad.returncode != 0
    # pip: install from the https index, trusting the CA (no --trusted-host)
    # a clean client: this host's CA bundle variables (REQUESTS_CA_BUNDLE wins over pip's --cert) go
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k not in CA_VARS}
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    pip = subprocess.run(
        [str(tmp / "venv/bin/python"), "-m", "pip", "install", "--index-url",
         f"https://127.0.0.1:{ports['pypi']}/simple/", "--cert", str(ca), "gapdemo"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stdout + pip.stderr
    ver = subprocess.run([str(tmp / "venv/bin/python"), "-c", "import gapdemo; print(gapdemo.VERSION)"],
                         capture_output=True, text=True)  # fmt: skip
    assert ver.stdout.strip() == "1.0"
    # skopeo: the CA in a cert dir, TLS verification on (its default)
    certs = tmp / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(ca.read_bytes())
    image = f"docker://127.0.0.1:{ports['registry']}/{(mixed / 'image.txt').read_text()}:1"
    sk = subprocess.run(["skopeo", "inspect", "--cert-dir", str(certs), image], capture_output=True, text=True)
    assert sk.returncode == 0, sk.stderr
    assert '"Architecture": "amd64"' in sk.stdout
    sk = subprocess.run(["skopeo", "inspect", image], capture_output=True, text=True)  # no CA: refused
    assert sk.returncode != 0 and "certificate" in sk.stderr


def _upstream_port(root: Path) -> str:
    from gapcache.root import Root

    path = next(a.path for a in Root(root).current_lock().artifacts() if a.path.startswith("files/"))
    return path.split("/")[1].rsplit("_", 1)[1]


def test_tls_auto_keeps_the_ca_and_remakes_the_server_cert_for_new_names(tmp_path: Path) -> None:
    from cryptography import x509

    from gapcache import tls

    files, made = tls.auto(tmp_path, ["a.test", "10.0.0.5"])
    assert made
    ca = files.ca.read_bytes() if files.ca else b""
    assert tls.auto(tmp_path, ["a.test"]) == (files, False)  # covered: kept
    _, made = tls.auto(tmp_path, ["a.test", "b.test"])
    assert made and files.ca and files.ca.read_bytes() == ca  # same CA, new server certificate
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in san} == {"a.test", "b.test"}

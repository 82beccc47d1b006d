"""RHEL entitlement certificates (issue 19, item 2): a yum repo's ``sslclientcert``/``sslclientkey``/
``sslcacert`` reach an upstream that requires a client certificate — nginx with ``ssl_verify_client
on`` and a test CA, serving a signed createrepo_c repo — and the archive built through it loads and
serves inside ``unshare -n`` (dnf installs from it). Without the certificate, with one the server
does not accept, or with a key that is not the certificate's, the build says so, naming the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clientpki import Pki, handshake_refusing_server, make_pki
from conftest import free_port, gapcache, wait_port
from rpmrepo import build_repo

pytestmark = pytest.mark.slow
E2E = Path(__file__).parents[1] / "e2e"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Cdn:
    base: str  # https://127.0.0.1:PORT/el9
    access_log: Path


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Cdn]:
    """nginx on 127.0.0.1 over TLS, requiring a client certificate by the test CA (``ssl_verify_client
    on``), serving a signed repo (pa → pb → pc, pd) and its key; the log records the client's DN."""
    if shutil.which("nginx") is None:
        pytest.skip("needs nginx (scripts/setup.sh)")
    work = tmp_path_factory.mktemp("cdn")
    repo, pub = build_repo(work / "build")
    www = work / "www"
    shutil.copytree(repo, www / "el9")
    (www / "el9" / "RPM-GPG-KEY-test").write_bytes(pub)
    port = free_port()
    temps = "\n".join(f"  {t}_temp_path {work}/{t};" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = work / "nginx.conf"
    user = "user root;" if os.getuid() == 0 else ""  # workers read the repo under pytest's 0700 tmp
    conf.write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{
{temps}
  log_format dn '$status "$ssl_client_s_dn" $request_method $uri';
  access_log {work}/access.log dn;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {pki.server_cert};
    ssl_certificate_key {pki.server_key};
    ssl_client_certificate {pki.ca};
    ssl_verify_client on;
    root {www};
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)], stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)  # type: ignore[arg-type]
        yield Cdn(f"https://127.0.0.1:{port}/el9", work / "access.log")
    finally:
        proc.terminate()
        proc.wait(10)


def _repo(repo_id: str, base: str, extra: str = "", /, **tls_options: object) -> str:
    text = f"  - id: {repo_id}\n    baseurl: {base}/\n    gpgkey: [{base}/RPM-GPG-KEY-test]\n{extra}"
    return text + "".join(f"    {k}: {v}\n" for k, v in tls_options.items())


def _build(tmp: Path, repos: str, *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    m = tmp / "yum.yaml"
    m.write_text("format: 1\nyum:\n" + repos)
    env = {"XDG_CONFIG_HOME": str(tmp / "config")}  # the site key that signs the subset's repodata
    out: list[str | Path] = ["-o", tmp / "yum.tar"] if "--plan" not in extra else []
    return gapcache("build", "-f", m, *out, "--store", tmp / "store", "-q", *extra, env=env, cwd=cwd)


def test_entitlement_reaches_the_upstream_and_the_archive_serves_dnf(tmp_path: Path, pki: Pki, cdn: Cdn) -> None:
    # relative paths, as a site keeps its manifest beside the entitlement; gapcache runs from there
    for f in (pki.cert, pki.key, pki.ca):
        shutil.copy(f, tmp_path / f.name)
    opts = {"sslclientcert": pki.cert.name, "sslclientkey": pki.key.name, "sslcacert": pki.ca.name}
    repos = _repo("test-full", cdn.base, **opts) + _repo(
        "test-sub", cdn.base, "    mode: packages\n    packages: [pa]\n", **opts
    )
    res = _build(tmp_path, repos, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    log = cdn.access_log.read_text().splitlines()
    rpms = [line for line in log if line.endswith(".rpm")]
    assert rpms and all(line.startswith('200 "CN=entitlement"') for line in rpms), log  # the client cert was sent
    assert any("RPM-GPG-KEY-test" in line and line.startswith("200 ") for line in log)  # gpgkey: same host
    lock = json.loads((tmp_path / "yum.tar.lock.json").read_text())
    sub = next(i for i in lock["items"] if i["name"] == "test-sub")
    assert sub["resolved"]["packages"] == ["pa-2.0-1.x86_64", "pb-1.0-1.x86_64", "pc-1.0-1.noarch"]
    assert sub["request"]["sslclientcert"] == str(tmp_path / pki.cert.name)  # absolute in the lock
    assert "sslverify" not in sub["request"]  # the default is not written
    # the offline side: load and serve inside `unshare -n`; dnf (gpgcheck on) installs pa's closure
    out = tmp_path / "offline"
    out.mkdir()
    cmd = ["unshare", "-n", "bash", str(E2E / "airgap_yum.sh"), sys.executable, str(tmp_path / "yum.tar"),
           str(tmp_path / "root"), str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert run.returncode == 0, run.stdout + run.stderr + "".join(p.read_text() for p in out.glob("*.log"))
    assert (out / "route.txt").read_text() == ""
    installed = [x for x in (out / "installed.txt").read_text().split() if not x.startswith("gpg-pubkey")]
    assert installed == ["pa-2.0", "pb-1.0", "pc-1.0"]
    for name in ("repos.d/test-sub.repo", "test-full.repo"):  # the mirror's .repo files carry no entitlement
        text = (out / name).read_text()
        assert "baseurl=http://127.0.0.1:8001/" in text and "ssl" not in text, text


def test_without_the_client_certificate_the_build_fails_naming_the_repo(tmp_path: Path, pki: Pki, cdn: Cdn) -> None:
    res = _build(tmp_path, _repo("rhel-appstream", cdn.base, sslcacert=pki.ca))
    assert res.returncode == 1, res.stderr
    assert "rhel-appstream" in res.stderr and "HTTP 400" in res.stderr, res.stderr
    assert "set sslclientcert and sslclientkey" in res.stderr, res.stderr
    assert not (tmp_path / "yum.tar").exists()
    # and without the CA the upstream's certificate is not trusted: said at once, not retried
    start = time.monotonic()
    res = _build(tmp_path, _repo("rhel-appstream", cdn.base, sslclientcert=pki.cert, sslclientkey=pki.key))
    assert res.returncode == 1 and "rhel-appstream" in res.stderr, res.stderr
    assert "the server's certificate is not trusted (sslcacert of yum repo rhel-appstream)" in res.stderr, res.stderr
    assert time.monotonic() - start < 20
    # sslverify: false, as dnf has it, skips that check
    res = _build(
        tmp_path,
        _repo("rhel-appstream", cdn.base, sslclientcert=pki.cert, sslclientkey=pki.key, sslverify="false"),
        "--plan",
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_certificate_the_server_does_not_accept_is_said_to_be_refused(tmp_path: Path, pki: Pki, cdn: Cdn) -> None:
    stranger = {"sslclientcert": pki.stranger_cert, "sslclientkey": pki.stranger_key, "sslcacert": pki.ca}
    res = _build(tmp_path, _repo("rhel-baseos", cdn.base, **stranger))
    assert res.returncode == 1, res.stderr
    assert "rhel-baseos" in res.stderr and f"refused the client certificate sslclientcert {pki.stranger_cert}" in (
        res.stderr
    ), res.stderr
    # a server that refuses in the TLS handshake itself (OpenSSL's s_server requiring a certificate)
    with handshake_refusing_server(pki, tmp_path) as port:
        start = time.monotonic()
        res = _build(tmp_path, _repo("rhel-baseos", f"https://127.0.0.1:{port}/el9", **stranger))
        assert res.returncode == 1, res.stderr
        assert "rhel-baseos" in res.stderr and "refused the client certificate of yum repo rhel-baseos" in res.stderr
        assert time.monotonic() - start < 10, "a refused certificate is not a transient failure (retries: 12 s+)"


def test_a_key_that_is_not_the_certificates_is_a_manifest_error(tmp_path: Path, pki: Pki, cdn: Cdn) -> None:
    res = _build(tmp_path, _repo("rhel-baseos", cdn.base, sslclientcert=pki.cert, sslclientkey=pki.other_key))
    assert res.returncode == 2, res.stderr
    assert f"rhel-baseos: sslclientkey {pki.other_key} is not the key of sslclientcert {pki.cert}" in res.stderr
    assert "yum.yaml:" in res.stderr  # the manifest's line
    missing = tmp_path / "gone.pem"
    res = _build(tmp_path, _repo("rhel-baseos", cdn.base, sslclientcert=missing, sslclientkey=pki.key))
    assert res.returncode == 2 and f"rhel-baseos: sslclientcert {missing}: no such file" in res.stderr, res.stderr
    # a relative path that is not there either (checked before any request)
    res = _build(tmp_path, _repo("rhel-baseos", cdn.base, sslclientcert="nope.pem"), cwd=tmp_path)
    assert (
        res.returncode == 2 and "rhel-baseos: sslclientcert" in res.stderr and "nope.pem: no such file" in (res.stderr)
    ), res.stderr

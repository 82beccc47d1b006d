"""Issue 19, item 4 acceptance: nginx as a caching proxy (``proxy_cache``, honouring the mirror's
headers, revalidating with ``proxy_cache_revalidate``) in front of the yum mirror. After a new
version of the repository is loaded, dnf through the proxy sees its new packages — the repodata
is not kept for a year — while the packages themselves (versioned names) are served from the
proxy's cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, gapcache, serving, wait_port


def _manifest(path: Path, base: str, packages: list[str]) -> Path:
    path.write_text(
        "format: 1\nyum:\n"
        f"  - id: test-sub\n    baseurl: {base}/\n    gpgkey: [{base}/RPM-GPG-KEY-test]\n"
        f"    mode: packages\n    packages: [{', '.join(packages)}]\n"
    )
    return path


def _nginx(work: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.getuid() == 0 else ""  # workers must write the cache directory
    conf = work / "nginx.conf"
    conf.write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {work}/access.log;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  proxy_cache_path {work}/cache keys_zone=mirror:1m max_size=100m inactive=1d;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_cache mirror;
      proxy_cache_revalidate on;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)])
    wait_port(port)
    return proc, port


def _get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read(), r.headers.get("X-Cache-Status", "")


def _dnf(tmp: Path, proxy: str, run: str, *args: str) -> subprocess.CompletedProcess[str]:
    repos = tmp / f"repos-{run}"
    repos.mkdir()
    (repos / "test-sub.repo").write_bytes(_get(f"{proxy}/test-sub.repo")[0])
    cmd = ["dnf", "-y", "-q", "--noplugins", "--releasever=9", f"--setopt=reposdir={repos}",
           f"--setopt=cachedir={tmp / f'cache-{run}'}", f"--installroot={tmp / f'root-{run}'}", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_dnf_through_a_caching_proxy_sees_a_new_load(tmp_path: Path, yum_upstream: str) -> None:
    if shutil.which("nginx") is None or shutil.which("dnf") is None:
        pytest.skip("needs nginx and dnf (scripts/setup.sh)")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}  # one site key for both versions
    for version, packages in (("v1", ["pc"]), ("v2", ["pa"])):
        m = _manifest(tmp_path / f"{version}.yaml", yum_upstream, packages)
        res = gapcache("build", "-f", m, "-o", tmp_path / f"{version}.tar", "--store", tmp_path / "store", env=env)
        assert res.returncode == 0, res.stderr
    root = tmp_path / "root"
    assert gapcache("load", tmp_path / "v1.tar", "--root", root).returncode == 0
    with serving(root, listener="repos") as (_, port):
        proc, pport = _nginx(tmp_path / "nginx", port)
        try:
            proxy = f"http://127.0.0.1:{pport}"
            first = _dnf(tmp_path, proxy, "1", "install", "pc")
            assert first.returncode == 0, first.stdout + first.stderr
            assert _dnf(tmp_path, proxy, "1b", "install", "pa").returncode != 0  # not in v1
            repomd_v1 = _get(f"{proxy}/test-sub/repodata/repomd.xml")[0]
            res = gapcache("load", tmp_path / "v2.tar", "--root", root)
            assert res.returncode == 0, res.stderr
            deadline = time.monotonic() + 20
            while _get(f"http://127.0.0.1:{port}/test-sub/repodata/repomd.xml")[0] == repomd_v1:
                assert time.monotonic() < deadline, "the mirror did not switch to v2"
                time.sleep(0.2)
            # through the proxy: the new repodata at once, and the new packages install
            assert _get(f"{proxy}/test-sub/repodata/repomd.xml")[0] != repomd_v1
            second = _dnf(tmp_path, proxy, "2", "install", "pa")
            assert second.returncode == 0, second.stdout + second.stderr
            installed = subprocess.run(["rpm", "--root", str(tmp_path / "root-2"), "-qa", "--qf", "%{NAME}\n"],
                                       capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
            assert {"pa", "pb", "pc"} <= set(installed)
            # a versioned package is kept by the proxy (a HIT once fetched); the repodata is not
            lock = json.loads((tmp_path / "v2.tar.lock.json").read_text())
            rpm = next(a["path"] for i in lock["items"] for a in i["artifacts"] if a["path"].endswith(".rpm"))
            url = f"{proxy}/{rpm.removeprefix('yum/')}"
            _get(url)
            assert _get(url)[1] == "HIT"
            assert _get(f"{proxy}/test-sub/repodata/repomd.xml")[1] != "HIT"
        finally:
            proc.terminate()
            proc.wait(10)

"""`gapcache vars` end to end: a lock with files, images, Python and yum content from real upstream
fixtures; the generated variables rendered by Ansible itself; then inside `unshare -n` two mirrors
(127.0.0.2, 127.0.0.3) and real clients using only what `vars` wrote — every URL and registry
answers, dnf (gpgcheck on), pip (pip.conf only), podman (registries.conf), containerd's ctr
(hosts.toml) also with the first mirror stopped — and the shipped playbooks run twice (changed=0
the second time), the systemd unit's command run directly."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import UpstreamHandle, gapcache
from registry import docker_registry, layer, write_image
from vars_cli import run_gapcache

HERE = Path(__file__).parent
VENV_BIN = Path(sys.executable).parent
MIRRORS = "127.0.0.2,127.0.0.3"
FILES = {  # upstream path on the fixture → the path it keeps in the mirror (Kubespray's layout)
    "k/amd64/kubeadm": "dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm",
    "k/arm64/kubeadm": "dl.k8s.io/release/v1.31.1/bin/linux/arm64/kubeadm",
    "n/nerdctl.tgz": "github.com/containerd/nerdctl/releases/download/v1.7.7/nerdctl-1.7.7-linux-amd64.tar.gz",
    "s/slurm.tar.bz2": "download.schedmd.com/slurm/slurm-24.05.1.tar.bz2",
}


@dataclass
class Built:
    tmp: Path
    lock: Path
    archive: Path
    root: Path
    registry: str


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: UpstreamHandle, yum_upstream: str
) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("vars")
    files = [{"url": upstream_server.put(f"vars/{src}", f"{dst}\n".encode() * 50), "path": dst}
             for src, dst in FILES.items()]  # fmt: skip
    with docker_registry(tmp / "registry") as reg:
        oci = tmp / "oci"
        write_image(oci, "1", {"linux/amd64": [layer({"app": b"app\n" * 100})]})
        reg.push(oci, "1", "team/app:1")
        write_image(oci, "2", {"linux/amd64": [layer({"other": b"other\n" * 100})]})
        reg.push(oci, "2", "team/other:2")
        manifest = {
            "format": 1,
            "files": files,
            "platforms": ["linux/amd64"],
            "images": [f"{reg.host}/team/app:1", f"{reg.host}/team/other:2"],
            "registries": {reg.host: {"insecure": True}},
            "python": {"requirements": ["six"], "targets": [{"python": "3.11", "platform": "manylinux_2_28_x86_64"}]},
            "yum": [{"id": "test-sub", "baseurl": f"{yum_upstream}/", "gpgkey": [f"{yum_upstream}/RPM-GPG-KEY-test"],
                     "mode": "packages", "packages": ["pa"]}],
        }  # fmt: skip
        m = tmp / "m.yaml"
        m.write_text(yaml.safe_dump(manifest, sort_keys=False))
        env = {"XDG_CONFIG_HOME": str(tmp / "config")}
        archive = tmp / "all.tar"
        gapcache("build", "-f", m, "-o", archive, "--store", tmp / "store", "-q", env=env, check=True, timeout=600)
        gapcache("load", archive, "--root", tmp / "root", "-q", check=True)
        yield Built(tmp, tmp / "all.tar.lock.json", archive, tmp / "root", reg.host)


def render_with_ansible(vars_file: Path, out: Path, **extra: str) -> dict[str, Any]:
    """Every variable of ``vars_file`` as Ansible itself renders it."""
    names = list(yaml.safe_load(vars_file.read_text()))
    play = out.with_suffix(".render.yml")
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.copy:\n"
        "        dest: '{{ render_out }}'\n"
        "        content: \"{{ dict(names | zip(query('vars', *names))) | to_nice_json }}\"\n"
    )
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{vars_file}",
           "-e", json.dumps({"names": names, "render_out": str(out), **extra}), str(play)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    rendered: dict[str, Any] = json.loads(out.read_text())
    return rendered


def strings(value: Any) -> Iterator[tuple[str, str]]:
    """(key, string) for every string in a structure, with its nearest key."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        key, v = stack.pop()
        if isinstance(v, str):
            yield key, v
        elif isinstance(v, list):
            stack += [(key, x) for x in v]
        elif isinstance(v, dict):
            stack += list(v.items())


@pytest.mark.slow
def test_vars_clients_and_playbooks_inside_an_air_gap(built: Built, tmp_path: Path) -> None:
    vars_dir = tmp_path / "config/airgap"
    res = run_gapcache("vars", "--mirror-host", MIRRORS, "--lock", built.lock, "-o", vars_dir)
    assert res.returncode == 0, res.stderr
    vars_file = vars_dir / "offline_repo_vars.yml"
    raw = yaml.safe_load(vars_file.read_text())
    # only what the lock holds: no charts, no apt; Kubespray's variables for the files present
    assert "deepops_charts_mirror" not in raw and "deepops_apt_mirror" not in raw and "gapcache_apt_repos" not in raw
    assert (
        raw["kubeadm_download_url"] == "{{ files_repo }}/dl.k8s.io/release/v1.31.1/bin/linux/{{ image_arch }}/kubeadm"
    )
    assert raw["nerdctl_download_url"].endswith("/nerdctl-1.7.7-linux-amd64.tar.gz")
    assert raw["slurm_src_url"] == "{{ deepops_misc_mirror }}/download.schedmd.com/slurm/slurm-24.05.1.tar.bz2"
    assert "kubectl_download_url" not in raw and "etcd_download_url" not in raw
    assert [m["prefix"] for m in raw["containerd_registries_mirrors"]] == [built.registry]
    out = tmp_path / "out"
    out.mkdir()
    rendered = render_with_ansible(vars_file, out / "rendered.json", image_arch="amd64")
    urls = {v for _, v in strings(rendered) if "://" in v}
    arm = render_with_ansible(vars_file, out / "rendered-arm.json", image_arch="arm64")["kubeadm_download_url"]
    urls.add(arm)
    assert all(re.match(r"^http://127\.0\.0\.[23]:\d+(/|$)", u) for u in urls), urls
    # a registry URL (docker_registry_mirrors, containerd's mirror hosts) answers on the API root
    urls = {f"{u.rstrip('/')}/v2/" if re.match(r"^http://[^/]+:5000/?$", u) else u for u in urls}
    registries = {v.split("/")[0] for k, v in strings(rendered) if "://" not in v and re.search(r"registr|mirror", k)
                  and re.match(r"^127\.0\.0\.[23]:\d+", v)}  # fmt: skip
    assert registries == {"127.0.0.2:5000", "127.0.0.3:5000"}, registries
    images = [f"{v}" for k, v in strings(rendered) if k.endswith(("_container", "_image")) and ":" in v.split("/")[-1]]
    images += [f"127.0.0.2:5000/{built.registry.replace(':', '_')}/team/app:1"]
    (out / "urls.txt").write_text("".join(f"{u}\n" for u in sorted(urls)))
    (out / "registries.txt").write_text("".join(f"{r}\n" for r in sorted(registries)))
    (out / "images.txt").write_text("".join(f"{i}\n" for i in images))
    sh_names = re.findall(r"^export (\w+)=", (vars_dir / "offline_repo_shell_vars.sh").read_text(), re.M)
    (out / "shell-names.txt").write_text("".join(f"{n}\n" for n in sh_names))
    pb = tmp_path / "playbooks/airgap"
    run_gapcache("playbooks", pb, check=True)
    (pb / "site.yml").write_text("".join(f"- import_playbook: {n}\n" for n in (
        "build-offline-mirrors.yml", "use-offline-yum-mirrors.yml", "use-offline-apt-mirrors.yml",
        "use-offline-container-mirrors.yml", "use-offline-pip-mirror.yml")))  # fmt: skip
    t = out / "pb"
    (t / "yum.repos.d").mkdir(parents=True)
    (t / "yum.repos.d/CentOS-Base.repo").write_text("[base]\nbaseurl=http://mirror.centos.org/\n")
    (t / "docker").mkdir()
    (t / "docker/daemon.json").write_text('{"log-driver": "journald"}\n')
    pb_vars = {
        "gapcache_become": False, "tar_file_path": str(built.archive), "gapcache_root": str(t / "root"),
        "gapcache_command": str(VENV_BIN / "gapcache"), "gapcache_bind": "127.0.0.4",
        "gapcache_unit_dir": str(t / "systemd"), "gapcache_systemd_run_dir": str(t / "no-systemd"),
        "gapcache_yum_repos_dir": str(t / "yum.repos.d"), "gapcache_rpm_keys_dir": str(t / "rpm-gpg"),
        "gapcache_apt_sources_dir": str(t / "apt/sources.list.d"),
        "gapcache_apt_sources_list": str(t / "apt/sources.list"),
        "gapcache_apt_keyrings_dir": str(t / "apt/keyrings"), "gapcache_containerd_certs_dir": str(t / "certs.d"),
        "gapcache_docker_daemon_json": str(t / "docker/daemon.json"),
        "gapcache_registries_conf_d": str(t / "registries.conf.d"), "gapcache_pip_conf": str(t / "pip.conf"),
    }  # fmt: skip
    (t / "systemd").mkdir()
    (out / "pb-vars.yml").write_text(yaml.safe_dump(pb_vars))
    cmd = ["unshare", "-n", "bash", str(HERE / "airgap_vars.sh"), sys.executable, str(built.root), str(vars_dir),
           str(out), str(pb), built.registry]  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    logs = "".join(f"\n== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(out.glob("*.log")))
    assert run.returncode == 0, run.stdout + run.stderr + logs
    assert (out / "route.txt").read_text() == ""  # the namespace has no way out
    # 1. every URL and registry answers; the shell vars sourced
    statuses = (out / "url-status.txt").read_text().splitlines()
    assert len(statuses) >= len(urls) and all(s.startswith("200 ") for s in statuses), statuses
    assert all(s.startswith("200 ") for s in (out / "registry-status.txt").read_text().splitlines())
    image_status = (out / "image-status.txt").read_text().splitlines()
    assert image_status and all(s.startswith("200 ") for s in image_status), image_status
    shell_env = dict(line.split("=", 1) for line in (out / "shell-env.txt").read_text().splitlines())
    assert shell_env["DEEPOPS_OFFLINE"] == "1" and shell_env["DEEPOPS_DOCKER_REGISTRY"] == "127.0.0.2:5000"
    assert shell_env["PIP_INDEX_URL"] == "http://127.0.0.2:8003/simple/"
    # 2–5. the clients, with nothing but the generated config
    installed = [x for x in (out / "dnf-installed.txt").read_text().split() if x != "gpg-pubkey"]
    assert installed == ["pa", "pb", "pc"]  # and gpg-pubkey: the keys were imported, the packages checked
    assert "gpgcheck=1" in (vars_dir / "clients/yum.repos.d/test-sub.repo").read_text()
    assert (out / "pip-import.txt").read_text().strip()
    assert f"{built.registry}/team/app:1" in (out / "podman-images.txt").read_text()
    assert built.registry + "/team/app:1" in (out / "ctr-images1.txt").read_text()
    # 6. the playbooks: the files they wrote, and nothing changed the second time
    assert re.search(
        r"localhost\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", (out / "playbook2.log").read_text()
    )
    assert re.search(r"changed=[1-9]", (out / "playbook1.log").read_text())
    assert (t / "yum.repos.d/CentOS-Base.repo.disabled-by-gapcache").exists()
    assert not (t / "yum.repos.d/CentOS-Base.repo").exists()
    repo = (t / "yum.repos.d/gapcache-test-sub.repo").read_text()
    assert "gpgcheck=1" in repo and "baseurl=http://127.0.0.2:8001/test-sub/ http://127.0.0.3:8001/test-sub/" in repo
    assert [x for x in (out / "dnf2-installed.txt").read_text().split() if x != "gpg-pubkey"] == [
        "pa",
        "pb",
        "pc",
    ]  # keys installed by the playbook
    daemon = json.loads((t / "docker/daemon.json").read_text())
    assert daemon["log-driver"] == "journald" and daemon["insecure-registries"] == ["127.0.0.2:5000", "127.0.0.3:5000"]
    hosts = (t / f"certs.d/{built.registry}/hosts.toml").read_text()
    assert hosts.index('[host."http://127.0.0.2:5000"]') < hosts.index('[host."http://127.0.0.3:5000"]')
    assert f'location = "127.0.0.3:5000/{built.registry.replace(":", "_")}"' in (
        t / "registries.conf.d/50-gapcache.conf").read_text()  # fmt: skip
    pip_conf = (t / "pip.conf").read_text()
    assert "index-url = http://127.0.0.2:8003/simple/" in pip_conf and "trusted-host = 127.0.0.2 127.0.0.3" in pip_conf
    assert (t / "root/current").exists()  # the archive was loaded by the playbook
    unit = (t / "systemd/gapcache-mirrors.service").read_text()
    exec_start = shlex.split((out / "execstart.txt").read_text())
    assert exec_start[:2] == [str(VENV_BIN / "gapcache"), "serve"] and "ExecStart=" in unit and "[Install]" in unit
    assert exec_start[exec_start.index("--root") + 1] == str(t / "root")
    assert "--port" in exec_start and "registry=5000" in exec_start
    assert (out / "unit-status.txt").read_text() == "200"
    # 7. the first mirror down: containerd pulled through the second
    assert (out / "m1-after-stop.txt").read_text() in ("", "000")
    assert built.registry + "/team/other:2" in (out / "ctr-images2.txt").read_text()
    misses2 = (built.root / "misses.jsonl").read_text() if (built.root / "misses.jsonl").exists() else ""
    assert "/team/other/" not in misses2


@pytest.mark.slow
def test_generated_vars_pass_the_leak_check_and_the_shell_vars_refuse_a_placeholder(
    built: Built, tmp_path: Path
) -> None:
    out = tmp_path / "airgap"
    run_gapcache("vars", "--mirror-host", MIRRORS, "--root", built.root, "-o", out, check=True)
    res = run_gapcache("vars", "--check", out)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 variable(s) point elsewhere" in res.stderr
    ok = subprocess.run(["bash", "-c", f"set -eu; source {out}/offline_repo_shell_vars.sh; echo $DEEPOPS_MISC_MIRROR"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.strip() == "http://127.0.0.2:8004", ok.stderr
    bare = tmp_path / "bare"
    res = run_gapcache("vars", "--archive", built.archive, "-o", bare)
    assert res.returncode == 0 and "placeholder" in res.stderr
    refused = subprocess.run(["bash", "-c", f"source {bare}/offline_repo_shell_vars.sh && echo SOURCED"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 1 and "SOURCED" not in refused.stdout
    assert "placeholder" in refused.stderr
    # run (not sourced) it refuses too
    assert subprocess.run(["sh", str(bare / "offline_repo_shell_vars.sh")], capture_output=True).returncode == 1

"""`gapcache vars` from a lock written here (no network): which variables exist for what content,
how Kubespray's download URLs map to the files present, ports, the placeholder refusal, the client
files, the leak check on an inventory with planted leaks, and the shipped playbooks."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapcache.lock import Artifact, Item, Lock
from gapcache.vars import PLAYBOOKS, Mirrors, check_tree, generate, parse_ports
from gapcache.vars.jinja import render
from vars_cli import run_gapcache


def _d(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def file_item(path: str, source: str | None = None) -> Item:
    art = Artifact(path=f"files/{path}", source=source or f"https://{path}", digest=_d(path), size=1)
    return Item(kind="file", name=f"files/{path}", request={"url": art.source}, artifacts=[art])


def image_item(ref: str, name: str, tag: str, server: str) -> Item:
    dg = _d(ref)
    art = Artifact(path=f"images/{name}/manifests/{dg}", source=f"{server}/v2/x/manifests/{dg}", digest=dg, size=1)
    return Item(kind="image", name=ref, request={"ref": ref}, resolved={"name": name, "digest": dg, "tag": tag},
                artifacts=[art])  # fmt: skip


def sample_lock(*extra: Item) -> Lock:
    items = [
        file_item("dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm"),
        file_item("dl.k8s.io/release/v1.31.1/bin/linux/arm64/kubeadm"),
        file_item("dl.k8s.io/release/v1.30.0/bin/linux/amd64/kubeadm"),  # older: not chosen
        file_item("dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubectl"),
        file_item("github.com/containerd/containerd/releases/download/v2.0.2/containerd-static-2.0.2-linux-amd64.tar.gz"),
        # a custom path: matched by its upstream URL
        file_item("nerdctl/nerdctl.tgz",
                  "https://github.com/containerd/nerdctl/releases/download/v1.7.7/nerdctl-1.7.7-linux-amd64.tar.gz"),
        file_item("github.com/docker/compose/releases/download/v2.29.1/docker-compose-linux-x86_64"),
        image_item("quay.io/calico/node:v3.27.3", "quay.io/calico/node", "v3.27.3", "https://quay.io"),
        image_item("registry.k8s.io/pause:3.10", "registry.k8s.io/pause", "3.10", "https://registry.k8s.io"),
        image_item("nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3", "nvcr.io/nvidia/k8s/dcgm-exporter", "4.5.3",
                   "https://nvcr.io"),
        image_item("docker.io/prom/alertmanager:v0.33.0", "docker.io/prom/alertmanager", "v0.33.0",
                   "https://registry-1.docker.io"),
        Item(kind="rpm", name="cuda-rhel9",
             request={"id": "cuda-rhel9", "baseurl": "https://developer.download.nvidia.com/compute/cuda/repos/rhel9/x86_64/"},
             resolved={"id": "cuda-rhel9", "keys": ["cuda-rhel9/D42D0685.pub", "gapcache-site.pub"], "signed": True},
             artifacts=[Artifact(path="yum/gpgkeys/cuda-rhel9/D42D0685.pub", source="x", digest=_d("k"), size=1)]),
        *extra,
    ]  # fmt: skip
    return Lock.build(items)


def gen(lock: Lock, **kw: Any) -> tuple[dict[str, Any], dict[str, str]]:
    files = generate(lock, Mirrors(**kw)).files
    return yaml.safe_load(files["offline_repo_vars.yml"]), files


def resolved(v: dict[str, Any], name: str, **extra: str) -> str:
    return render(str(v[name]), {**v, **extra})


def test_variables_follow_the_lock() -> None:
    v, files = gen(sample_lock(), hosts=("10.0.0.5", "10.0.0.6"))
    assert v["deepops_mirror_host"] == "10.0.0.5"
    # several architectures of the newest version: Kubespray's image_arch picks the node's own
    assert v["kubeadm_download_url"] == "{{ files_repo }}/dl.k8s.io/release/v1.31.1/bin/linux/{{ image_arch }}/kubeadm"
    assert resolved(v, "kubeadm_download_url", image_arch="arm64") == (
        "http://10.0.0.5:8004/dl.k8s.io/release/v1.31.1/bin/linux/arm64/kubeadm")  # fmt: skip
    assert resolved(v, "kubectl_download_url").endswith("/v1.31.1/bin/linux/amd64/kubectl")  # one arch: literal
    assert resolved(v, "containerd_download_url").endswith("/containerd-static-2.0.2-linux-amd64.tar.gz")
    assert resolved(v, "nerdctl_download_url") == "http://10.0.0.5:8004/nerdctl/nerdctl.tgz"
    assert resolved(v, "docker_compose_download_url").endswith("/docker-compose-linux-x86_64")
    assert resolved(v, "github_url") == "http://10.0.0.5:8004/github.com"
    for absent in (
        "etcd_download_url",
        "cni_download_url",
        "helm_download_url",
        "get_helm_url",
        "storage_googleapis_url",
        "deepops_charts_mirror",
        "deepops_pypi_mirror",
        "deepops_apt_mirror",
        "gcr_image_repo",
        "github_image_repo",
        "gpu_operator_driver_registry",
        "grafana_container",
    ):
        assert absent not in v, absent  # only for content in the lock  # fmt: skip
    assert resolved(v, "quay_image_repo") == "10.0.0.5:5000/quay.io"
    assert resolved(v, "kube_image_repo") == "10.0.0.5:5000/registry.k8s.io"
    assert resolved(v, "docker_image_repo") == "10.0.0.5:5000/docker.io"
    assert resolved(v, "nvidia_dcgm_container") == "10.0.0.5:5000/nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3"
    assert resolved(v, "alertmanager_container") == "10.0.0.5:5000/docker.io/prom/alertmanager:v0.33.0"
    assert [render(x, v) for x in v["docker_insecure_registries"]] == ["10.0.0.5:5000", "10.0.0.6:5000"]
    mirrors = {m["prefix"]: [render(h["host"], v) for h in m["mirrors"]] for m in v["containerd_registries_mirrors"]}
    assert mirrors == {r: ["http://10.0.0.5:5000", "http://10.0.0.6:5000"]
                       for r in ("docker.io", "nvcr.io", "quay.io", "registry.k8s.io")}  # fmt: skip
    assert resolved(v, "nvidia_driver_rhel_cuda_repo_baseurl") == "http://10.0.0.5:8001/cuda-rhel9/"
    assert resolved(v, "nvidia_driver_rhel_cuda_repo_gpgkey") == "http://10.0.0.5:8001/gpgkeys/cuda-rhel9/D42D0685.pub"
    repo = files["clients/yum.repos.d/cuda-rhel9.repo"]
    assert "gpgcheck=1\n" in repo and "repo_gpgcheck=1\n" in repo
    assert "baseurl=http://10.0.0.5:8001/cuda-rhel9/ http://10.0.0.6:8001/cuda-rhel9/" in repo
    assert "http://10.0.0.5:8001/gpgkeys/gapcache-site.pub" in repo
    toml = files["clients/containerd/certs.d/docker.io/hosts.toml"]
    assert toml.startswith('server = "https://registry-1.docker.io"')
    assert toml.index('[host."http://10.0.0.5:5000"]') < toml.index('[host."http://10.0.0.6:5000"]')
    assert 'location = "10.0.0.6:5000/nvcr.io"' in files["clients/containers/registries.conf"]
    assert "pip.conf" not in "".join(files) and "helm" not in "".join(files) and "apt/" not in "".join(files)
    sh = files["offline_repo_shell_vars.sh"]
    assert 'export DCGM_DOCKER_REGISTRY="${DEEPOPS_DOCKER_REGISTRY}/nvcr.io/nvidia/k8s"' in sh
    assert "KUBECTL_BINARY_URL" in sh and "DOCKER_COMPOSE_URL" in sh and "PIP_INDEX_URL" not in sh


def test_ports_follow_the_serve_configuration_and_a_disabled_listener_has_no_variables() -> None:
    py = Item(kind="python", name="six==1.17.0", request={"project": "six"}, resolved={"project": "six"},
              artifacts=[Artifact(path="python/six/six.whl", source="x", digest=_d("six"), size=1)])  # fmt: skip
    v, files = gen(sample_lock(py), hosts=("m.lan",), ports=parse_ports(["files=9004", "registry=0"]))
    assert resolved(v, "files_repo") == "http://m.lan:9004"
    assert v["gapcache_ports"] == {"repos": 8001, "pypi": 8003, "files": 9004}
    assert "registry_host" not in v and "containerd_registries_mirrors" not in v
    assert not any(k.startswith("clients/containerd") for k in files)
    assert files["clients/pip.conf"] == "[global]\nindex-url = http://m.lan:8003/simple/\ntrusted-host = m.lan\n"
    v2, _ = gen(sample_lock(py), hosts=("m.lan",), scheme="https")
    assert resolved(v2, "deepops_pypi_mirror") == "https://m.lan:8003" and v2["docker_insecure_registries"] == []


def test_apt_and_chart_content_get_their_variables() -> None:
    apt = Item(
        kind="apt",
        name="cuda-ubuntu2204",
        request={
            "id": "cuda-ubuntu2204",
            "url": "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64/",
        },
        resolved={
            "id": "cuda-ubuntu2204",
            "suites": ["/"],
            "components": [],
            "architectures": ["amd64"],
            "mode": "packages",
        },
        artifacts=[Artifact(path="apt/cuda-ubuntu2204/key.gpg", source="generated", digest=_d("r"), size=1)],
    )
    chart = Item(kind="chart", name="gpu-operator",
                 request={"name": "gpu-operator", "repo": "https://helm.ngc.nvidia.com/nvidia"},
                 resolved={"version": "v26.3.3"},
                 artifacts=[Artifact(path="charts/gpu-operator-v26.3.3.tgz", source="x", digest=_d("c"),
                                     size=1)])  # fmt: skip
    v, files = gen(sample_lock(apt, chart), hosts=("m.lan",))
    assert resolved(v, "nvidia_driver_ubuntu_cuda_repo_baseurl") == "http://m.lan:8001/cuda-ubuntu2204"
    assert resolved(v, "gpu_operator_helm_repo") == "http://m.lan:8002"
    assert v["gapcache_apt_repos"][0]["id"] == "cuda-ubuntu2204"
    sources = files["clients/apt/sources.list.d/cuda-ubuntu2204.sources"]
    assert "URIs: http://m.lan:8001/cuda-ubuntu2204/\n" in sources and "Suites: /\n" in sources
    assert "Signed-By: /etc/apt/keyrings/cuda-ubuntu2204.gpg" in sources
    assert files["clients/apt/keys/cuda-ubuntu2204.url"] == "http://m.lan:8001/cuda-ubuntu2204/key.gpg\n"
    assert "url: http://m.lan:8002" in files["clients/helm/repositories.yaml"]


def _shell(path: Path) -> subprocess.CompletedProcess[str]:
    script = f"source {path} && echo SOURCED $DEEPOPS_MISC_MIRROR"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})


def test_shell_vars_source_and_refuse_a_placeholder(tmp_path: Path) -> None:
    lock = tmp_path / "l.json"
    lock.write_bytes(sample_lock().to_bytes())
    run_gapcache("vars", "--lock", lock, "--mirror-host", "10.0.0.5", "-o", tmp_path / "real", check=True)
    ok = _shell(tmp_path / "real/offline_repo_shell_vars.sh")
    assert ok.returncode == 0 and ok.stdout.strip() == "SOURCED http://10.0.0.5:8004", ok.stderr
    res = run_gapcache("vars", "--lock", lock, "-o", tmp_path / "bare")
    assert res.returncode == 0 and "placeholder" in res.stderr
    refused = _shell(tmp_path / "bare/offline_repo_shell_vars.sh")
    assert refused.returncode == 1 and "SOURCED" not in refused.stdout and "placeholder" in refused.stderr


LEAKY_OFFLINE = """\
deepops_mirror_host: 10.0.0.5
files_repo: "http://{{ deepops_mirror_host }}:8004"
kubeadm_download_url: "{{ files_repo }}/dl.k8s.io/release/v1.31.1/bin/linux/{{ image_arch }}/kubeadm"
kubectl_download_url: "https://dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubectl"
quay_image_repo: "quay.io"
calicoctl_download_url: "{{ github_url }}/projectcalico/calico/releases/download/v3.27.3/calicoctl-linux-amd64"
maas_region_controller_url: 'http://{{ maas_region_controller }}:5240/MAAS'
firmware_update_repo: nvfw-dgxa100
slurm_exporter_build_image: true
"""
LEAKY_HOSTS = """\
all:
  hosts:
    node1: {ansible_host: 10.0.0.10}
  vars:
    dashboard_image_repo: "kubernetesui/dashboard"
    tools_base: "https://tools.example.com/dl"
    tool_url: "{{ tools_base }}/tool.tgz"
"""


def test_leak_check_reports_each_planted_leak_with_file_and_line(tmp_path: Path) -> None:
    inv = tmp_path / "inventory"
    (inv / "group_vars/all").mkdir(parents=True)
    (inv / "group_vars/all/offline.yml").write_text(LEAKY_OFFLINE)
    (inv / "hosts.yml").write_text(LEAKY_HOSTS)
    (inv / "group_vars/k8s_cluster").write_text("containerd_registries_mirrors:\n  - prefix: nvcr.io\n    mirrors:\n"
                                                "      - host: https://nvcr.io\n")  # fmt: skip
    res = run_gapcache("vars", "--check", inv)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    expected = [
        "group_vars/all/offline.yml:4: kubectl_download_url: https://dl.k8s.io/",  # a *_download_url to the Internet
        "group_vars/all/offline.yml:5: quay_image_repo: quay.io ",  # an image repo variable
        "group_vars/all/offline.yml:6: calicoctl_download_url: https://github.com/",  # Jinja, Kubespray's default base
        "group_vars/k8s_cluster:4: containerd_registries_mirrors[0].mirrors[0].host: https://nvcr.io ",
        "hosts.yml:5: all.vars.dashboard_image_repo: kubernetesui/dashboard (points at docker.io",
        "hosts.yml:6: all.vars.tools_base: https://tools.example.com/dl ",
        "hosts.yml:7: all.vars.tool_url: https://tools.example.com/dl/tool.tgz ",  # a Jinja-built URL
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert len(lines) == len(expected), lines
    assert "1 value(s) not resolvable here" in res.stderr  # maas_region_controller_url: a fact, not guessed
    # the mirror named on the command line instead of deepops_mirror_host: everything leaks but nothing else
    other = check_tree(inv, ["192.168.1.1"])
    assert any(leak.variable == "kubeadm_download_url" for leak in other.leaks)


def test_generated_vars_pass_the_leak_check(tmp_path: Path) -> None:
    lock = tmp_path / "l.json"
    lock.write_bytes(sample_lock().to_bytes())
    run_gapcache("vars", "--lock", lock, "--mirror-host", "10.0.0.5,10.0.0.6", "-o", tmp_path / "airgap", check=True)
    res = run_gapcache("vars", "--check", tmp_path / "airgap")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 variable(s) point elsewhere" in res.stderr
    res = run_gapcache("vars", "--check", tmp_path / "airgap", "--mirror-host", "10.0.0.9")
    assert res.returncode == 1 and "kubeadm_download_url" in res.stdout


def test_playbooks_command_writes_the_shipped_playbooks(tmp_path: Path) -> None:
    res = run_gapcache("playbooks", tmp_path / "pb")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "pb").iterdir()) == sorted(PLAYBOOKS)
    for name in PLAYBOOKS:
        plays = yaml.safe_load((tmp_path / "pb" / name).read_text())
        assert isinstance(plays, list) and plays[0]["tasks"], name
    again = run_gapcache("playbooks", tmp_path / "pb")
    assert "(0 written)" in again.stderr


@pytest.mark.parametrize("command", ["vars", "playbooks"])
def test_help_has_a_description_and_examples(command: str) -> None:
    res = run_gapcache(command, "--help")
    assert res.returncode == 0 and "examples:" in res.stdout and f"gapcache {command}" in res.stdout

"""The built-in deepops profile, `profile show/update`, layered manifests and upstreams (issue 13)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import pytest
import yaml

from gapcache import profile
from gapcache.cli_profile import add_build_options, add_commands, cli_upstreams, load_build_manifest
from gapcache.errors import GapcacheError, ManifestError
from gapcache.manifest import Manifest
from gapcache.manifest.merge import merge, parse_layer
from gapcache.upstreams import parse_upstream_option, rewrite

# The lines of Kubespray v2.31.0's roles/kubespray_defaults/vars/main/checksums.yml for its default
# Kubernetes version (kube_version = the first key of kubelet_checksums.amd64 = 1.35.4).
KUBESPRAY_V2_31_0_CHECKSUMS = """
kubelet_checksums:
  arm64: {1.35.4: "sha256:d710eef03bb4ad164bb77af9be5b11b44f874e2fc08153c7d383420d685f73e8"}
  amd64: {1.35.4: "sha256:983a6ba5a49823dcdd745c674e5e2416377dd27d6ad1b42d2befa0fb961a19f6"}
kubectl_checksums:
  arm64: {1.35.4: "sha256:6a5a4cc4e396d7626a7a693a3044b51c75520f81db30fe6816c2554e53be336f"}
  amd64: {1.35.4: "sha256:b529430df69a688fd61b64ad2299edb5fd71cb58be2a4779dba624c7d3510efd"}
kubeadm_checksums:
  arm64: {1.35.4: "sha256:e8f6b5bee3e2c8b5965f4ae65c2ae04e3f9f426d2458a1e2f159e824d419d92c"}
  amd64: {1.35.4: "sha256:0c0497da793f8897c14e45340da919534b615294a1aab69dc1998896c0f11145"}
"""


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="gapcache")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


# ---- the shipped profile -------------------------------------------------------------------------


def test_shipped_profile_validates() -> None:
    p = profile.load("deepops")
    assert "deepops" in profile.names()
    assert p.manifest.platforms == ["linux/amd64", "linux/arm64"]
    assert len(p.manifest.files) >= 22 and len(p.manifest.images) >= 20
    for section, index in p.annotated.origins:  # every list entry says where it came from
        assert section in ("files", "images", "yum", "apt", "charts", "python"), (section, index)
    for section in ("files", "images", "yum"):
        entries = p.annotated.raw[section]
        assert all((section, i) in p.annotated.origins for i in range(len(entries))), section


def test_show_lists_kubernetes_binaries_with_kubespray_checksums(capsys: pytest.CaptureFixture[str]) -> None:
    expected = yaml.safe_load(KUBESPRAY_V2_31_0_CHECKSUMS)
    code, out = run_cli(["profile", "show", "deepops"], capsys)
    assert code == 0
    lines = out.splitlines()
    for binary in ("kubeadm", "kubelet", "kubectl"):
        for arch in ("amd64", "arm64"):
            digest = expected[f"{binary}_checksums"][arch]["1.35.4"]
            url = f"https://dl.k8s.io/release/v1.35.4/bin/linux/{arch}/{binary}"
            row = [line for line in lines if url in line]
            assert len(row) == 1, (url, row)
            assert row[0].split()[-1] == digest
    # the NVIDIA GPU Operator chart and the images it runs
    assert any("https://helm.ngc.nvidia.com/nvidia/gpu-operator" in line and "v26.3.3" in line for line in lines)
    for image in (
        "nvcr.io/nvidia/gpu-operator:v26.3.3",
        "nvcr.io/nvidia/k8s/container-toolkit:",
        "nvcr.io/nvidia/k8s-device-plugin:",
        "nvcr.io/nvidia/k8s/dcgm-exporter:",
        "nvcr.io/nvidia/cloud-native/k8s-mig-manager:",
        "registry.k8s.io/nfd/node-feature-discovery:",
        "nvcr.io/nvidia/driver:",
    ):
        assert any(line.startswith("images") and image in line for line in lines), image
    pending = [line for line in lines if line.startswith("pending kind:")]
    for section in ("charts", "apt"):  # marked only while this gapcache lacks the kind
        assert bool([x for x in pending if f" {section} " in x]) == (section not in Manifest.model_fields)


def test_show_yaml_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["profile", "show", "deepops", "--format", "yaml"], capsys)
    assert code == 0 and yaml.safe_load(out)["name"] == "deepops"
    code, out = run_cli(["profile", "list"], capsys)
    assert code == 0 and out.startswith("deepops")
    with pytest.raises(ManifestError, match="no built-in profile 'nope'"):
        profile.load("nope")


# ---- profile update on a fixture in Kubespray's format ------------------------------------------

DOWNLOAD_YML = """
image_arch: "{{ host_architecture | default('amd64') }}"
kube_image_repo: "registry.k8s.io"
kubeadm_image_repo: "{{ kube_image_repo }}"
dl_k8s_io_url: https://dl.k8s.io
github_url: https://github.com
kubeadm_download_url: "{{ dl_k8s_io_url }}/release/v{{ kube_version }}/bin/linux/{{ image_arch }}/kubeadm"
crictl_version: "{{ (crictl_checksums['amd64'].keys() | select('version', kube_major_next_version, '<'))[0] }}"
crictl_download_url: >-
  {{ github_url }}/kubernetes-sigs/cri-tools/releases/download/v{{ crictl_version }}/crictl-v{{ crictl_version
  }}-{{ ansible_system | lower }}-{{ image_arch }}.tar.gz
kubeadm_binary_checksum: "{{ kubeadm_checksums[image_arch][kube_version] }}"
pod_infra_image_repo: "{{ kube_image_repo }}/pause"
downloads:
  kubeadm:
    enabled: true
    file: true
    url: "{{ kubeadm_download_url }}"
    checksum: "{{ kubeadm_binary_checksum }}"
  crictl:
    enabled: "{{ container_manager == 'containerd' }}"
    file: true
    url: "{{ crictl_download_url }}"
    checksum: "{{ crictl_checksums[image_arch][crictl_version] }}"
  helm:
    enabled: "{{ helm_enabled }}"
    file: true
    url: "https://get.helm.sh/helm-v3.0.0-linux-{{ image_arch }}.tar.gz"
    checksum: "{{ helm_checksums[image_arch]['3.0.0'] }}"
  pod_infra:
    enabled: true
    container: true
    repo: "{{ pod_infra_image_repo }}"
    tag: "{{ '3.10.1' if kube_version is version('1.34', '>=') else '3.10' }}"
download_defaults:
  container: false
  file: false
  enabled: false
"""
MAIN_YML = """
kube_version: "{{ (kubeadm_checksums['amd64'] | dict2items)[0].key }}"
container_manager: containerd
helm_enabled: false
_host_architecture_groups: {x86_64: amd64, aarch64: arm64}
host_architecture: "{{ _host_architecture_groups[ansible_architecture] }}"
"""
VARS_YML = """
kube_major_version: "{{ (kube_version | split('.'))[:-1] | join('.') }}"
kube_major_next_version: "1.{{ ((kube_version | split('.'))[1] | int) + 1 }}"
"""


def checksums_yml(kubeadm_arm64: str) -> str:
    return textwrap.dedent(f"""\
        kubeadm_checksums:
          arm64:
            1.35.4: sha256:{kubeadm_arm64}
            1.35.3: sha256:{"1" * 64}
          amd64:
            1.35.4: sha256:{"a" * 64}
            1.35.3: sha256:{"2" * 64}
        crictl_checksums:
          arm64: {{1.36.0: "sha256:{"9" * 64}", 1.35.0: "sha256:{"b" * 64}"}}
          amd64: {{1.36.0: "sha256:{"8" * 64}", 1.35.0: "sha256:{"c" * 64}"}}
        helm_checksums:
          arm64: {{3.0.0: "sha256:{"d" * 64}"}}
          amd64: {{3.0.0: "sha256:{"e" * 64}"}}
        """)


def kubespray_fixture(root: Path, kubeadm_arm64: str) -> Path:
    (root / "roles/kubespray_defaults/defaults/main").mkdir(parents=True, exist_ok=True)
    (root / "roles/kubespray_defaults/vars/main").mkdir(parents=True, exist_ok=True)
    (root / "roles/kubespray_defaults/defaults/main/download.yml").write_text(DOWNLOAD_YML)
    (root / "roles/kubespray_defaults/defaults/main/main.yml").write_text(MAIN_YML)
    (root / "roles/kubespray_defaults/vars/main/main.yml").write_text(VARS_YML)
    (root / "roles/kubespray_defaults/vars/main/checksums.yml").write_text(checksums_yml(kubeadm_arm64))
    (root / "galaxy.yml").write_text("namespace: kubernetes_sigs\nname: kubespray\nversion: 9.8.7\n")
    return root


def test_update_reproduces_fixture_and_diffs_a_changed_checksum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ks = kubespray_fixture(tmp_path / "kubespray", "f" * 64)
    target = tmp_path / "p.yaml"
    target.write_text(
        "# test profile\nformat: 1\nname: p\nfiles:\n"
        "- url: https://example.org/hand/kept.txt\n  from: 'kept by hand'\n"
        "- url: https://dl.k8s.io/release/v1.0.0/bin/linux/amd64/kubeadm\n"
        "  from: 'kubespray v1 roles/kubespray_defaults/defaults/main/download.yml: kubeadm amd64'\n"
    )
    code, out = run_cli(["profile", "update", "--kubespray", str(ks), "-o", str(target)], capsys)
    assert code == 0
    p = profile.load(target)
    files = {f.url: f.sha256 for f in p.manifest.files}
    assert files == {
        "https://dl.k8s.io/release/v1.35.4/bin/linux/amd64/kubeadm": "a" * 64,
        "https://dl.k8s.io/release/v1.35.4/bin/linux/arm64/kubeadm": "f" * 64,
        "https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.35.0/crictl-v1.35.0-linux-amd64.tar.gz": "c"
        * 64,
        "https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.35.0/crictl-v1.35.0-linux-arm64.tar.gz": "b"
        * 64,
        "https://example.org/hand/kept.txt": None,  # kept: not from kubespray
    }
    assert [i.ref for i in p.manifest.images] == [
        "registry.k8s.io/pause:3.10.1",
        "registry.k8s.io/kube-apiserver:v1.35.4",
        "registry.k8s.io/kube-controller-manager:v1.35.4",
        "registry.k8s.io/kube-scheduler:v1.35.4",
        "registry.k8s.io/kube-proxy:v1.35.4",
    ]
    origins = set(p.annotated.origins.values())
    assert "kubespray v9.8.7 roles/kubespray_defaults/defaults/main/download.yml: kubeadm arm64" in origins
    changed = [line for line in out.splitlines() if line.startswith("~ files kubespray kubeadm amd64  ")]
    assert len(changed) == 1 and f"sha256: None -> {'a' * 64}" in changed[0]
    assert "url: https://dl.k8s.io/release/v1.0.0/bin/linux/amd64/kubeadm -> https://dl.k8s.io/release/v1.35.4/" in out
    assert "+ files kubespray kubeadm arm64" in out and "+ images kubespray pod_infra" in out
    # a changed checksum upstream shows in the printed diff
    kubespray_fixture(ks, "0" * 64)
    code, out = run_cli(["profile", "update", "--kubespray", str(ks), "-o", str(target)], capsys)
    assert code == 0
    assert f"~ files kubespray kubeadm arm64  sha256: {'f' * 64} -> {'0' * 64}" in out
    assert "0 added, 0 removed, 1 changed" in out


def test_update_reports_what_it_cannot_evaluate(tmp_path: Path) -> None:
    ks = kubespray_fixture(tmp_path / "ks", "f" * 64)
    (ks / "roles/kubespray_defaults/vars/main/main.yml").write_text("---\n")  # kube_major_next_version gone
    with pytest.raises(GapcacheError, match=r"downloads\.crictl"):
        profile.update(tmp_path / "p.yaml", ks)
    assert not (tmp_path / "p.yaml").exists()


# ---- layered manifests ---------------------------------------------------------------------------


def build_args(tmp_path: Path, site: str | None, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_build_options(parser)
    parser.add_argument("--locked")
    argv = list(extra)
    if site is not None:
        (tmp_path / "site.yaml").write_text(site)
        argv += ["-f", str(tmp_path / "site.yaml")]
    return parser.parse_args(argv)


def test_site_excludes_overrides_and_platforms(tmp_path: Path) -> None:
    kubeadm = "https://dl.k8s.io/release/v1.35.4/bin/linux/amd64/kubeadm"
    site = textwrap.dedent(f"""\
        format: 1
        platforms: [linux/amd64]
        exclude:
          - images:quay.io/calico/*
          - files:*/calicoctl-linux-*
        files:
          - url: {kubeadm}
            sha256: "{"5" * 64}"
          - url: https://site.example/extra.bin
        images: [site.example/team/tool:1.0]
        upstreams: {{dl.k8s.io: "https://artifactory.example/dl-k8s"}}
        """)
    m = load_build_manifest(
        build_args(tmp_path, site, "--profile", "deepops", "--upstream", "github.com=http://gh.lan")
    )
    urls = {f.url: f.sha256 for f in m.files}
    assert urls[kubeadm] == "5" * 64
    assert "https://site.example/extra.bin" in urls
    assert not any("arm64" in u for u in urls), "a site's platforms drop the profile's other-arch files"
    assert not any("calicoctl" in u for u in urls)
    refs = [i.ref for i in m.images]
    assert "site.example/team/tool:1.0" in refs and not any(r.startswith("quay.io/calico/") for r in refs)
    assert m.platforms == ["linux/amd64"]
    assert m.upstreams == {"dl.k8s.io": "https://artifactory.example/dl-k8s", "github.com": "http://gh.lan"}
    assert m.exclude == []


def test_site_errors_name_the_site_line(tmp_path: Path) -> None:
    site = "format: 1\nexclude:\n  - images:quay.io/calico/*\n  - files:no-such-file\n"
    with pytest.raises(ManifestError) as err:
        load_build_manifest(build_args(tmp_path, site, "--profile", "deepops"))
    assert f"{tmp_path / 'site.yaml'}:4: exclude[1]: 'files:no-such-file' matches no entry" in str(err.value)
    site = "format: 1\nupstreams:\n  dl.k8s.io: ftp://x\n"
    with pytest.raises(ManifestError, match=r"site.yaml:3: upstreams: .*expected an http\(s\)://"):
        load_build_manifest(build_args(tmp_path, site, "--profile", "deepops"))
    with pytest.raises(GapcacheError, match="expected HOST=URL"):
        cli_upstreams(build_args(tmp_path, None, "--upstream", "dl.k8s.io"))
    with pytest.raises(GapcacheError, match="give a manifest"):
        load_build_manifest(build_args(tmp_path, None))


def test_merge_without_profile_is_the_manifest(tmp_path: Path) -> None:
    text = "format: 1\nfiles:\n  - url: https://a.example/x\nimages: [ubuntu:22.04]\n"
    layer = parse_layer(text, "m.yaml")
    assert merge(Manifest(format=1), layer) == layer.manifest


def test_python_exclude_drops_the_section(tmp_path: Path) -> None:
    m = load_build_manifest(build_args(tmp_path, "format: 1\nexclude: ['python:*']\n", "--profile", "deepops"))
    assert m.python is None and profile.load("deepops").manifest.python is not None


# ---- upstreams -----------------------------------------------------------------------------------


def test_rewrite() -> None:
    ups = {"dl.k8s.io": "http://127.0.0.1:8080/dl/", "docker.io": "http://127.0.0.1:5000", "h.lan:5000": "http://p"}
    assert rewrite("https://dl.k8s.io/release/v1/kubeadm?a=1", ups) == "http://127.0.0.1:8080/dl/release/v1/kubeadm?a=1"
    assert rewrite("https://registry-1.docker.io/v2/library/x/blobs/sha256:1", ups).startswith(
        "http://127.0.0.1:5000/v2/"
    )
    assert rewrite("https://h.lan:5000/v2/", ups) == "http://p/v2/"
    assert rewrite("https://h.lan/v2/", ups) == "https://h.lan/v2/"
    assert rewrite("https://quay.io/v2/", ups) == "https://quay.io/v2/"
    assert rewrite("file:///x", ups) == "file:///x"
    assert parse_upstream_option("Quay.io=https://nexus/quay") == ("quay.io", "https://nexus/quay")
    for bad in ("quay.io", "https://quay.io=http://x", "quay.io=ftp://x"):
        with pytest.raises(ValueError):
            parse_upstream_option(bad)

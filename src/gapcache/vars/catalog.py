"""The variables DeepOps and Kubespray read, and the upstream each one points at by default.

Facts only (variable names, URL shapes), from Kubespray v2.31's ``download.yml`` and
``offline.yml`` and DeepOps's role defaults. A file in the lock gets a variable when its upstream
``<host>/<path>`` matches the variable's pattern: ``{v}`` is a version, ``{arch}`` Kubespray's
``image_arch`` (amd64, arm64, …), ``{march}`` ``ansible_architecture`` (x86_64, aarch64, …), ``{*}``
any one path segment part. Versions are not templated: a variable names exactly the file the
mirror holds.
"""

from __future__ import annotations

import re
from functools import cache

# ---- files: (variable, upstream host/path pattern) -------------------------------------------

KUBESPRAY_FILES: list[tuple[str, str]] = [
    ("kubelet_download_url", "dl.k8s.io/release/v{v}/bin/linux/{arch}/kubelet"),
    ("kubectl_download_url", "dl.k8s.io/release/v{v}/bin/linux/{arch}/kubectl"),
    ("kubeadm_download_url", "dl.k8s.io/release/v{v}/bin/linux/{arch}/kubeadm"),
    ("etcd_download_url", "github.com/etcd-io/etcd/releases/download/v{v}/etcd-v{v}-linux-{arch}.tar.gz"),
    ("cni_download_url",
     "github.com/containernetworking/plugins/releases/download/v{v}/cni-plugins-linux-{arch}-v{v}.tgz"),
    ("calicoctl_download_url", "github.com/projectcalico/calico/releases/download/v{v}/calicoctl-linux-{arch}"),
    ("calico_crds_download_url", "github.com/projectcalico/calico/raw/v{v}/manifests/crds.yaml"),
    ("ciliumcli_download_url", "github.com/cilium/cilium-cli/releases/download/v{v}/cilium-linux-{arch}.tar.gz"),
    ("crictl_download_url",
     "github.com/kubernetes-sigs/cri-tools/releases/download/v{v}/crictl-v{v}-linux-{arch}.tar.gz"),
    ("crio_download_url", "storage.googleapis.com/cri-o/artifacts/cri-o.{arch}.v{v}.tar.gz"),
    ("helm_download_url", "get.helm.sh/helm-v{v}-linux-{arch}.tar.gz"),
    ("runc_download_url", "github.com/opencontainers/runc/releases/download/v{v}/runc.{arch}"),
    ("crun_download_url", "github.com/containers/crun/releases/download/{v}/crun-{v}-linux-{arch}"),
    ("youki_download_url", "github.com/youki-dev/youki/releases/download/v{v}/youki-{v}-{march}-gnu.tar.gz"),
    ("kata_containers_download_url",
     "github.com/kata-containers/kata-containers/releases/download/{v}/kata-static-{v}-{arch}.tar.xz"),
    ("gvisor_runsc_download_url", "storage.googleapis.com/gvisor/releases/release/{v}/{march}/runsc"),
    ("gvisor_containerd_shim_runsc_download_url",
     "storage.googleapis.com/gvisor/releases/release/{v}/{march}/containerd-shim-runsc-v1"),
    ("nerdctl_download_url",
     "github.com/containerd/nerdctl/releases/download/v{v}/nerdctl-{v}-linux-{arch}.tar.gz"),
    # the static build too: Kubespray adds `static-` when containerd_static_binary is true
    ("containerd_download_url",
     "github.com/containerd/containerd/releases/download/v{v}/containerd-{static}{v}-linux-{arch}.tar.gz"),
    ("cri_dockerd_download_url", "github.com/Mirantis/cri-dockerd/releases/download/v{v}/cri-dockerd-{v}.{arch}.tgz"),
    ("skopeo_download_url", "github.com/lework/skopeo-binary/releases/download/v{v}/skopeo-linux-{arch}"),
    ("yq_download_url", "github.com/mikefarah/yq/releases/download/v{v}/yq_linux_{arch}"),
    ("argocd_install_url", "raw.githubusercontent.com/argoproj/argo-cd/v{v}/manifests/install.yaml"),
    ("gateway_api_crds_download_url",
     "github.com/kubernetes-sigs/gateway-api/releases/download/v{v}/{*}-install.yaml"),
    ("prometheus_operator_crds_download_url",
     "github.com/prometheus-operator/prometheus-operator/releases/download/v{v}/stripped-down-crds.yaml"),
]  # fmt: skip

DEEPOPS_FILES: list[tuple[str, str]] = [
    ("slurm_src_url", "download.schedmd.com/slurm/slurm-{v}.tar.bz2"),
    ("pmix_src_url", "github.com/openpmix/openpmix/releases/download/v{v}/pmix-{v}.tar.bz2"),
    ("hwloc_src_url", "download.open-mpi.org/release/hwloc/{*}/hwloc-{v}.tar.gz"),
    ("openmpi_src_url", "download.open-mpi.org/release/open-mpi/{*}/openmpi-{v}.tar.bz2"),
    ("nhc_src_url", "github.com/mej/nhc/releases/download/{v}/lbnl-nhc-{v}.tar.xz"),
    ("slurm_pyxis_tarball_url", "github.com/NVIDIA/pyxis/archive/v{v}.tar.gz"),
    ("hpcsdk_download_url", "developer.download.nvidia.com/hpc-sdk/{*}/{*}.tar.gz"),
    ("mofed_download_url", "www.mellanox.com/downloads/ofed/MLNX_OFED-{v}/{*}.tgz"),
    ("trident_installer_url", "github.com/NetApp/trident/releases/download/v{v}/trident-installer-{v}.tar.gz"),
    ("eb_bootstrap_url",
     "raw.githubusercontent.com/easybuilders/easybuild-framework/{*}/easybuild/scripts/bootstrap_eb.py"),
    ("mig_manager_url_deb", "github.com/NVIDIA/mig-parted/releases/download/v{v}/nvidia-mig-manager_{v}_{arch}.deb"),
    ("mig_manager_url_rpm", "github.com/NVIDIA/mig-parted/releases/download/v{v}/nvidia-mig-manager-{v}.{march}.rpm"),
    ("epel_package", "dl.fedoraproject.org/pub/epel/epel-release-latest-{v}.noarch.rpm"),
    ("epel_key_url", "dl.fedoraproject.org/pub/epel/RPM-GPG-KEY-EPEL-{v}"),
    ("docker_compose_download_url", "github.com/docker/compose/releases/download/{v}/docker-compose-{*}"),
    ("nvidia_k8s_device_plugin_def",
     "raw.githubusercontent.com/NVIDIA/k8s-device-plugin/{v}/{any}nvidia-device-plugin.yml"),
    ("nvidia_docker_wrapper_url", "raw.githubusercontent.com/NVIDIA/nvidia-docker/{*}/nvidia-docker"),
]  # fmt: skip

# the shell scripts' per-download variables (config/airgap/offline_repo_shell_vars.sh)
SHELL_FILES: list[tuple[str, str]] = [
    ("DOCKER_COMPOSE_URL", "github.com/docker/compose/releases/download/{v}/docker-compose-{*}"),
    ("HELM_INSTALL_SCRIPT_URL", "raw.githubusercontent.com/helm/helm/{*}/scripts/get-helm-{*}"),
    ("KUBECTL_BINARY_URL", "dl.k8s.io/release/v{v}/bin/linux/{arch}/kubectl"),
    ("KUBECTL_BINARY_URL", "storage.googleapis.com/kubernetes-release/release/v{v}/bin/linux/{arch}/kubectl"),
]

# ---- images ------------------------------------------------------------------------------------

# Kubespray's base registries: variable → upstream registry host (all other *_image_repo derive from these)
KUBESPRAY_REGISTRIES: list[tuple[str, str]] = [
    ("kube_image_repo", "registry.k8s.io"),
    ("gcr_image_repo", "gcr.io"),
    ("github_image_repo", "ghcr.io"),
    ("docker_image_repo", "docker.io"),
    ("quay_image_repo", "quay.io"),
]
# Kubespray image repositories that do not derive from those (hard-coded hosts in download.yml)
KUBESPRAY_FIXED_REPOS: list[tuple[str, str]] = [
    ("azure_csi_image_repo", "mcr.microsoft.com/oss/kubernetes-csi"),
    ("azure_csi_plugin_image_repo", "mcr.microsoft.com/k8s/csi"),
    ("gcp_pd_csi_image_repo", "gke.gcr.io"),
]
# DeepOps variables holding a whole image reference (repository:tag): variable → upstream repository
DEEPOPS_IMAGES: list[tuple[str, str]] = [
    ("alertmanager_container", "docker.io/prom/alertmanager"),
    ("prometheus_container", "docker.io/prom/prometheus"),
    ("grafana_container", "docker.io/grafana/grafana"),
    ("node_exporter_container", "quay.io/prometheus/node-exporter"),
    ("nvidia_dcgm_container", "nvcr.io/nvidia/k8s/dcgm-exporter"),
    ("slurm_exporter_container", "docker.io/deepops/prometheus-slurm-exporter"),
    ("standalone_container_registry_image", "docker.io/library/registry"),
    ("nginx_docker_cache_image", "docker.io/rpardini/docker-registry-proxy"),
    ("ngc_ready_cuda_container", "nvcr.io/nvidia/cuda"),
    ("ngc_ready_pytorch", "nvcr.io/nvidia/pytorch"),
    ("ngc_ready_tensorflow", "nvcr.io/nvidia/tensorflow"),
]
# DeepOps variables holding a repository without tag: variable → upstream repository
DEEPOPS_IMAGE_REPOS: list[tuple[str, str]] = [
    ("dashboard_image_repo", "docker.io/kubernetesui/dashboard"),
    ("dashboard_metrics_scraper_repo", "docker.io/kubernetesui/metrics-scraper"),
]
# DeepOps variables naming a registry path: (variable, upstream prefix, an image that must be there)
DEEPOPS_IMAGE_PREFIXES: list[tuple[str, str, str]] = [
    ("gpu_operator_driver_registry", "nvcr.io/nvidia", "nvcr.io/nvidia/driver"),
]
# shell variables naming an image repository (no tag): variable → upstream repositories
SHELL_IMAGE_REPOS: list[tuple[str, tuple[str, ...]]] = [
    ("ROOK_CEPH_IMAGE_REPO", ("docker.io/rook/ceph",)),
    ("METALLB_SPEAKER_REPO", ("quay.io/metallb/speaker", "docker.io/metallb/speaker")),
    ("METALLB_CONTROLLER_REPO", ("quay.io/metallb/controller", "docker.io/metallb/controller")),
    ("NGINX_INGRESS_CONTROLLER_REPO", ("registry.k8s.io/ingress-nginx/controller",
                                       "quay.io/kubernetes-ingress-controller/nginx-ingress-controller")),
    ("PROMETHEUS_REPO", ("quay.io/prometheus/prometheus", "docker.io/prom/prometheus")),
    ("ALERTMANAGER_REPO", ("quay.io/prometheus/alertmanager", "docker.io/prom/alertmanager")),
    ("GRAFANA_REPO", ("docker.io/grafana/grafana",)),
]  # fmt: skip

# ---- repositories ---------------------------------------------------------------------------------

# yum: (pattern on repo id or upstream URL, baseurl variables, gpgkey variables)
YUM_REPOS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (r"developer\.download\.nvidia\.com/compute/cuda/repos/(rhel|rocky|centos)",
     ("nvidia_driver_rhel_cuda_repo_baseurl", "rhel_cuda_baseurl"),
     ("nvidia_driver_rhel_cuda_repo_gpgkey", "rhel_cuda_gpgkey")),
    (r"developer\.download\.nvidia\.com/compute/machine-learning/repos/rhel",
     ("rhel_nvidiaml_baseurl",), ("rhel_nvidiaml_gpgkey",)),
    (r"(^|/)epel([/-]|$)|[?&]repo=epel",
     ("epel_baseurl", "nvidia_driver_rhel_epel_repo_baseurl"),
     ("epel_gpgkey", "nvidia_driver_rhel_epel_repo_gpgkey")),
    (r"download\.docker\.com/linux/(centos|rhel)", ("docker_ce_baseurl", "docker_rh_repo_base_url"),
     ("docker_rh_repo_gpgkey",)),
    (r"nvidia\.github\.io/libnvidia-container", ("libnv_container_baseurl",),
     ("nvidia_container_toolkit_repo_gpg_url",)),
    (r"nvidia\.github\.io/nvidia-container-runtime", ("nvcontainer_runtime_baseurl",), ()),
    (r"nvidia\.github\.io/nvidia-docker", ("nvdocker_repo_base_url", "nvidia_docker_repo_base_url"),
     ("nvdocker_gpg_path", "nvidia_docker_repo_gpg_url")),
    (r"international\.download\.nvidia\.com/dgx/repos", ("nvidia_dgx_rhel_baseurl",), ("nvidia_dgx_rhel_gpgkey",)),
    (r"^base$", ("base_baseurl",), ()),
    (r"^updates$", ("updates_baseurl",), ()),
    (r"^extras$", ("extras_baseurl",), ()),
]  # fmt: skip
# a yum repo's own .repo file as the mirror serves it: (pattern, variable)
YUM_REPO_FILES: list[tuple[str, str]] = [
    (r"nvidia\.github\.io/libnvidia-container", "nvidia_container_toolkit_rpm_repo_url"),
    (r"nvidia\.github\.io/nvidia-docker", "nvdocker_rhel_repo_file_download_url"),
]
APT_REPOS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (r"developer\.download\.nvidia\.com/compute/cuda/repos/(ubuntu|debian)",
     ("nvidia_driver_ubuntu_cuda_repo_baseurl",), ()),
    (r"download\.docker\.com/linux/ubuntu", ("docker_ubuntu_repo_base_url",), ("docker_ubuntu_repo_gpgkey",)),
    (r"download\.docker\.com/linux/debian", ("docker_debian_repo_base_url",), ("docker_debian_repo_gpgkey",)),
    (r"repo\.download\.nvidia\.com/baseos/ubuntu", ("nvidia_dgx_os5_ubuntu_baseurl",),
     ("nvidia_dgx_os5_ubuntu_gpgkey",)),
    (r"international\.download\.nvidia\.com/dgx/repos", ("nvidia_dgx_ubuntu_baseurl",), ()),
]  # fmt: skip
# Helm repositories: (upstream repository URL pattern, variables)
CHART_REPOS: list[tuple[str, tuple[str, ...]]] = [
    (r"helm\.ngc\.nvidia\.com/nvidia/?$", ("gpu_operator_helm_repo",)),
    (r"helm\.ngc\.nvidia\.com/nvaie", ("gpu_operator_nvaie_helm_repo",)),
    (r"nvidia\.github\.io/k8s-device-plugin", ("k8s_gpu_plugin_helm_repo", "k8s_gpu_feature_discovery_helm_repo")),
    (r"kubernetes-sigs\.github\.io/nfs-subdir-external-provisioner", ("k8s_nfs_client_helm_repo",)),
    (r"netapp\.github\.io/trident-helm-chart", ("trident_helm_repo_url",)),
    (r"helm\.twun\.io", ("container_registry_chart_location",)),
    (r"charts\.rook\.io", ("rook_helm_chart_repo",)),
]

# Kubespray's base URLs and default registries, for the leak check: a variable built from one of
# these that the inventory does not override points at the Internet
KUBESPRAY_DEFAULTS: dict[str, str] = {
    "github_url": "https://github.com",
    "dl_k8s_io_url": "https://dl.k8s.io",
    "storage_googleapis_url": "https://storage.googleapis.com",
    "get_helm_url": "https://get.helm.sh",
    **{var: host for var, host in KUBESPRAY_REGISTRIES},
    "kubeadm_image_repo": "{{ kube_image_repo }}",
}

ARCHES = r"amd64|arm64|arm|ppc64le|riscv64|s390x"
MARCHES = r"x86_64|aarch64|armv7l|ppc64le|riscv64|s390x"


@cache
def pattern_re(pattern: str) -> re.Pattern[str]:
    """``{v}`` (one version, the same everywhere it appears), ``{arch}``, ``{march}``, ``{*}``, ``{any}``."""
    out, seen_v = "", False
    for part in re.split(r"(\{[a-z*]+\})", pattern):
        if part == "{v}":
            out += "(?P=v)" if seen_v else r"(?P<v>v?[0-9][^/]*?)"
            seen_v = True
        elif part == "{arch}":
            out += rf"(?P<arch>{ARCHES})"
        elif part == "{march}":
            out += rf"(?P<march>{MARCHES})"
        elif part == "{static}":
            out += r"(?:static-)?"
        elif part == "{*}":
            out += r"[^/]+?"
        elif part == "{any}":
            out += r"(?:[^/]+/)*"
        else:
            out += re.escape(part)
    return re.compile(f"^{out}$", re.IGNORECASE)

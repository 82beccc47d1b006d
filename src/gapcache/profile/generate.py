"""Regenerate profile entries from Kubespray and DeepOps checkouts, with ansible-core's templating.

Kubespray's download defaults are Ansible-flavoured Jinja (``dict2items``, the ``version`` test,
``lookup('vars', …)``, variables defined in terms of other variables); evaluating them with
ansible-core's own :class:`~ansible.template.Templar`, with the inventory variables that select
components, is the one honest way to know what a default deployment downloads.

- Kubespray: ``roles/kubespray_defaults/defaults/main/*.yml`` and ``vars/main/*.yml`` (download.yml,
  main.yml, checksums.yml, the version tables); every enabled entry of ``downloads:`` per
  architecture — files with their URL and checksum, containers with repo and tag — plus the four
  control-plane images kubeadm pulls itself (``kubeadm_image_repo``, ``v{{ kube_version }}``).
- DeepOps: the role defaults (``roles/<role>/defaults/main.yml``) and ``config.example/group_vars``
  named in the tables below; its ``k8s_cluster`` group vars are the inventory for Kubespray.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import GapcacheError
from ..names import parse_ref

ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}  # image_arch → ansible_architecture
DEFAULTS = "roles/kubespray_defaults/defaults/main"
VARS = "roles/kubespray_defaults/vars/main"
KUBEADM_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")

# DeepOps: (role or None for config.example/group_vars/all.yml, variable)
DEEPOPS_FILES = [
    ("slurm", "slurm_src_url"),
    ("slurm", "hwloc_src_url"),
    ("slurm", "pmix_src_url"),
    ("pyxis", "slurm_pyxis_tarball_url"),
    ("nhc", "nhc_src_url"),
    ("nvidia-mig-manager", "mig_manager_url_deb"),
    ("nvidia-mig-manager", "mig_manager_url_rpm"),
]
DEEPOPS_IMAGES = [
    ("nvidia-dcgm-exporter", "nvidia_dcgm_container"),
    ("prometheus", "prometheus_container"),
    ("grafana", "grafana_container"),
    ("alertmanager", "alertmanager_container"),
    ("prometheus-node-exporter", "node_exporter_container"),
    (None, "ngc_ready_cuda_container"),
]
DRIVER_OS_TAGS = ("ubuntu22.04", "ubuntu24.04")
# (role, repo variable, chart name variable, version variable)
DEEPOPS_CHARTS = [
    ("nvidia-gpu-operator", "gpu_operator_helm_repo", "gpu_operator_chart_name", "gpu_operator_chart_version"),
    ("nvidia-k8s-gpu-device-plugin", "k8s_gpu_plugin_helm_repo", "k8s_gpu_plugin_chart_name",
     "k8s_gpu_plugin_chart_version"),
    ("nvidia-k8s-gpu-feature-discovery", "k8s_gpu_feature_discovery_helm_repo",
     "k8s_gpu_feature_discovery_chart_name", "k8s_gpu_feature_discovery_chart_version"),
    ("nfs-client-provisioner", "k8s_nfs_client_helm_repo", "k8s_nfs_client_chart_name", "k8s_nfs_client_chart_version"),
]  # fmt: skip
# (script, repo variable, chart name, version variable): `VAR="${VAR:-default}"` lines
DEEPOPS_SCRIPT_CHARTS = [
    ("scripts/k8s/deploy_monitoring.sh", "HELM_CHARTS_REPO_PROMETHEUS", "kube-prometheus-stack",
     "HELM_PROMETHEUS_CHART_VERSION"),
    ("scripts/k8s/deploy_ingress.sh", "HELM_CHARTS_REPO_INGRESS", "ingress-nginx", "HELM_INGRESS_CHART_VERSION"),
]  # fmt: skip


class SourceError(GapcacheError):
    exit_code = 2


def _loader() -> Any:
    from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]

    return DataLoader()


def _load_dir(loader: Any, folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml")):
        data = loader.load_from_file(str(path), trusted_as_template=True)
        if isinstance(data, Mapping):
            out.update(data)
    return out


def _load_file(loader: Any, path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = loader.load_from_file(str(path), trusted_as_template=True)
    return dict(data) if isinstance(data, Mapping) else {}


def checkout_version(checkout: Path, tag_prefix: str = "v") -> str:
    """``v2.31.0`` from galaxy.yml (Kubespray) or ``git describe``; else the folder's name without
    its project prefix (``deepops-3957a42f`` → ``3957a42f``)."""
    galaxy = checkout / "galaxy.yml"
    if galaxy.is_file():
        m = re.search(r"^version:\s*['\"]?([0-9][^'\"\s]*)", galaxy.read_text(), re.M)
        if m:
            return tag_prefix + m.group(1)
    try:
        out = subprocess.run(
            ["git", "-C", str(checkout), "describe", "--tags", "--always"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        out = None
    if out is not None and out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip()
    return re.sub(r"^(kubespray|deepops)[-_]", "", checkout.resolve().name) or "checkout"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _templar(variables: dict[str, Any]) -> Any:
    from ansible.template import Templar  # type: ignore[import-untyped]

    return Templar(loader=_loader(), variables=variables)


def _render(templar: Any, value: Any) -> Any:
    from ansible.template import trust_as_template

    if isinstance(value, str):
        value = trust_as_template(value)
    out = templar.template(value)
    return out.strip() if isinstance(out, str) else out


def kubespray(checkout: Path, inventory: Mapping[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The files and images a Kubespray checkout downloads by default, for amd64 and arm64."""
    from ansible.errors import AnsibleError  # type: ignore[import-untyped]

    if not (checkout / DEFAULTS).is_dir():
        raise SourceError(f"{checkout}: not a Kubespray checkout (no {DEFAULTS}/)")
    loader = _loader()
    base = {**_load_dir(loader, checkout / DEFAULTS), **_load_dir(loader, checkout / VARS)}
    if "downloads" not in base:
        raise SourceError(f"{checkout}/{DEFAULTS}: no `downloads:` dict")
    version = checkout_version(checkout)
    origin = f"kubespray {version} {DEFAULTS}/download.yml"
    files: list[dict[str, Any]] = []
    images: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    defaults = dict(base.get("download_defaults") or {})
    for arch, machine in ARCHES.items():
        facts = {"ansible_architecture": machine, "ansible_system": "Linux", "ansible_os_family": "Debian"}
        templar = _templar({**base, **(inventory or {}), **facts})
        for name, spec in dict(base["downloads"]).items():
            d = {**defaults, **dict(spec)}
            try:
                if not _truthy(_render(templar, d.get("enabled", False))):
                    continue
                if _truthy(_render(templar, d.get("file", False))):
                    url = str(_render(templar, d["url"]))
                    checksum = str(_render(templar, d.get("checksum") or "")).removeprefix("sha256:")
                    if any(f["url"] == url for f in files):
                        continue  # one file for every architecture (calico's CRDs)
                    entry: dict[str, Any] = {"url": url}
                    if re.fullmatch(r"[0-9a-f]{64}", checksum):
                        entry["sha256"] = checksum
                    entry["from"] = f"{origin}: {name} {arch}"
                    files.append(entry)
                if _truthy(_render(templar, d.get("container", False))):
                    ref = f"{_render(templar, d['repo'])}:{_render(templar, d['tag'])}"
                    images.setdefault(str(parse_ref(ref)), {"ref": str(parse_ref(ref)), "from": f"{origin}: {name}"})
            except (AnsibleError, KeyError, ValueError, TypeError) as exc:
                problems.append(f"downloads.{name} ({arch}): {str(exc).splitlines()[0]}")
        if arch == "amd64":
            try:
                for comp in KUBEADM_IMAGES:
                    text = _render(templar, f"{{{{ kubeadm_image_repo }}}}/{comp}:v{{{{ kube_version }}}}")
                    ref = str(parse_ref(str(text)))
                    images.setdefault(ref, {"ref": ref, "from": f"kubespray {version} kubeadm config images: {comp}"})
            except (AnsibleError, ValueError) as exc:
                problems.append(f"kubeadm images: {str(exc).splitlines()[0]}")
    if problems:
        raise SourceError(f"{checkout}: cannot evaluate Kubespray's download defaults:\n  " + "\n  ".join(problems))
    return {"files": files, "images": list(images.values())}


def deepops_inventory(checkout: Path) -> dict[str, Any]:
    """DeepOps's Kubernetes group vars: the inventory Kubespray runs with under DeepOps."""
    loader = _loader()
    return _load_file(loader, checkout / "config.example/group_vars/k8s_cluster.yml")


def _role_vars(loader: Any, checkout: Path, role: str | None, group_all: dict[str, Any]) -> dict[str, Any] | None:
    if role is None:
        return group_all
    path = checkout / "roles" / role / "defaults/main.yml"
    return {**_load_file(loader, path), **group_all} if path.is_file() else None


def _script_default(text: str, var: str) -> str | None:
    m = re.search(rf'^{var}="\$\{{{var}:-([^}}"]+)\}}"', text, re.M)
    return m.group(1) if m else None


def deepops(checkout: Path) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """What DeepOps's own roles and scripts download by default: files, images, charts; and the
    warnings (a role or script this checkout does not have)."""
    loader = _loader()
    version = checkout_version(checkout, "")
    group_all = _load_file(loader, checkout / "config.example/group_vars/all.yml")
    out: dict[str, list[dict[str, Any]]] = {"files": [], "images": [], "charts": []}
    warnings: list[str] = []

    def value(role: str | None, var: str) -> str | None:
        variables = _role_vars(loader, checkout, role, group_all)
        where = f"roles/{role}/defaults/main.yml" if role else "config.example/group_vars/all.yml"
        if variables is None or var not in variables:
            warnings.append(f"deepops {version}: {where} has no {var}; left out")
            return None
        return str(_render(_templar(variables), variables[var]))

    def origin(role: str | None, var: str) -> str:
        where = f"roles/{role} defaults" if role else "config.example/group_vars/all.yml"
        return f"deepops {version} {where}: {var}"

    for role, var in DEEPOPS_FILES:
        url = value(role, var)
        if url:
            out["files"].append({"url": url, "from": origin(role, var)})
    for image_role, var in DEEPOPS_IMAGES:
        image = value(image_role, var)
        if image:
            out["images"].append({"ref": str(parse_ref(image)), "from": origin(image_role, var)})
    for role, repo_var, name_var, version_var in DEEPOPS_CHARTS:
        repo, name, ver = value(role, repo_var), value(role, name_var), value(role, version_var)
        if repo and name and ver:
            entry = {"repo": repo, "name": name.rsplit("/", 1)[-1], "version": ver, "images": "discover"}
            out["charts"].append({**entry, "from": origin(role, name_var)})
    registry = value("nvidia-gpu-operator", "gpu_operator_driver_registry")
    driver = value("nvidia-gpu-operator", "gpu_operator_driver_version")
    if registry and driver:  # the GPU Operator's driver container, for the Ubuntu releases DeepOps supports
        for os_tag in DRIVER_OS_TAGS:
            driver_ref = str(parse_ref(f"{registry}/driver:{driver}-{os_tag}"))
            where = origin("nvidia-gpu-operator", f"gpu_operator_driver_version {os_tag}")
            out["images"].append({"ref": driver_ref, "from": where})
    for script, repo_var, name, version_var in DEEPOPS_SCRIPT_CHARTS:
        path = checkout / script
        text = path.read_text() if path.is_file() else ""
        repo, ver = _script_default(text, repo_var), _script_default(text, version_var)
        if not (repo and ver):
            warnings.append(f"deepops {version}: {script} has no {repo_var}/{version_var} default; left out")
            continue
        entry = {"repo": repo, "name": name, "version": ver, "images": "discover"}
        out["charts"].append({**entry, "from": f"deepops {version} {script}: {name}"})
    return out, warnings

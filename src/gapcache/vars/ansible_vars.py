"""``offline_repo_vars.yml`` (Ansible extra-vars for DeepOps and Kubespray) and
``offline_repo_shell_vars.sh`` (the shell scripts' variables), from a lock.

The shape is the seed's: one ``deepops_mirror_host``, the per-service mirrors built from it
(``deepops_docker_mirror``, ``deepops_yum_mirror``, …, with the ports written out — the seed's
referred to role defaults that were undefined elsewhere), and every other variable built from
those, so changing the host is one line. A variable is written only for content the lock holds.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from ..names import host_component
from . import catalog
from .facts import Facts, Mirrors
from .matching import has_prefix, image_ref, images_of, match_file, newest_tag, pick_file

Section = tuple[str, list[tuple[str, Any]]]
H = "{{ deepops_mirror_host }}"


def _mirror_name(upstream: str) -> str:
    host, _, rest = upstream.partition("/")
    return f"{host_component(host)}/{rest}" if rest else host_component(host)


def _later(m: Mirrors, listener: str, fmt: str) -> list[str]:
    """The other mirror hosts' addresses, literal (the first one is built from deepops_mirror_host)."""
    return [fmt.format(m.hostport(listener, h)) for h in m.hosts[1:]]


def containerd_mirrors(facts: Facts, m: Mirrors) -> list[dict[str, Any]]:
    """Kubespray's ``containerd_registries_mirrors``: every upstream registry, every mirror host in order
    (no ``server``: Kubespray writes the upstream itself, and a node's fallback is not a variable to check)."""
    hosts = [f"{m.scheme}://{{{{ deepops_docker_mirror }}}}", *_later(m, "registry", f"{m.scheme}://{{}}")]
    out = []
    for registry in facts.registries():
        mirrors = [{"host": h, "capabilities": ["pull", "resolve"], "skip_verify": False} for h in hosts]
        out.append({"prefix": registry, "mirrors": mirrors})
    return out


def _yum_sections(facts: Facts, m: Mirrors) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("yum_repo", "{{ deepops_yum_mirror }}")]
    repos: list[dict[str, Any]] = []
    for r in facts.yum:
        base = f"{{{{ deepops_yum_mirror }}}}/{r.id}/"
        keys = [f"{{{{ deepops_yum_mirror }}}}/gpgkeys/{k}" for k in r.keys]
        for rx, base_vars, key_vars in catalog.YUM_REPOS:
            if re.search(rx, r.upstream) or re.search(rx, r.id):
                out += [(v, base) for v in base_vars]
                if keys:  # the upstream's key (the first); a subset's site key is the last
                    out += [(v, keys[0]) for v in key_vars]
        for rx, var in catalog.YUM_REPO_FILES:
            if re.search(rx, r.upstream):
                out.append((var, f"{{{{ deepops_yum_mirror }}}}/{r.id}.repo"))
        repos.append({"id": r.id, "baseurl": [base, *(f"{u}/{r.id}/" for u in _later(m, "repos", f"{m.scheme}://{{}}"))],
                      "gpgkey": keys, "repo_gpgcheck": r.signed})  # fmt: skip
    out.append(("yum_base_repos", [{"name": r.id, "url": f"{{{{ deepops_yum_mirror }}}}/{r.id}/"} for r in facts.yum]))
    out.append(("gapcache_yum_repos", repos))
    return out


def _apt_sections(facts: Facts, m: Mirrors) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [
        ("ubuntu_repo", "{{ deepops_apt_mirror }}"),
        ("debian_repo", "{{ deepops_apt_mirror }}"),
    ]
    repos = []
    for r in facts.apt:
        base = f"{{{{ deepops_apt_mirror }}}}/{r.id}"
        key = f"{base}/key.gpg"
        for rx, base_vars, key_vars in catalog.APT_REPOS:
            if re.search(rx, r.upstream):
                out += [(v, base) for v in base_vars] + [(v, key) for v in key_vars]
        later = [f"{u}/{r.id}" for u in _later(m, "repos", f"{m.scheme}://{{}}")]
        for tree, archs in r.trees:
            repos.append({"id": r.id, "uris": [f"{u}/{tree}".rstrip("/") if tree else u for u in [base, *later]],
                          "suites": list(r.suites), "components": list(r.components), "architectures": list(archs),
                          "key": key if r.signed else "", "signed": r.signed})  # fmt: skip
    out.append(("gapcache_apt_repos", repos))
    return out


def _image_vars(facts: Facts, m: Mirrors) -> list[tuple[str, Any]]:
    imgs = facts.images
    regs = facts.registries()
    out: list[tuple[str, Any]] = [("registry_host", "{{ deepops_docker_mirror }}")]
    out += [(var, f"{{{{ registry_host }}}}/{host}") for var, host in catalog.KUBESPRAY_REGISTRIES if host in regs]
    out += [(var, f"{{{{ registry_host }}}}/{_mirror_name(up)}")
            for var, up in catalog.KUBESPRAY_FIXED_REPOS if has_prefix(imgs, up)]  # fmt: skip
    for var, up in catalog.DEEPOPS_IMAGES:
        img = newest_tag(images_of(imgs, up))
        if img is not None:
            out.append((var, f"{{{{ deepops_docker_mirror }}}}/{image_ref(img)}"))
    for var, up in catalog.DEEPOPS_IMAGE_REPOS:
        if images_of(imgs, up):
            out.append((var, f"{{{{ deepops_docker_mirror }}}}/{_mirror_name(up)}"))
    for var, up, needed in catalog.DEEPOPS_IMAGE_PREFIXES:
        if images_of(imgs, needed):
            out.append((var, f"{{{{ deepops_docker_mirror }}}}/{_mirror_name(up)}"))
    out.append(("docker_insecure_registries", ["{{ deepops_docker_mirror }}", *_later(m, "registry", "{}")])
               if m.scheme == "http" else ("docker_insecure_registries", []))  # fmt: skip
    out.append(
        (
            "docker_registry_mirrors",
            [f"{m.scheme}://{{{{ deepops_docker_mirror }}}}", *_later(m, "registry", f"{m.scheme}://{{}}")],
        )
    )
    out.append(("containerd_registries_mirrors", containerd_mirrors(facts, m)))
    return out


def _file_vars(facts: Facts) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("files_repo", "{{ deepops_misc_mirror }}")]
    hosts = {f.path.split("/", 1)[0] for f in facts.files}
    bases = {"github_url": "github.com", "dl_k8s_io_url": "dl.k8s.io",
             "storage_googleapis_url": "storage.googleapis.com", "get_helm_url": "get.helm.sh"}  # fmt: skip
    # Kubespray's base URLs: whatever else it builds from them lands on the mirror (a miss is logged), not the Internet
    out += [(var, f"{{{{ files_repo }}}}/{host}") for var, host in bases.items() if host in hosts]
    for var, pattern in catalog.KUBESPRAY_FILES:
        arch_var = "ansible_architecture" if "{march}" in pattern else "image_arch"
        hit = match_file(facts.files, pattern, arch_var)
        if hit is not None:
            out.append((var, f"{{{{ files_repo }}}}/{hit.path}"))
    for var, pattern in catalog.DEEPOPS_FILES:
        hit = match_file(facts.files, pattern)
        if hit is not None:
            out.append((var, f"{{{{ deepops_misc_mirror }}}}/{hit.path}"))
    return out


def vars_sections(facts: Facts, m: Mirrors) -> list[Section]:
    """The variables, in sections, each ``(name, value)``; only for content in the lock."""
    s = m.scheme
    top: list[tuple[str, Any]] = [("deepops_mirror_host", m.host), ("deepops_mirror_hosts", [H, *m.hosts[1:]])]
    serves = {
        "registry": bool(facts.images),
        "repos": bool(facts.yum or facts.apt),
        "charts": bool(facts.charts),
        "pypi": bool(facts.python),
        "files": bool(facts.files),
    }
    listeners = {k: m.ports[k] for k, on in serves.items() if on and m.on(k)}
    if "registry" in listeners:
        top.append(("deepops_docker_mirror", f"{H}:{m.ports['registry']}"))
    if "repos" in listeners and facts.yum:
        top.append(("deepops_yum_mirror", f"{s}://{H}:{m.ports['repos']}"))
    if "repos" in listeners and facts.apt:
        top.append(("deepops_apt_mirror", f"{s}://{H}:{m.ports['repos']}"))
    if "charts" in listeners:
        top.append(("deepops_charts_mirror", f"{s}://{H}:{m.ports['charts']}"))
    if "pypi" in listeners:
        top.append(("deepops_pypi_mirror", f"{s}://{H}:{m.ports['pypi']}"))
    if "files" in listeners:
        top.append(("deepops_misc_mirror", f"{s}://{H}:{m.ports['files']}"))
    top.append(("gapcache_ports", listeners))
    if m.ca and s == "https":
        top.append(("gapcache_mirror_ca", m.ca))
    sections: list[Section] = [("Mirrors (gapcache serve; ports as served)", top)]
    if "registry" in listeners:
        sections.append(("Container images: registry and image repositories", _image_vars(facts, m)))
    if "repos" in listeners and facts.yum:
        flags = [("nvidia_docker_add_repo", False), ("docker_add_repo", False)]
        sections.append(("yum repositories (gpgcheck on, keys from the mirror)", _yum_sections(facts, m) + flags))
    if "repos" in listeners and facts.apt:
        sections.append(("apt repositories (signed, keys from the mirror)", _apt_sections(facts, m)))
    if "charts" in listeners:
        charts: list[tuple[str, Any]] = [("helm_chart_location", "{{ deepops_charts_mirror }}"),
                                         ("helm_stable_repo_url", "{{ deepops_charts_mirror }}")]  # fmt: skip
        for rx, names in catalog.CHART_REPOS:
            if any(re.search(rx, c.repo) for c in facts.charts):
                charts += [(v, "{{ deepops_charts_mirror }}") for v in names]
        sections.append(("Helm charts", charts))
    if "pypi" in listeners:
        sections.append(("Python packages", [("gapcache_pip_index_url", "{{ deepops_pypi_mirror }}/simple/")]))
    if "files" in listeners:
        sections.append(("Files: Kubespray's downloads and DeepOps's (files_repo + original host and path)",
                         _file_vars(facts)))  # fmt: skip
    return [(title, _dedupe(entries)) for title, entries in sections]


def _dedupe(entries: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    seen: set[str] = set()
    out = []
    for name, value in entries:
        if name not in seen:
            seen.add(name)
            out.append((name, value))
    return out


def render_vars(sections: list[Section], header: str) -> str:
    lines = ["---", *(f"# {h}" if h else "#" for h in header.splitlines())]
    for title, entries in sections:
        lines += ["", f"# ---- {title} " + "-" * max(4, 90 - len(title))]
        for name, value in entries:
            lines.append(
                yaml.safe_dump({name: value}, sort_keys=False, width=10_000, default_flow_style=False).rstrip()
            )
    return "\n".join(lines) + "\n"


def shell_vars(facts: Facts, m: Mirrors) -> list[tuple[str, str]]:
    """``(NAME, value)``; values may use ``${DEEPOPS_MIRROR_HOST}`` and the earlier names."""
    s = m.scheme
    out: list[tuple[str, str]] = [("DEEPOPS_OFFLINE", "1")]
    if facts.files and m.on("files"):
        out.append(("DEEPOPS_MISC_MIRROR", f"{s}://${{DEEPOPS_MIRROR_HOST}}:{m.ports['files']}"))
        for name, pattern in catalog.SHELL_FILES:
            path = pick_file(facts.files, pattern)
            if path is not None and name not in dict(out):
                out.append((name, f"${{DEEPOPS_MISC_MIRROR}}/{path}"))
    if facts.images and m.on("registry"):
        out.append(("DEEPOPS_DOCKER_REGISTRY", f"${{DEEPOPS_MIRROR_HOST}}:{m.ports['registry']}"))
        for name, ups in catalog.SHELL_IMAGE_REPOS:
            up = next((u for u in ups if images_of(facts.images, u)), None)
            if up is not None:
                out.append((name, f"${{DEEPOPS_DOCKER_REGISTRY}}/{_mirror_name(up)}"))
        if images_of(facts.images, "docker.io/rook/ceph"):
            out.append(("DEEPOPS_ROOK_DOCKER_REGISTRY", "${DEEPOPS_DOCKER_REGISTRY}"))
        if images_of(facts.images, "nvcr.io/nvidia/k8s/dcgm-exporter"):
            out.append(("DCGM_DOCKER_REGISTRY", "${DEEPOPS_DOCKER_REGISTRY}/nvcr.io/nvidia/k8s"))
    if facts.charts and m.on("charts"):
        out.append(("DEEPOPS_HELM_REPO", f"{s}://${{DEEPOPS_MIRROR_HOST}}:{m.ports['charts']}"))
        if any("rook" in c.repo or c.name == "rook-ceph" for c in facts.charts):
            out.append(("HELM_ROOK_CHART_REPO", "${DEEPOPS_HELM_REPO}"))
    if facts.python and m.on("pypi"):
        out.append(("PIP_INDEX_URL", f"{s}://${{DEEPOPS_MIRROR_HOST}}:{m.ports['pypi']}/simple/"))
        if s == "http":
            out.append(("PIP_TRUSTED_HOST", " ".join(m.hosts)))
        elif m.ca:
            out.append(("PIP_CERT", m.ca))
    if m.ca and s == "https":
        out.append(("GAPCACHE_MIRROR_CA", m.ca))
    return out


def render_shell(facts: Facts, m: Mirrors, header: str) -> str:
    """Sourced by the DeepOps scripts. It refuses (return 1) while the mirror host is a placeholder."""
    lines = ["# shellcheck shell=sh", *(f"# {h}" if h else "#" for h in header.splitlines()), "",
             f"DEEPOPS_MIRROR_HOST={shlex.quote(m.host)}",
             'case "$DEEPOPS_MIRROR_HOST" in',
             '  ""|specify-ip-here|*"<"*|MIRROR)',
             '    echo "offline_repo_shell_vars.sh: the mirror host is a placeholder ($DEEPOPS_MIRROR_HOST);" \\',
             '      "re-run gapcache vars --mirror-host HOST or set DEEPOPS_MIRROR_HOST" >&2',
             "    return 1 2>/dev/null || exit 1 ;;",
             "esac",
             "export DEEPOPS_MIRROR_HOST"]  # fmt: skip
    for name, value in shell_vars(facts, m):
        lines.append(f'export {name}="{value}"')
    return "\n".join(lines) + "\n"

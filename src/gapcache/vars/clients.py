"""Client configuration for the nodes, under ``clients/``: a file per client, as each reads it.

- ``yum.repos.d/<id>.repo`` — every mirror host in ``baseurl`` (dnf falls back in order),
  ``gpgcheck=1``, ``repo_gpgcheck`` as the repo is signed, the keys from the mirror;
- ``apt/sources.list.d/<id>.sources`` — deb822, every mirror host in ``URIs``, ``Signed-By`` a
  keyring the apt playbook fetches from ``/<id>/key.gpg``;
- ``pip.conf`` — the first mirror's index, the others as extra indexes, every host trusted;
- ``containerd/certs.d/<registry>/hosts.toml`` — one per upstream registry in the lock, every
  mirror host in order (containerd tries the next when one is down), ``server`` the upstream;
- ``docker/daemon.json`` — ``registry-mirrors`` and ``insecure-registries``;
- ``containers/registries.conf`` — podman/CRI-O/skopeo: a mirror per upstream registry;
- ``helm/repositories.yaml`` — the chart mirror as a Helm repository;
- ``git/gitconfig`` — ``url.<mirror>/git/<host>/.insteadOf https://<host>/`` per upstream git host
  (clones and submodules go through the mirror unchanged);
- ``ansible/ansible.cfg`` — ``[galaxy] server_list`` pointing at the mirror's Galaxy API.

Over https with a CA path (``vars --https [--ca PATH]``), each names it: ``sslcacert=`` (yum),
``cert =`` (pip, instead of ``trusted-host``), ``ca =`` (containerd), ``caFile:`` (Helm); podman,
CRI-O, skopeo and Docker read ``certs.d/<host:port>/ca.crt``, written with the CA itself
(``ca.crt``) when it is known (``--root`` with ``tls/ca.crt``).
"""

from __future__ import annotations

import json

from ..kinds.apt.sources import render_sources
from ..names import host_component
from .facts import AptRepo, Facts, Mirrors

KEYRINGS = "/etc/apt/keyrings"  # where the mirror's own .sources expects <id>.gpg


def yum_repo_file(facts: Facts, m: Mirrors, repo_id: str) -> str:
    r = next(x for x in facts.yum if x.id == repo_id)
    bases = " ".join(f"{u}/{r.id}/" for u in m.urls("repos"))
    keys = " ".join(f"{m.url('repos')}/gpgkeys/{k}" for k in r.keys)
    return (
        f"[{r.id}]\nname={r.id} (gapcache mirror)\nbaseurl={bases}\nenabled=1\n"
        f"gpgcheck=1\nrepo_gpgcheck={int(r.signed)}\ngpgkey={keys}\n"
        + (f"sslcacert={m.ca}\n" if m.scheme == "https" and m.ca else "")
    )


def apt_sources(a: AptRepo, m: Mirrors) -> str:
    """As the mirror's own ``/<id>.sources``, with every mirror host in ``URIs`` (apt tries them in turn)."""
    stanzas = []
    for tree, archs in a.trees:
        uris = [f"{u}/{a.id}/{tree}" for u in m.urls("repos")]
        text = render_sources(uris, list(a.suites), list(a.components), architectures=list(archs),
                              signed_by=f"{KEYRINGS}/{a.id}.gpg" if a.signed else None)  # fmt: skip
        stanzas.append(text if a.signed else text + "Trusted: yes\n")
    return "\n".join(stanzas)


def hosts_toml(server: str, m: Mirrors) -> str:
    lines = [f'server = "{server}"', ""]
    for u in m.urls("registry"):
        lines += [f'[host."{u}"]', '  capabilities = ["pull", "resolve"]']
        if m.scheme == "https":
            lines.append("  skip_verify = false")
            if m.ca:
                lines.append(f'  ca = "{m.ca}"')
        lines.append("")
    return "\n".join(lines)


def registries_conf(facts: Facts, m: Mirrors) -> str:
    blocks = ["# podman, CRI-O, skopeo, buildah: containers-registries.conf(5), version 2"]
    for registry in facts.registries():
        mirror_dir = next(i.host_dir for i in facts.images if i.registry == registry)
        block = f'\n[[registry]]\nprefix = "{registry}"\nlocation = "{registry}"\n'
        for h in m.hosts:
            block += f'\n[[registry.mirror]]\nlocation = "{m.hostport("registry", h)}/{mirror_dir}"\n'
            block += f"insecure = {'true' if m.scheme == 'http' else 'false'}\n"
        blocks.append(block)
    return "\n".join(blocks)


def daemon_json(m: Mirrors) -> str:
    doc: dict[str, list[str]] = {"registry-mirrors": m.urls("registry")}
    if m.scheme == "http":
        doc["insecure-registries"] = [m.hostport("registry", h) for h in m.hosts]
    return json.dumps(doc, indent=2) + "\n"


def pip_conf(m: Mirrors) -> str:
    urls = [f"{u}/simple/" for u in m.urls("pypi")]
    out = f"[global]\nindex-url = {urls[0]}\n"
    if urls[1:]:
        out += f"extra-index-url = {' '.join(urls[1:])}\n"
    if m.scheme == "http":
        out += f"trusted-host = {' '.join(m.hosts)}\n"
    elif m.ca:
        out += f"cert = {m.ca}\n"
    return out


def helm_repositories(m: Mirrors) -> str:
    lines = ['apiVersion: ""', 'generated: "0001-01-01T00:00:00Z"', "repositories:"]
    for i, u in enumerate(m.urls("charts")):
        name = "gapcache" if i == 0 else f"gapcache-{i + 1}"
        ca = m.ca if m.scheme == "https" and m.ca else ""
        lines += [f"- name: {name}", f"  url: {u}", f'  caFile: "{ca}"', "  certFile: \"\"", "  keyFile: \"\"",
                  "  insecure_skip_tls_verify: false", "  pass_credentials_all: false", "  username: \"\"",
                  "  password: \"\""]  # fmt: skip
    return "\n".join(lines) + "\n"


def ca_files(m: Mirrors, ca_pem: str) -> dict[str, str]:
    """The CA itself, and where podman/CRI-O/skopeo and Docker look for it (per mirror host:port)."""
    out = {"ca.crt": ca_pem}
    for h in m.hosts:
        out[f"containers/certs.d/{m.hostport('registry', h)}/ca.crt"] = ca_pem
        out[f"docker/certs.d/{m.hostport('registry', h)}/ca.crt"] = ca_pem
    return out


def client_files(facts: Facts, m: Mirrors, ca_pem: str | None = None) -> dict[str, str]:
    """Relative path below ``clients/`` → content, only for content in the lock."""
    out: dict[str, str] = ca_files(m, ca_pem) if ca_pem and m.scheme == "https" else {}
    if facts.yum and m.on("repos"):
        for r in facts.yum:
            out[f"yum.repos.d/{r.id}.repo"] = yum_repo_file(facts, m, r.id)
    if facts.apt and m.on("repos"):
        for a in facts.apt:
            out[f"apt/sources.list.d/{a.id}.sources"] = apt_sources(a, m)
            if a.signed:
                out[f"apt/keys/{a.id}.url"] = f"{m.url('repos')}/{a.id}/key.gpg\n"
    if facts.python and m.on("pypi"):
        out["pip.conf"] = pip_conf(m)
    if facts.images and m.on("registry"):
        for registry, server in facts.registries().items():
            out[f"containerd/certs.d/{registry}/hosts.toml"] = hosts_toml(server, m)
        out["docker/daemon.json"] = daemon_json(m)
        out["containers/registries.conf"] = registries_conf(facts, m)
    if facts.charts and m.on("charts"):
        out["helm/repositories.yaml"] = helm_repositories(m)
    if facts.git_hosts and m.on("files"):
        out["git/gitconfig"] = git_config(facts, m)
    if facts.galaxy and m.on("files"):
        out["ansible/ansible.cfg"] = ansible_cfg(m)
    return out


def git_config(facts: Facts, m: Mirrors) -> str:
    """``git clone https://github.com/NVIDIA/deepops`` (and its submodules) through the mirror:
    include it from ~/.gitconfig or /etc/gitconfig (``git config --global include.path FILE``)."""
    out = []
    for base in facts.git_hosts:
        mirror = f"{m.url('files')}/git/{host_component(base)}/"
        out.append(f'[url "{mirror}"]\n\tinsteadOf = {base}\n')
    return "".join(out)


def ansible_cfg(m: Mirrors) -> str:
    """``ansible-galaxy collection|role install -r requirements.yml`` from the mirror's Galaxy API."""
    return f"[galaxy]\nserver_list = mirror\n\n[galaxy_server.mirror]\nurl = {m.url('files')}/galaxy/\n"

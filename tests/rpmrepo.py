"""A signed yum repository built by the tests: rpmbuild, rpmsign, createrepo_c, gpg."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SPEC = """Name: {name}
Version: {version}
Release: 1
Summary: gapcache test package {name}
License: MIT
BuildArch: {arch}
{requires}
%description
Test package {name}.
%install
mkdir -p %{{buildroot}}/usr/share/gapcache-test
echo "{name} {version}" > %{{buildroot}}/usr/share/gapcache-test/{name}
%files
/usr/share/gapcache-test/{name}
"""

# A requires B requires C; D independent; A in two versions; C noarch, the rest x86_64
PACKAGES = [
    ("pa", "1.0", "x86_64", ["pb"]),
    ("pa", "2.0", "x86_64", ["pb"]),
    ("pb", "1.0", "x86_64", ["pc"]),
    ("pc", "1.0", "noarch", []),
    ("pd", "1.0", "x86_64", []),
]


COMPS = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<comps>
  <group>
    <id>gapcache-test</id>
    <name>gapcache test</name>
    <default>true</default>
    <uservisible>true</uservisible>
    <packagelist>
      <packagereq type="mandatory">pa</packagereq>
      <packagereq type="default">pd</packagereq>
    </packagelist>
  </group>
  <group>
    <id>only-d</id>
    <name>only d</name>
    <packagelist><packagereq type="mandatory">pd</packagereq></packagelist>
  </group>
</comps>
"""


def _module(name: str, stream: str, rpms: list[str]) -> str:
    arts = "".join(f"      - {r}\n" for r in rpms)
    return (
        f'---\ndocument: modulemd\nversion: 2\ndata:\n  name: {name}\n  stream: "{stream}"\n  version: 1\n'
        f"  context: c0ffee42\n  arch: x86_64\n  summary: test module {name}\n  description: test\n"
        f"  license:\n    module: [MIT]\n  artifacts:\n    rpms:\n{arts}...\n"
        f'---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: {name}\n  stream: "{stream}"\n...\n'
    )


# module "ma" (stream 2) carries pa 2.0; module "md" carries pd, which a subset of pa does not need
MODULES = _module("ma", "2", ["pa-0:2.0-1.x86_64"]) + _module("md", "1", ["pd-0:1.0-1.x86_64"])


def gpg_key(home: Path) -> bytes:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    cmd = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key"]
    uid = "Test Repo <repo@test>"
    subprocess.run([*cmd, uid, "rsa2048", "sign", "never"], env=env, check=True, capture_output=True)
    return subprocess.run(["gpg", "--batch", "--export", "--armor"], env=env, check=True, capture_output=True).stdout


def build_repo(work: Path) -> tuple[Path, bytes]:
    """Returns (repo directory, armored public key). The repodata/repomd.xml is signed."""
    home = work / "gnupg"
    pub = gpg_key(home)
    env = {**os.environ, "GNUPGHOME": str(home)}
    top = work / "rpmbuild"
    repo = work / "repo"
    (repo / "Packages").mkdir(parents=True)
    for name, version, arch, requires in PACKAGES:
        spec = top / f"{name}-{version}.spec"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(SPEC.format(name=name, version=version, arch=arch,
                                    requires="\n".join(f"Requires: {r}" for r in requires)))  # fmt: skip
        subprocess.run(["rpmbuild", "--quiet", "--define", f"_topdir {top}", "-bb", str(spec)], check=True,
                       capture_output=True, env=env)  # fmt: skip
    rpms = sorted(top.glob("RPMS/*/*.rpm"))
    subprocess.run(["rpmsign", "--define", "_gpg_name repo@test", "--define", "__gpg /usr/bin/gpg", "--addsign",
                    *map(str, rpms)], check=True, capture_output=True, env=env)  # fmt: skip
    for r in rpms:
        (repo / "Packages" / r.name).write_bytes(r.read_bytes())
    comps = work / "comps.xml"
    comps.write_text(COMPS)
    subprocess.run(["createrepo_c", "--quiet", "--groupfile", str(comps), str(repo)], check=True, capture_output=True)
    modules = work / "modules.yaml"
    modules.write_text(MODULES)
    subprocess.run(["modifyrepo_c", "--mdtype=modules", str(modules), str(repo / "repodata")], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(["gpg", "--batch", "--detach-sign", "--armor", str(repo / "repodata/repomd.xml")], check=True,
                   capture_output=True, env=env)  # fmt: skip
    return repo, pub

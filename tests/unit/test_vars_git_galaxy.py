"""`gapcache vars` client config for git and Galaxy content: insteadOf per upstream git host, and
an ansible.cfg pointing ansible-galaxy at the mirror."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

from gapcache.lock import Item, Lock
from gapcache.vars.clients import client_files
from gapcache.vars.facts import Mirrors, facts_of


def _lock() -> Lock:
    return Lock.build(
        [
            Item(
                kind="git",
                name="github.com/NVIDIA/deepops",
                request={},
                resolved={"url": "https://github.com/NVIDIA/deepops.git"},
                artifacts=[],
            ),
            Item(
                kind="git",
                name="git.lan:8443/x/y",
                request={},
                resolved={"url": "https://git.lan:8443/x/y"},
                artifacts=[],
            ),
            Item(kind="galaxy", name="community.general", request={}, resolved={}, artifacts=[]),
        ]
    )


def test_git_insteadof_rewrites_every_upstream_host_to_the_mirror(tmp_path: Path) -> None:
    files = client_files(facts_of(_lock()), Mirrors(hosts=("mirror.lan",)))
    cfg = tmp_path / "gitconfig"
    cfg.write_text(files["git/gitconfig"])
    env = {"GIT_CONFIG_GLOBAL": str(cfg), "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}

    def rewritten(url: str) -> str:
        # git's own resolution of insteadOf: ls-remote --get-url prints the URL it would use
        res = subprocess.run(["git", "ls-remote", "--get-url", url], capture_output=True, text=True, env=env)
        return res.stdout.strip()

    assert (
        rewritten("https://github.com/NVIDIA/deepops.git") == "http://mirror.lan:8004/git/github.com/NVIDIA/deepops.git"
    )
    assert rewritten("https://git.lan:8443/x/y") == "http://mirror.lan:8004/git/git.lan_8443/x/y"


def test_ansible_cfg_names_the_mirror_galaxy_server() -> None:
    files = client_files(facts_of(_lock()), Mirrors(hosts=("mirror.lan",)))
    cfg = configparser.ConfigParser()
    cfg.read_string(files["ansible/ansible.cfg"])
    assert cfg["galaxy"]["server_list"] == "mirror"
    assert cfg["galaxy_server.mirror"]["url"] == "http://mirror.lan:8004/galaxy/"


def test_no_git_or_galaxy_config_without_that_content() -> None:
    files = client_files(facts_of(Lock.build([])), Mirrors(hosts=("mirror.lan",)))
    assert "git/gitconfig" not in files and "ansible/ansible.cfg" not in files

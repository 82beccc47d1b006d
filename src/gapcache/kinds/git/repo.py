"""The git command line, the few ways gapcache uses it (connected side only).

- :func:`ls_remote` and :func:`pin`: a branch, tag, ``HEAD`` or commit id → the object it names;
- :func:`fetch`: the history of refs or commits into a scratch bare repository;
- :func:`submodules_at`: every submodule of a commit (path, absolute URL, pinned commit);
- :func:`make_pack`: one pack (+ its ``.idx``) holding everything reachable from the pinned tips.

Packs are made reproducible: the same objects give the same bytes whatever pack the upstream sent
(``--no-reuse-delta --no-reuse-object``: deltas and compression recomputed, one thread, fixed
window, depth and zlib level). Only a different git version could pack the same objects
differently; the pinned commits in the lock remain the identity either way.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from ...errors import GapcacheError
from ...tools import run_tool

SHA1 = re.compile(r"^[0-9a-f]{40}$")
PACK_CONFIG = [
    "-c", "pack.threads=1", "-c", "pack.window=10", "-c", "pack.depth=50", "-c", "pack.compression=9",
    "-c", "core.compression=9", "-c", "pack.writeReverseIndex=false",
]  # fmt: skip


def git_env() -> dict[str, str]:
    """The user's git config stays (credential helpers, proxies); prompts and pagers do not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", LC_ALL="C", GIT_PAGER="cat")
    return env


def git(*args: str, what: str, gitdir: Path | None = None, input: bytes | None = None) -> str:
    cmd = ["git", *(["--git-dir", str(gitdir)] if gitdir is not None else []), *args]
    return run_tool(cmd, what=what, env=git_env(), input=input).stdout.decode(errors="replace")


@dataclass(frozen=True)
class Remote:
    """What ``git ls-remote --symref`` said: every ref, and the branch HEAD points to."""

    url: str
    refs: dict[str, str]
    head_target: str | None


@dataclass(frozen=True)
class Pin:
    refname: str | None  # None: a commit asked by id (served as a detached HEAD)
    obj: str  # what the ref points to (an annotated tag's own object, else the commit)
    commit: str


def ls_remote(url: str) -> Remote:
    out = git("ls-remote", "--symref", url, what=url)
    refs: dict[str, str] = {}
    head_target = None
    for line in out.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: "):
            if name == "HEAD":
                head_target = left[5:]
        elif SHA1.match(left):
            refs[name] = left
    return Remote(url, refs, head_target)


def pin(remote: Remote, ref: str) -> Pin:
    """The object ``ref`` names at the remote, or an error naming the ref and the repository."""
    refs = remote.refs

    def at(name: str) -> Pin:
        return Pin(name, refs[name], refs.get(name + "^{}", refs[name]))

    if ref == "HEAD":
        if remote.head_target in refs:
            assert remote.head_target is not None
            return at(remote.head_target)
        if "HEAD" in refs:
            return Pin(None, refs["HEAD"], refs["HEAD"])
        raise GapcacheError(f"{remote.url}: the repository has no HEAD (empty?)")
    names = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    for name in names:
        if name in refs:
            return at(name)
    if SHA1.match(ref):
        return Pin(None, ref, ref)  # checked once fetched
    raise GapcacheError(f"ref {ref!r} not found at {remote.url}")


def init_bare(scratch: Path, name: str) -> Path:
    gitdir = scratch / "git" / (hashlib.sha256(name.encode()).hexdigest()[:16] + ".git")
    if not gitdir.exists():
        gitdir.parent.mkdir(parents=True, exist_ok=True)
        git("init", "--bare", "--quiet", str(gitdir), what=name)
    return gitdir


def has_commit(gitdir: Path, sha: str) -> bool:
    res = run_tool(["git", "--git-dir", str(gitdir), "cat-file", "-e", f"{sha}^{{commit}}"], what=sha,
                   env=git_env(), check=False)  # fmt: skip
    return res.returncode == 0


def fetch(gitdir: Path, url: str, refnames: list[str], commits: list[str]) -> None:
    """The full history of ``refnames`` (kept under their own names) and of ``commits``.

    A commit asked by id is fetched directly (protocol v2 servers, GitHub); a server that refuses
    unadvertised ids gets one fetch of all its branches and tags instead."""
    specs = [f"+{r}:{r}" for r in refnames] + [c for c in commits if not has_commit(gitdir, c)]
    if not specs:
        return
    res = run_tool(["git", "--git-dir", str(gitdir), "fetch", "--no-tags", "--quiet", url, *specs],
                   what=url, env=git_env(), check=False)  # fmt: skip
    if res.returncode != 0:
        if refnames:  # the refs themselves could not be fetched: say why
            git("fetch", "--no-tags", "--quiet", url, *(f"+{r}:{r}" for r in refnames), what=url, gitdir=gitdir)
        git("fetch", "--no-tags", "--quiet", url, "+refs/heads/*:refs/upstream/heads/*",
            "+refs/tags/*:refs/upstream/tags/*", what=url, gitdir=gitdir)  # fmt: skip
    for c in commits:
        if not has_commit(gitdir, c):
            raise GapcacheError(f"commit {c} not found at {url}")


@dataclass(frozen=True)
class Submodule:
    path: str
    url: str
    commit: str


def submodule_url(parent_url: str, url: str) -> str:
    """A ``.gitmodules`` URL made absolute the way git does (``../x.git`` is relative to the
    superproject's own URL)."""
    if url.startswith(("./", "../")):
        return urljoin(parent_url.rstrip("/") + "/", url)
    return url


def submodules_at(gitdir: Path, commit: str, parent_url: str) -> list[Submodule]:
    """The submodules recorded in ``commit``: ``.gitmodules`` paths and URLs, gitlink commits."""
    res = run_tool(
        ["git", "--git-dir", str(gitdir), "config", "--blob", f"{commit}:.gitmodules", "--get-regexp",
         r"^submodule\..*\.(path|url)$"],
        what=parent_url, env=git_env(), check=False,
    )  # fmt: skip
    if res.returncode != 0:  # 1: no such keys; 128: no .gitmodules in this commit
        return []
    conf: dict[str, dict[str, str]] = {}
    for line in res.stdout.decode(errors="replace").splitlines():
        key, _, value = line.partition(" ")
        name, _, field = key.removeprefix("submodule.").rpartition(".")
        conf.setdefault(name, {})[field] = value
    out = []
    for _name, entry in sorted(conf.items()):
        if "path" not in entry or "url" not in entry:
            continue
        tree = git("ls-tree", "-z", commit, "--", entry["path"], what=parent_url, gitdir=gitdir)
        for rec in tree.split("\0"):
            meta, _, path = rec.partition("\t")
            fields = meta.split()
            if path == entry["path"] and len(fields) == 3 and fields[1] == "commit":
                out.append(Submodule(path, submodule_url(parent_url, entry["url"]), fields[2]))
    return out


def make_pack(gitdir: Path, tips: list[str], out_dir: Path) -> tuple[str, Path, Path]:
    """A pack of everything reachable from ``tips`` and its index: (pack name, .pack, .idx)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / "pack"
    stdin = "".join(t + "\n" for t in sorted(set(tips))).encode()
    name = git(*PACK_CONFIG, "pack-objects", "--revs", "--no-reuse-delta", "--no-reuse-object", "--quiet",
               str(base), what=str(gitdir), gitdir=gitdir, input=stdin).strip()  # fmt: skip
    if not SHA1.match(name) and not re.fullmatch(r"[0-9a-f]{64}", name):
        raise GapcacheError(f"git pack-objects printed {name!r}, not a pack name")
    return name, Path(f"{base}-{name}.pack"), Path(f"{base}-{name}.idx")

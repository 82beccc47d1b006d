"""Git repositories → pinned commits → one reproducible pack per repository (connected side).

Every manifest entry's ref is pinned with ``git ls-remote``; its history is fetched into a bare
repository in the resolver's scratch (never the store); submodules are read at the pinned commit
and pinned the same way, recursively, by the commit the superproject records. All pins of one
repository (several refs, submodule commits) become one item: one pack + idx, kept with
``ctx.keep`` (the build stores them: ``source: generated``), and the refs the mirror advertises.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...lock import GENERATED, Artifact, Item
from ...manifest.git import GIT_PREFIX, GitEntry, check_git_url, repo_name
from ..base import ResolveContext
from .repo import Pin, Remote, fetch, init_bare, ls_remote, make_pack, pin, submodules_at

PACK_TYPE = "application/x-git-packed-objects"
IDX_TYPE = "application/x-git-packed-objects-toc"


@dataclass
class RepoState:
    url: str
    name: str
    gitdir: Path
    want_submodules: bool = False
    requested: set[str] = field(default_factory=set)
    refs: dict[str, str] = field(default_factory=dict)  # refname -> object (a tag's own, or a commit)
    peeled: dict[str, str] = field(default_factory=dict)  # annotated tag refname -> its commit
    head: str | None = None  # "ref: refs/heads/x" or a commit id (detached)
    commits: set[str] = field(default_factory=set)  # every pinned commit (refs and submodule pins)
    submodules: list[dict[str, str]] = field(default_factory=list)
    walked: set[str] = field(default_factory=set)  # commits whose submodules were read

    def add(self, p: Pin, head: bool = True) -> None:
        if p.refname is not None:
            self.refs[p.refname] = p.obj
            if p.obj != p.commit:
                self.peeled[p.refname] = p.commit
        self.commits.add(p.commit)
        if self.head is None and head:
            self.head = f"ref: {p.refname}" if p.refname and p.refname.startswith("refs/heads/") else p.commit


def pack_paths(name: str, pack: str) -> tuple[str, str]:
    base = f"{GIT_PREFIX}{name}/objects/pack/pack-{pack}"
    return base + ".pack", base + ".idx"


class GitResolver:
    """Resolves git entries for a kind (``git``, or ``galaxy`` for roles kept in git)."""

    def __init__(self, kind: str, ctx: ResolveContext) -> None:
        self.kind = kind
        self.ctx = ctx
        self.repos: dict[str, RepoState] = {}
        self.remotes: dict[str, Remote] = {}

    def _repo(self, url: str) -> RepoState:
        name = repo_name(url)
        st = self.repos.get(name)
        if st is None:
            st = self.repos[name] = RepoState(url, name, init_bare(self.ctx.scratch, name))
        return st

    def _remote(self, url: str) -> Remote:
        if url not in self.remotes:
            self.remotes[url] = ls_remote(url)
        return self.remotes[url]

    def _entry(self, entry: GitEntry) -> tuple[RepoState, str]:
        st = self._repo(entry.url)
        p = pin(self._remote(entry.url), entry.ref)
        fetch(st.gitdir, entry.url, [p.refname] if p.refname else [], [p.commit])
        st.requested.add(entry.ref)
        st.want_submodules |= entry.submodules
        st.add(p)
        return st, p.commit

    def _submodules(self, st: RepoState, commit: str, todo: list[tuple[RepoState, str]]) -> None:
        if commit in st.walked:
            return
        st.walked.add(commit)
        for sub in submodules_at(st.gitdir, commit, st.url):
            check_git_url(sub.url)
            child = self._repo(sub.url)
            fetch(child.gitdir, sub.url, [], [sub.commit])
            child.want_submodules = True
            child.add(Pin(None, sub.commit, sub.commit), head=False)  # the manifest's own refs choose HEAD
            st.submodules.append({"commit": commit, "path": sub.path, "url": sub.url, "pins": sub.commit})
            todo.append((child, sub.commit))

    async def add(self, entries: list[GitEntry]) -> list[str]:
        """Pin ``entries`` (and their submodules); returns the repository names they landed in."""
        names = []
        for entry in entries:
            label = f"{entry.url}@{entry.ref}"
            got = await self.ctx.attempt(self.kind, label, asyncio.to_thread(self._entry, entry))
            if got is None:
                continue
            st, commit = got
            names.append(st.name)
            if not entry.submodules:
                continue
            todo = [(st, commit)]
            while todo:
                repo, c = todo.pop()
                await self.ctx.attempt(self.kind, f"{repo.url}@{c} submodules",
                                       asyncio.to_thread(self._submodules, repo, c, todo))  # fmt: skip
        return names

    def _pack(self, st: RepoState) -> tuple[dict[str, Any], list[Artifact]]:
        tips = sorted({*st.refs.values(), *st.commits})
        pack, pack_file, idx_file = make_pack(st.gitdir, tips, self.ctx.scratch / "packs" / st.gitdir.name)
        arts = []
        for path, f, mt in zip(pack_paths(st.name, pack), (pack_file, idx_file), (PACK_TYPE, IDX_TYPE), strict=True):
            data = f.read_bytes()
            arts.append(
                Artifact(path=path, source=GENERATED, digest=self.ctx.keep(data), size=len(data), media_type=mt)
            )
        return describe(st, pack), arts

    async def items(self, names: list[str] | None = None) -> list[Item]:
        """One item per repository (all of them, or ``names``): its pack, idx and refs."""
        out = []
        for name in sorted(self.repos if names is None else set(names)):
            st = self.repos[name]
            if not st.commits:
                continue
            got = await self.ctx.attempt(self.kind, name, asyncio.to_thread(self._pack, st))
            if got is None:
                continue
            resolved, arts = got
            resolved["head"] = resolved["head"] or min(st.commits)  # only submodule pins: one of them
            request = {"url": st.url, "refs": sorted(st.requested), "submodules": st.want_submodules}
            out.append(Item(kind=self.kind, name=name, request=request, resolved=resolved, artifacts=arts))
        return out


def describe(st: RepoState, pack: str) -> dict[str, Any]:
    """What the lock says about a repository: enough to serve it and to pack it again."""
    return {
        "url": st.url,
        "repo": st.name,
        "head": st.head,
        "refs": dict(sorted(st.refs.items())),
        "peeled": dict(sorted(st.peeled.items())),
        "commits": sorted(st.commits),
        "submodules": sorted(st.submodules, key=lambda s: (s["commit"], s["path"])),
        "pack": pack,
    }


def repack(resolved: dict[str, Any], scratch: Path) -> dict[str, bytes]:
    """``build --locked`` on a store without the packs: fetch the pinned refs and commits again and
    pack them (the same objects give the same bytes). Returns {logical path: bytes}."""
    url, name = str(resolved["url"]), str(resolved["repo"])
    gitdir = init_bare(scratch, name)
    refs: dict[str, str] = resolved["refs"]
    tags = [r for r in refs if r.startswith("refs/tags/")]
    fetch(gitdir, url, tags, sorted(set(resolved["commits"])))
    pack, pack_file, idx_file = make_pack(gitdir, sorted({*refs.values(), *resolved["commits"]}), scratch / "packs")
    pack_path, idx_path = pack_paths(name, pack)
    return {pack_path: pack_file.read_bytes(), idx_path: idx_file.read_bytes()}

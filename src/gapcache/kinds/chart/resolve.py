"""Resolve the ``charts:`` section through the shared downloader (metadata only, nothing stored).

For a classic repository: ``<repo>/index.yaml`` (fetched once per repo) picks the version (the exact
one, or the highest match of a Helm semver range); the archive is fetched (charts are small; it is
needed to see the dependencies and the images) and checked against the index's ``digest`` (a
mismatch fails naming the chart); a ``.prov`` file is carried when the repo has one (404/403: none).
The archive and the provenance are kept with ``ctx.keep()``, so a real build stores them and the
fetch step finds them present; a plan leaves the store untouched.

For ``oci://host/path/name``: the version is a tag (``+`` written ``_``, as Helm pushes it), a range
picks among the registry's tags; the chart becomes an **image** item (``resolve_image``), so the
registry on :5000 serves its manifest, config and layers byte-exact with Helm's media types.

Dependencies declared in Chart.yaml and not vendored in ``charts/`` are resolved from their own
repositories (https or oci), recursively, and carried as items of their own. With ``images:
discover`` the images a chart runs (:func:`~.discover.discover_images`) go into
``ctx.discovered_images`` (minus ``images_exclude``) for the image kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import GapcacheError, HTTPStatusError
from ...lock import Artifact, Item
from ...manifest.charts import ChartEntry, ChartsSection
from ...manifest.images import ImagesSection
from ...names import parse_ref
from ..base import ResolveContext
from ..image import registry_base, resolve_image
from .chartfile import ChartFile, Dependency, dependency_enabled, read_chart
from .discover import discover_images
from .index import RepoIndex, parse_index, resolve_url, served_path
from .semver import best_match

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
MAX_INDEX = 256 << 20
MAX_CHART = 64 << 20
_EXACT = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def excluded(ref: str, patterns: list[str]) -> bool:
    """Whether ``images_exclude`` names ``ref``: as written, or normalised (``busybox:1.36`` is
    ``docker.io/library/busybox:1.36``), exactly or as an fnmatch pattern."""
    forms = {ref}
    with contextlib.suppress(ValueError):
        forms.add(str(parse_ref(ref)))
    for pat in patterns:
        norm = {pat}
        with contextlib.suppress(ValueError):  # normalised, wildcards kept: busybox:* = docker.io/library/busybox:*
            marked = str(parse_ref(pat.replace("*", "x0star0x").replace("?", "x0q0x")))
            norm.add(marked.replace("x0star0x", "*").replace("x0q0x", "?"))
        if any(fnmatch.fnmatchcase(f, p) for f in forms for p in norm):
            return True
    return False


@dataclass
class Want:
    """One chart to resolve: from the manifest or a dependency of another chart."""

    source: str  # a repository URL, or "oci://host/path/name"
    name: str
    version: str  # exact or a range
    discover: bool
    values: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None  # "app 1.0.0" when this is a dependency

    @property
    def oci(self) -> bool:
        return self.source.startswith("oci://")

    def label(self) -> str:
        where = self.source if self.oci else f"{self.source} {self.name}"
        text = f"{where} {self.version or '(latest)'}"
        return f"{text} (dependency of {self.parent})" if self.parent else text


class ChartResolver:
    def __init__(self, section: ChartsSection, ctx: ResolveContext) -> None:
        self.section, self.ctx = section, ctx
        self.images_section = ImagesSection(registries=section.registries)
        self.indexes: dict[str, asyncio.Future[RepoIndex]] = {}
        self.started: set[tuple[str, str, str]] = set()  # (source, name, version) resolved or under way
        self.items: dict[tuple[str, str], tuple[str, Item]] = {}  # (name, version) -> (source, item)
        self.tasks: list[asyncio.Future[None]] = []
        self.render_lock = asyncio.Lock()

    async def run(self) -> list[Item]:
        for e in self.section.charts:
            self.spawn(self.want(e))
        while self.tasks:  # dependencies add tasks while these run
            tasks, self.tasks = self.tasks, []
            await asyncio.gather(*tasks)
        return [item for _, item in self.items.values()]

    def want(self, e: ChartEntry) -> Want:
        discover = e.images == "discover" or (e.images is None and self.section.images_discover)
        if e.ref:
            return Want(e.ref, e.ref.rsplit("/", 1)[-1], e.version, discover, dict(e.values))
        assert e.repo and e.name
        return Want(e.repo, e.name, e.version, discover, dict(e.values))

    def spawn(self, w: Want) -> None:
        work: Awaitable[None] = self.oci(w) if w.oci else self.classic(w)
        self.tasks.append(asyncio.ensure_future(self.ctx.attempt("chart", w.label(), work)))

    async def index(self, repo: str) -> RepoIndex:
        fut = self.indexes.get(repo)
        if fut is None:
            fut = self.indexes[repo] = asyncio.ensure_future(self._index(repo))
        return await asyncio.shield(fut)

    async def _index(self, repo: str) -> RepoIndex:
        data = await self.ctx.downloader.get_bytes(resolve_url(repo, "index.yaml"), max_size=MAX_INDEX)
        return await asyncio.to_thread(parse_index, data, repo)

    # --- classic repositories -----------------------------------------------------------------

    async def classic(self, w: Want) -> None:
        cv = (await self.index(w.source)).get(w.name, w.version)
        if not self.first(w, cv.version):
            return
        dl = self.ctx.downloader
        data = await dl.get_bytes(cv.url, max_size=MAX_CHART)
        digest = sha256(data)
        if cv.digest and cv.digest != digest:
            raise GapcacheError(
                f"chart {cv.name} {cv.version}: digest mismatch: {w.source}/index.yaml says {cv.digest}, "
                f"{cv.url} is {digest}"
            )
        self.ctx.keep(data)
        path = served_path(cv.name, cv.version)
        arts = [Artifact(path=path, source=cv.url, digest=digest, size=len(data), media_type="application/gzip")]
        prov = await self.optional(cv.url + ".prov")
        if prov is not None:
            self.ctx.keep(prov)
            arts.append(
                Artifact(path=path + ".prov", source=cv.url + ".prov", digest=sha256(prov), size=len(prov),
                         media_type="application/pgp-signature")
            )  # fmt: skip
        chart = await asyncio.to_thread(read_chart, data, cv.url)
        entry = dict(cv.entry)
        entry["digest"] = digest.removeprefix("sha256:")
        resolved: dict[str, Any] = {
            "name": cv.name, "version": cv.version, "repo": w.source, "digest": digest, "entry": entry,
            "prov": prov is not None,
        }  # fmt: skip
        await self.after(w, chart, data, resolved)
        request: dict[str, Any] = {"repo": w.source, "name": w.name, "version": w.version}
        if w.parent:
            request["dependency_of"] = w.parent
        item = Item(kind="chart", name=f"{cv.name}-{cv.version}", request=request, resolved=resolved, artifacts=arts)
        self.add(w, cv.name, cv.version, item)

    async def optional(self, url: str) -> bytes | None:
        """A file the repository may not have (``.prov``): a 404 (or S3's 403) means none."""
        try:
            return await self.ctx.downloader.get_bytes(url, max_size=1 << 20)
        except HTTPStatusError as exc:
            if exc.status in (403, 404, 410):
                return None
            raise

    # --- OCI ----------------------------------------------------------------------------------

    async def oci(self, w: Want) -> None:
        rest = w.source.removeprefix("oci://")
        base = parse_ref(rest + ":x")
        if w.version and _EXACT.match(w.version):
            version = w.version
        else:
            version = await self.oci_version(w, rest)
        if not self.first(w, version):
            return
        ref = parse_ref(f"{rest}:{version.replace('+', '_')}")
        item = await resolve_image(ref, [], self.images_section, self.ctx)
        if not any(a.media_type == HELM_CONFIG for a in item.artifacts):
            raise GapcacheError(f"{w.source}:{ref.tag} is not a Helm chart (no {HELM_CONFIG} config)")
        layer = next((a for a in item.artifacts if a.media_type == HELM_CHART), None)
        if layer is None or layer.digest is None:
            raise GapcacheError(f"{w.source}:{ref.tag}: the manifest has no chart layer ({HELM_CHART})")
        data = await self.ctx.downloader.get_bytes(layer.source, max_size=MAX_CHART)
        if sha256(data) != layer.digest:
            raise GapcacheError(f"chart {w.source} {version}: layer {layer.digest} hashes to {sha256(data)}")
        self.ctx.keep(data)
        chart = await asyncio.to_thread(read_chart, data, w.source)
        extra: dict[str, Any] = {"chart": chart.name, "chart_version": chart.version}
        await self.after(w, chart, data, extra)
        request: dict[str, Any] = {"ref": w.source, "version": w.version, "chart": True}
        if w.parent:
            request["dependency_of"] = w.parent
        item = item.model_copy(update={"request": request, "resolved": {**item.resolved, **extra}})
        self.add(w, f"{base.name} (oci)", version, item)

    async def oci_version(self, w: Want, rest: str) -> str:
        ref = parse_ref(rest + ":x")
        url = f"{registry_base(ref, self.images_section)}/v2/{ref.repo}/tags/list"
        body = await self.ctx.downloader.get_bytes(url, max_size=16 << 20)
        tags = json.loads(body).get("tags") or []
        versions = [str(t).replace("_", "+") for t in tags]
        chosen = best_match(w.version, versions)
        if chosen is None:
            shown = ", ".join(sorted(versions)[:10])
            raise GapcacheError(f"{w.source}: no tag matching {w.version or '(latest)'!r} (tags: {shown or 'none'})")
        return chosen

    # --- shared -------------------------------------------------------------------------------

    def first(self, w: Want, version: str) -> bool:
        """True the first time a chart version from a source is seen (a chart asked for twice, or
        two charts sharing a dependency, is resolved once)."""
        key = (w.source, w.name, version)
        if key in self.started:
            return False
        self.started.add(key)
        return True

    def add(self, w: Want, name: str, version: str, item: Item) -> None:
        """One flat repository on :8002: the same name and version from two sources must be the
        same archive."""
        have = self.items.get((name, version))
        if have is None:
            self.items[(name, version)] = (w.source, item)
            return
        src, other = have
        if other.resolved.get("digest") != item.resolved.get("digest"):
            raise GapcacheError(
                f"chart {name} {version} from {w.source} differs from the one from {src}: "
                "the mirror serves one repository, so one name and version can be only one archive"
            )

    async def after(self, w: Want, chart: ChartFile, data: bytes, resolved: dict[str, Any]) -> None:
        """Discover the chart's images (if asked) and start its missing dependencies."""
        label = f"{chart.name} {chart.version}"
        values = _merge(chart.values, w.values)
        for dep in chart.missing_dependencies:
            self.dependency(w, label, dep, values)
        resolved["dependencies"] = [
            {"name": d.name, "version": d.version, "repository": d.repository, "vendored": d.vendored}
            for d in chart.dependencies
        ]
        if not w.discover:
            return
        async with self.render_lock:  # one render at a time through the Helm shared library
            images, method = await asyncio.to_thread(
                discover_images, data, w.values or None, values_text=chart.values_text, app_version=chart.app_version
            )
        kept = [i for i in images if not excluded(i, self.section.images_exclude)]
        resolved["images"] = kept
        resolved["images_excluded"] = sorted(set(images) - set(kept))
        resolved["images_method"] = method
        self.ctx.discovered_images += [(i, f"chart {label}") for i in kept]

    def dependency(self, w: Want, parent: str, dep: Dependency, values: Mapping[str, Any]) -> None:
        sub = values.get(dep.alias or dep.name)
        sub_values = dict(sub) if isinstance(sub, Mapping) else {}
        discover = w.discover and dependency_enabled(dep, values)
        repo = dep.repository.rstrip("/")
        if repo.startswith(("https://", "http://")):
            self.spawn(Want(repo, dep.name, dep.version, discover, sub_values, parent))
        elif repo.startswith("oci://"):
            self.spawn(Want(f"{repo}/{dep.name}", dep.name, dep.version, discover, sub_values, parent))
        else:
            why = (
                f"repository {dep.repository!r} cannot be followed (a local repo name or path): vendor it in "
                "the chart's charts/ or list the chart in the manifest with its repo"
                if dep.repository
                else "no repository and not vendored in charts/"
            )
            self.ctx.fail("chart", f"{dep.name} {dep.version or '(latest)'} (dependency of {parent})", why)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        b = out.get(k)
        out[k] = _merge(b, v) if isinstance(b, Mapping) and isinstance(v, Mapping) else v
    return out

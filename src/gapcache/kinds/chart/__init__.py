"""Helm charts: classic chart repositories and OCI charts, their dependencies, the images they run.

Manifest section (:mod:`gapcache.manifest.charts`)::

    charts:
      - {repo: https://helm.ngc.nvidia.com/nvidia, name: gpu-operator, version: "~24.9", images: discover}
      - {ref: oci://registry-1.docker.io/bitnamicharts/redis, version: 19.6.4}
    images_exclude: [docker.io/library/busybox:*]

Classic charts become ``chart`` items (artifacts ``charts/<name>-<version>.tgz`` and ``.prov``; the
upstream index entry kept in ``resolved["entry"]``) served on :8002 (:mod:`.serve`): ``index.yaml``
rendered per request with the address the client used, the archives, ChartMuseum's read API. OCI
charts become ``image`` items, served by the registry on :5000 under their full name. The protocol
logic lives in pure modules (:mod:`.semver`, :mod:`.index`, :mod:`.chartfile`, :mod:`.discover`);
:mod:`.resolve` is the glue that fetches through the shared downloader.
"""

from __future__ import annotations

from typing import Any

from ...blobs import BlobIndex, Handler
from ...lock import Item
from ...manifest.charts import ChartsSection
from ...store import Store
from ..base import ResolveContext


class ChartKind:
    name = "chart"
    listener = "charts"

    async def resolve(self, section: ChartsSection | None, ctx: ResolveContext) -> list[Item]:
        if section is None or not section.charts:
            return []
        from .resolve import ChartResolver

        return await ChartResolver(section, ctx).run()

    def publish(self, items: list[Item], store: Store) -> list[Item]:
        return items  # the index is rendered from the entries kept in the lock, per request

    def handler(self, items: list[Item], blobs: BlobIndex, public_url: str | None) -> Handler:
        from .serve import ChartRepo

        return ChartRepo(items, blobs, public_url).handle


def discovered_images(items: list[Item]) -> list[dict[str, Any]]:
    """For ``build --plan --json``: each image added by ``images: discover``, with its charts."""
    found = [i for i in items if "discovered_from" in i.request]
    return [{"image": i.request["ref"], "from": i.request["discovered_from"]} for i in found]


def plan_notes(items: list[Item]) -> list[str]:
    """For ``build --plan``: each discovered image with the chart(s) it came from, each excluded one."""
    lines = [f"discovered image {d['image']}  <- {', '.join(d['from'])}" for d in discovered_images(items)]
    for i in items:
        for ref in i.resolved.get("images_excluded", []):
            lines.append(f"excluded image {ref}  (images_exclude; {i.kind} {i.name})")
    return lines

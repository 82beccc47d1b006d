"""Which container images a chart will run (``images: discover``).

Two ways, tried in order by :func:`discover_images`:

1. ``render``: the chart is rendered offline with the Helm SDK (``helm-python-sdk``, Helm v4's
   engine; no cluster, ``lookup`` returns nothing) with its default values (plus any given), and
   the ``image`` of every container, init container and ephemeral container in the rendered
   objects is collected: any object carrying a pod spec (Pod, Deployment, DaemonSet, StatefulSet,
   ReplicaSet, Job, CronJob, and custom resources embedding a pod template).
2. ``values``: when rendering fails (a ``required`` value, ``fail``, a template that needs cluster
   state), values.yaml is walked for the common patterns: ``image: "repo:tag"`` strings;
   ``image: {registry, repository, tag, digest}`` maps (an empty tag means the chart's
   appVersion, as most templates default it); ``repository`` + ``tag`` siblings anywhere;
   NVIDIA's ``{repository, image, version}``; and ``global.imageRegistry`` overriding the
   ``registry`` of those maps. Values are read as written (``tag: 1.10`` stays ``1.10``).

References are returned as written in the chart (``nginx:1.25``); the image kind normalises them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from ...errors import GapcacheError
from ...tools import build_extra

__all__ = ["RenderFailed", "discover_images", "images_in_objects", "render_images", "values_images"]

log = logging.getLogger(__name__)

_POD_LISTS = ("containers", "initContainers", "ephemeralContainers")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-/:@]*")


class RenderFailed(GapcacheError):
    """The chart cannot be rendered offline with these values (Helm's message)."""


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def images_in_objects(objects: list[Any]) -> list[str]:
    """``image`` of every container in every pod spec found in the Kubernetes objects."""
    found: set[str] = set()
    for obj in objects:
        if not isinstance(obj, Mapping) or "kind" not in obj:
            continue
        for node in _walk(obj):
            for key in _POD_LISTS:
                containers = node.get(key)
                if not isinstance(containers, list):
                    continue
                for c in containers:
                    if isinstance(c, Mapping) and isinstance(c.get("image"), str) and c["image"].strip():
                        found.add(c["image"].strip())
    return sorted(found)


def render_images(
    data: bytes,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "gapcache",
    namespace: str = "default",
) -> list[str]:
    """Render the chart archive ``data`` offline and return the images of its pod specs.

    Raises :class:`RenderFailed` when Helm cannot load or render it, or a rendered manifest is
    not YAML.
    """
    helm = build_extra("helm_python", "helm-python-sdk", "rendering charts (images: discover)")  # 85 MB: only now

    try:
        with helm.Chart.load_archive(data) as chart:
            rendered = chart.render(
                dict(values) if values else None, name=release, namespace=namespace, is_install=True
            )
    except helm.HelmError as e:
        raise RenderFailed(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e
    objects: list[Any] = []
    for path, text in sorted(rendered.items()):
        base = path.rsplit("/", 1)[-1]
        if base == "NOTES.txt" or base.startswith("_") or not text.strip():
            continue
        try:
            objects.extend(d for d in yaml.safe_load_all(text) if d is not None)
        except yaml.YAMLError as e:
            raise RenderFailed(f"{path}: rendered manifest is not YAML: {e}") from e
    return images_in_objects(objects)


# --- the values.yaml fallback -------------------------------------------------------------------


def _text(v: Any) -> str:
    if v is None or isinstance(v, (Mapping, list)):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).strip()


def _plausible(ref: str) -> bool:
    return bool(ref) and "{{" not in ref and "://" not in ref and _REF.fullmatch(ref) is not None


def _compose(registry: str, repository: str, tag: str, digest: str) -> str:
    ref = f"{registry.rstrip('/')}/{repository.lstrip('/')}" if registry else repository
    if tag:
        ref += f":{tag}"
    if digest:
        ref += f"@{digest}" if digest.startswith("sha256:") else f"@sha256:{digest}"
    return ref


def _from_map(key: str, node: Mapping[str, Any], global_registry: str, app_version: str) -> str | None:
    repo = _text(node.get("repository"))
    imageish = key.lower().endswith("image")
    if not repo and imageish:
        repo = _text(node.get("name"))
    if not repo:
        return None
    # NVIDIA operators: {repository: nvcr.io/nvidia, image: driver, version: 550.54.15}
    image = _text(node.get("image")) if not isinstance(node.get("image"), Mapping) else ""
    if image and "version" in node:
        version = _text(node.get("version"))
        ref = f"{repo.rstrip('/')}/{image}"
        if version.startswith("sha256:"):
            return f"{ref}@{version}"
        return f"{ref}:{version}" if version else ref
    has_registry = "registry" in node
    if not (imageish or "tag" in node or "digest" in node):
        return None  # a bare ``repository`` (a Helm or git repository, say) is not an image
    registry = global_registry if (global_registry and has_registry) else _text(node.get("registry"))
    tag, digest = _text(node.get("tag")), _text(node.get("digest"))
    if not tag and not digest and imageish:
        tag = app_version
    return _compose(registry, repo, tag, digest)


def values_images(values: Mapping[str, Any], *, app_version: str | None = None) -> list[str]:
    """Image references found in ``values`` by the common chart patterns (see the module doc)."""
    glob = values.get("global")
    global_registry = _text(glob.get("imageRegistry")) if isinstance(glob, Mapping) else ""
    found: set[str] = set()

    def visit(key: str, node: Any) -> None:
        if isinstance(node, Mapping):
            ref = _from_map(key, node, global_registry, app_version or "")
            if ref and _plausible(ref):
                found.add(ref)
            for k, v in node.items():
                k = str(k)
                if k == "image" and isinstance(v, str):
                    if not (isinstance(node.get("repository"), str) and "version" in node) and _plausible(v.strip()):
                        found.add(v.strip())
                else:
                    visit(k, v)
        elif isinstance(node, list):
            for v in node:
                visit(key, v)

    visit("", values)
    return sorted(found)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over


def discover_images(
    data: bytes,
    values: Mapping[str, Any] | None = None,
    *,
    values_text: str | None = None,
    app_version: str | None = None,
) -> tuple[list[str], str]:
    """``(images, method)`` for a chart archive: ``method`` is ``"render"`` or ``"values"``.

    ``values`` are user values on top of the chart's defaults. For the fallback the chart's
    values.yaml text is read from the archive unless ``values_text`` is given, and the tag
    default is the chart's appVersion unless ``app_version`` is given.
    """
    try:
        return render_images(data, values), "render"
    except RenderFailed as e:
        log.info("chart does not render offline (%s); reading images from its values", e)
    if values_text is None or app_version is None:
        from .chartfile import read_chart

        chart = read_chart(data)
        values_text = chart.values_text if values_text is None else values_text
        app_version = chart.app_version if app_version is None else app_version
    try:
        defaults = yaml.load(values_text or "{}", Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        defaults = {}
    merged = _merge(defaults if isinstance(defaults, Mapping) else {}, dict(values or {}))
    return values_images(merged, app_version=app_version), "values"

"""Chart fixtures built with the Helm SDK (``helm-python-sdk``): classic repos served on 127.0.0.1
and OCI charts pushed to Debian's docker-registry.

- ``app`` 1.0.0 and 1.1.0 depend on ``lib`` (``~1.0``), which lives in ANOTHER repo and is not
  vendored in ``charts/``;
- ``lib`` 1.0.0 and 1.0.1 (in the ``libs`` repo);
- ``web`` 1.0.0 and 1.1.0 run images from values (``image.repository``/``tag``) and one literal
  image in a template (a sidecar);
- ``needs`` 0.1.0 renders only with a cluster value (``required``): discovery falls back to its
  values.yaml.

``helm.package`` refuses a chart whose dependencies are not in ``charts/`` (as ``helm package``
does), so ``app`` is archived with ``Chart.save`` (the same archive writer, without that check).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from helpers import serve_dir

WEB_SIDECAR = "docker.io/library/busybox:1.36"
IMAGES_TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      initContainers:
      - name: init
        image: "{{ .Values.init.image.registry }}/{{ .Values.init.image.repository }}:{{ .Values.init.image.tag }}"
      containers:
      - name: web
        image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      - name: sidecar
        image: SIDECAR
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ .Release.Name }}-job
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: job
            image: {{ .Values.job.image }}
""".replace("SIDECAR", WEB_SIDECAR)


WEB_REPO = "127.0.0.1:5000/fixtures/web"


def web_images(version: str, web_repo: str = WEB_REPO) -> list[str]:
    """What discovery should find in ``web`` ``version`` with its default values."""
    return sorted(
        [
            f"{web_repo}:{version}",
            "quay.io/fixtures/init:0.9",
            WEB_SIDECAR,
            "registry.k8s.io/fixtures/job:2.0",
        ]
    )


def write_chart(
    root: Path,
    name: str,
    version: str,
    *,
    values: dict[str, Any] | None = None,
    templates: dict[str, str] | None = None,
    dependencies: list[dict[str, str]] | None = None,
    app_version: str | None = None,
) -> Path:
    """A chart source directory ``root/<name>-<version>/<name>``."""
    src = root / f"{name}-{version}" / name
    (src / "templates").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"apiVersion": "v2", "name": name, "version": version, "type": "application"}
    meta["appVersion"] = app_version or version
    meta["description"] = f"gapcache test chart {name}"
    if dependencies:
        meta["dependencies"] = dependencies
    (src / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    (src / "values.yaml").write_text(yaml.safe_dump(values or {}, sort_keys=False))
    for fname, text in (templates or {}).items():
        (src / "templates" / fname).write_text(text)
    return src


def package(src: Path, dest: Path) -> Path:
    """``helm package``; charts with dependencies missing from ``charts/`` go through
    ``Chart.save`` (``helm package`` would refuse them)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return Path(helm.package(src, destination=dest))
    except helm.HelmChartInvalidError:
        with helm.Chart.load(src) as chart:
            return Path(chart.save(dest))


def web_chart(root: Path, version: str, dest: Path, web_repo: str = WEB_REPO) -> Path:
    values = {
        "image": {"repository": web_repo, "tag": ""},
        "init": {"image": {"registry": "quay.io", "repository": "fixtures/init", "tag": "0.9"}},
        "job": {"image": "registry.k8s.io/fixtures/job:2.0"},
    }
    src = write_chart(root, "web", version, values=values, templates={"web.yaml": IMAGES_TEMPLATE})
    return package(src, dest)


def needs_chart(root: Path, dest: Path) -> Path:
    """A chart that renders only when the cluster-specific ``clusterName`` is set."""
    values = {
        "clusterName": "",
        "global": {"imageRegistry": ""},
        "controller": {"image": {"registry": "ghcr.io", "repository": "fixtures/ctl", "tag": "3.1"}},
        "agent": {"repository": "nvcr.io/fixtures", "image": "agent", "version": "1.10"},
        "exporter": {"image": "docker.io/fixtures/exporter:0.5"},
    }
    tpl = """\
apiVersion: v1
kind: Pod
metadata:
  name: {{ required "clusterName is required" .Values.clusterName }}
spec:
  containers:
  - name: ctl
    image: {{ .Values.controller.image.registry }}/{{ .Values.controller.image.repository }}
"""
    src = write_chart(root, "needs", "0.1.0", values=values, templates={"pod.yaml": tpl})
    # values.yaml written by hand so ``version: 1.10`` is a YAML float, as in real charts
    (src / "values.yaml").write_text((src / "values.yaml").read_text().replace("version: '1.10'", "version: 1.10"))
    return package(src, dest)


@dataclass
class Repo:
    root: Path
    url: str
    charts: dict[str, Path] = field(default_factory=dict)  # "<name>-<version>" -> tgz

    def index(self) -> dict[str, Any]:
        """(Re)write index.yaml with the SDK (relative URLs, as most repos publish)."""
        return helm.repo_index_generate(self.root)


@dataclass
class ChartRepos:
    main: Repo  # app (2 versions), web (2 versions), needs
    libs: Repo  # lib (2 versions)


@contextlib.contextmanager
def chart_repos(tmp: Path, web_repo: str = WEB_REPO) -> Iterator[ChartRepos]:
    """Two served chart repositories; ``app`` in ``main`` depends on ``lib`` in ``libs``; ``web``
    runs ``<web_repo>:<version>`` (a registry the test seeds with that image)."""
    src = tmp / "src"
    with serve_dir(tmp / "main") as main_url, serve_dir(tmp / "libs") as libs_url:
        main, libs = Repo(tmp / "main", main_url), Repo(tmp / "libs", libs_url)
        for v in ("1.0.0", "1.0.1"):
            libs.charts[f"lib-{v}"] = package(write_chart(src, "lib", v, values={"lib": {"answer": 42}}), libs.root)
        dep = [{"name": "lib", "version": "~1.0", "repository": libs_url, "condition": "lib.enabled"}]
        for v in ("1.0.0", "1.1.0"):
            app = write_chart(src, "app", v, values={"lib": {"enabled": True}}, dependencies=dep)
            main.charts[f"app-{v}"] = package(app, main.root)
            main.charts[f"web-{v}"] = web_chart(src, v, main.root, web_repo)
        main.charts["needs-0.1.0"] = needs_chart(src, main.root)
        main.index()
        libs.index()
        yield ChartRepos(main, libs)


def push_oci(tgz: Path, registry_host: str, path: str = "charts") -> str:
    """Push a chart archive to an OCI registry over plain HTTP (``helm push``); returns the
    chart's reference ``oci://<host>/<path>/<name>`` (its tag is the chart version)."""
    helm.push(tgz, f"oci://{registry_host}/{path}", plain_http=True)
    with helm.Chart.load(tgz) as chart:
        name = chart.name
    return f"oci://{registry_host}/{path}/{name}"

"""INSIDE `unshare -n` (run by airgap_charts.sh): the Helm SDK against the mirror.

Usage: airgap_charts_helm.py OUT CHARTS_URL OCI_REF LIBS_URL
Writes OUT/pulled/<name>-<version>.tgz for each pull, OUT/oci/web-1.1.0.tgz, and
OUT/dep/app/charts/lib-*.tgz (app's dependency resolved by `helm dependency update` from the mirror).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import helm_python as helm


def main(out: Path, charts: str, oci_ref: str, libs_url: str) -> None:
    index = helm.repo_index(charts)  # `helm repo add gapcache CHARTS_URL` reads exactly this
    (out / "sdk-index.json").write_text(json.dumps(sorted(index["entries"])))
    pulled = out / "pulled"
    pulled.mkdir()
    for name, version in [("app", "1.0.0"), ("web", "1.1.0"), ("needs", "0.1.0"), ("lib", "~1.0")]:
        helm.pull(name, repo_url=charts, version=version, destination=pulled)
    (out / "oci").mkdir()
    helm.pull(oci_ref, version="1.1.0", plain_http=True, destination=out / "oci")
    # app depends on lib from another repository (unreachable here): pointed at the mirror, Helm's own
    # dependency resolution finds it there
    with helm.Chart.load(pulled / "app-1.0.0.tgz") as chart:
        chart.save_dir(out / "dep")
    chart_yaml = out / "dep/app/Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace(libs_url, charts))
    helm.dependency_update(out / "dep/app")
    try:
        helm.pull("app", repo_url=charts, version="0.9.0", destination=pulled)
    except helm.HelmError as exc:
        (out / "missing-version.txt").write_text(str(exc))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])

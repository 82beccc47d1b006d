#!/usr/bin/env bash
# INSIDE `unshare -n`: load + serve an archive of Helm charts, then pull with the Helm SDK (classic repo
# and OCI), resolve a dependency through the mirror, pull a discovered image with skopeo.
# Usage: airgap_charts.sh PYTHON ARCHIVE ROOT OUT REGISTRY_HOST LIBS_URL
set -euo pipefail
PY=$1 ARCHIVE=$2 ROOT=$3 OUT=$4 REG=$5 LIBS=$6
REGC=${REG/:/_}
C=http://127.0.0.1:8002
M=127.0.0.1:5000
export HELM_CACHE_HOME=$OUT/helm/cache HELM_CONFIG_HOME=$OUT/helm/config HELM_DATA_HOME=$OUT/helm/data
source "$(dirname "$0")/airgap_lib.sh"
start_mirrors "$PY" "$ARCHIVE" "$ROOT" "$OUT" $C/health
curl -s $C/index.yaml > "$OUT/index.yaml"
curl -s $C/api/charts > "$OUT/api.json"
# an unrequested version of a mirrored chart: a 404 (and a miss in ROOT/misses.jsonl)
curl -s -o /dev/null -w '%{http_code}' $C/charts/web-1.0.0.tgz > "$OUT/unrequested.status"
"$PY" "$(dirname "$0")/airgap_charts_helm.py" "$OUT" $C "oci://$M/$REGC/charts/web" "$LIBS" > "$OUT/helm.log" 2>&1
skopeo copy -q --src-tls-verify=false "docker://$M/$REGC/fixtures/web:1.1.0" "oci:$OUT/web-image:1.1.0"
skopeo inspect --raw --tls-verify=false "docker://$M/$REGC/fixtures/web:1.1.0" > "$OUT/web-image.json"
# the OCI chart's manifest, as the registry on :5000 serves it
curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' -D "$OUT/oci-chart.headers" \
  "http://$M/v2/$REGC/charts/web/manifests/1.1.0" > "$OUT/oci-chart.json"

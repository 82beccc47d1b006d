#!/usr/bin/env bash
# INSIDE `unshare -n`: load + serve a Python archive, then install with pip and uv from the mirror.
# Usage: airgap_python.sh PYTHON UV ARCHIVE ROOT OUT HASHED_REQUIREMENTS
set -euo pipefail
PY=$1 UV=$2 ARCHIVE=$3 ROOT=$4 OUT=$5 HASHED=$6
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT || true
IDX=http://127.0.0.1:8003/simple/
source "$(dirname "$0")/airgap_lib.sh"
start_mirrors "$PY" "$ARCHIVE" "$ROOT" "$OUT" $IDX
curl -s -H 'Accept: application/vnd.pypi.simple.v1+json' ${IDX}requests/ > "$OUT/requests.json"
curl -s ${IDX}markupsafe/ > "$OUT/markupsafe.html"
curl -s -o /dev/null -w '%{http_code} %{redirect_url}' ${IDX}MarkupSafe/ > "$OUT/redirect.txt"
BASE=$(command -v python3)
"$BASE" -m venv "$OUT/v1"
"$OUT/v1/bin/python" -m pip install -q --index-url $IDX requests > "$OUT/pip.log" 2>&1
"$OUT/v1/bin/python" -c 'import requests, charset_normalizer; print(requests.__version__)' > "$OUT/pip-import.txt"
"$BASE" -m venv "$OUT/v2"
"$OUT/v2/bin/python" -m pip install -q --index-url $IDX --require-hashes -r "$HASHED" > "$OUT/pip-hashes.log" 2>&1
"$BASE" -m venv --without-pip "$OUT/v3"
UV_CACHE_DIR="$OUT/uv-cache" "$UV" pip install --no-config --python "$OUT/v3/bin/python" --index-url $IDX requests \
  > "$OUT/uv.log" 2>&1
"$OUT/v3/bin/python" -c 'import requests; print(requests.__version__)' > "$OUT/uv-import.txt"
"$BASE" -m venv "$OUT/v4"
set +e
"$OUT/v4/bin/python" -m pip install --index-url $IDX surely-not-in-the-mirror-pkg > "$OUT/missing.log" 2>&1
echo $? > "$OUT/missing.rc"

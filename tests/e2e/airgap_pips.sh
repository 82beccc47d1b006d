#!/usr/bin/env bash
# INSIDE `unshare -n`: load + serve a Python archive, then each given venv's pip (and uv) installs
# PROJECT (a package with a dependency) from the mirror.
# Usage: airgap_pips.sh PYTHON UV ARCHIVE ROOT OUT PROJECT VENV...
# Writes OUT/<venv name>.rc, .log and .import (every installed distribution, name==version) for each.
set -euo pipefail
PY=$1 UV=$2 ARCHIVE=$3 ROOT=$4 OUT=$5 PROJECT=$6
shift 6
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT || true
IDX=http://127.0.0.1:8003/simple/
source "$(dirname "$0")/airgap_lib.sh"
start_mirrors "$PY" "$ARCHIVE" "$ROOT" "$OUT" $IDX
set +e
for V in "$@"; do
  N=$(basename "$V")
  if [ "$N" = uv ]; then
    UV_CACHE_DIR="$OUT/uv-cache" "$UV" pip install --no-config --python "$V/bin/python" --index-url $IDX \
      "$PROJECT" > "$OUT/$N.log" 2>&1
  else
    "$V/bin/python" -m pip install --no-cache-dir --index-url $IDX "$PROJECT" > "$OUT/$N.log" 2>&1
  fi
  echo $? > "$OUT/$N.rc"
  "$V/bin/python" -c 'import importlib.metadata as m
print("\n".join(sorted(d.metadata["Name"].lower() + "==" + d.version for d in m.distributions())))' \
    > "$OUT/$N.import" 2>&1
done
exit 0

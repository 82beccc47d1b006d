#!/usr/bin/env bash
# Runs INSIDE `unshare -n` (loopback only): load + serve the archive, then fetch everything with
# the real clients. Usage: airgap.sh PYTHON ARCHIVE ROOT OUT PATHS_FILE
set -euo pipefail
PY=$1 ARCHIVE=$2 ROOT=$3 OUT=$4 PATHS=$5
source "$(dirname "$0")/airgap_lib.sh"
start_mirrors "$PY" "$ARCHIVE" "$ROOT" "$OUT" http://127.0.0.1:8004/
ip -4 addr show scope global > "$OUT/global-addrs.txt"
mkdir -p "$OUT/curl" "$OUT/wget"
n=0
while IFS= read -r path; do
  n=$((n + 1))
  curl -sf --path-as-is -o "$OUT/curl/$n" "http://127.0.0.1:8004/$path"
  echo "$n $path" >> "$OUT/curl/index.txt"
done < "$PATHS"
# a recursive mirror of the listings, as a user would do it
wget -q -r -l inf -np -nH -e robots=off -P "$OUT/wget" http://127.0.0.1:8004/
# a request for something not in the lock must be a 404 (and a recorded miss)
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8004/not/in/the/lock)
echo "$code" > "$OUT/miss-status.txt"

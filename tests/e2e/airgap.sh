#!/usr/bin/env bash
# Runs INSIDE `unshare -n` (loopback only): load + serve the archive, then fetch everything with
# the real clients. Usage: airgap.sh PYTHON ARCHIVE ROOT OUT PATHS_FILE
set -euo pipefail
PY=$1 ARCHIVE=$2 ROOT=$3 OUT=$4 PATHS=$5
ip link set lo up
ip route > "$OUT/route.txt"            # must be empty: no way out of this namespace
ip -4 addr show scope global > "$OUT/global-addrs.txt"
"$PY" -m gapcache mirrors "$ARCHIVE" --root "$ROOT" --bind 127.0.0.1 -q > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  curl -sf -o /dev/null http://127.0.0.1:8004/ && break
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 0.05
done
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

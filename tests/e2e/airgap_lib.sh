# Sourced by the airgap_*.sh scripts, which run INSIDE `unshare -n` (loopback only).
# start_mirrors PYTHON ARCHIVE ROOT OUT READY_URL: bring up loopback, record the routing table (the
# tests require it empty: no way out), start `gapcache mirrors` and wait until READY_URL answers.
start_mirrors() {
  local py=$1 archive=$2 root=$3 out=$4 ready=$5
  ip link set lo up
  ip route > "$out/route.txt"
  "$py" -m gapcache mirrors "$archive" --root "$root" --bind 127.0.0.1 -q > "$out/serve.log" 2>&1 &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true; cleanup' EXIT
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "$ready" && return 0
    kill -0 $SERVER 2>/dev/null || { cat "$out/serve.log"; exit 1; }
    sleep 0.05
  done
  echo "mirrors did not come up" >&2
  exit 1
}
cleanup() { :; }

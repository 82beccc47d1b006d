#!/usr/bin/env bash
# INSIDE `unshare -n`: load + serve a yum archive, install with dnf (gpgcheck on), reposync the full repo.
# Usage: airgap_yum.sh PYTHON ARCHIVE ROOT OUT
set -euo pipefail
PY=$1 ARCHIVE=$2 ROOT=$3 OUT=$4
M=http://127.0.0.1:8001
ip link set lo up
ip route > "$OUT/route.txt"
"$PY" -m gapcache mirrors "$ARCHIVE" --root "$ROOT" --bind 127.0.0.1 -q > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  curl -sf -o /dev/null $M/ && break
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 0.05
done
mkdir -p "$OUT/repos.d" "$OUT/installroot" "$OUT/sync"
curl -sf $M/test-sub.repo -o "$OUT/repos.d/test-sub.repo"
curl -sf $M/test-full.repo -o "$OUT/test-full.repo"
DNF=(dnf -y -q --noplugins --releasever=9 --setopt=reposdir="$OUT/repos.d" --setopt=cachedir="$OUT/cache")
"${DNF[@]}" --installroot="$OUT/installroot" install pa > "$OUT/dnf-install.log" 2>&1
rpm --root "$OUT/installroot" -qa --qf '%{NAME}-%{VERSION}\n' | sort > "$OUT/installed.txt"
mkdir -p "$OUT/repos-full.d" && cp "$OUT/test-full.repo" "$OUT/repos-full.d/"
dnf -y -q --disableplugin=local --releasever=9 --setopt=reposdir="$OUT/repos-full.d" --setopt=cachedir="$OUT/cache2" \
  reposync --download-metadata --repoid test-full -p "$OUT/sync" > "$OUT/reposync.log" 2>&1

#!/usr/bin/env bash
# INSIDE `unshare -n`: load + serve a yum archive, install with dnf (gpgcheck on), reposync the full repo.
# Usage: airgap_yum.sh PYTHON ARCHIVE ROOT OUT
set -euo pipefail
PY=$1 ARCHIVE=$2 ROOT=$3 OUT=$4
M=http://127.0.0.1:8001
source "$(dirname "$0")/airgap_lib.sh"
start_mirrors "$PY" "$ARCHIVE" "$ROOT" "$OUT" $M/
mkdir -p "$OUT/repos.d" "$OUT/installroot" "$OUT/sync"
curl -sf $M/test-sub.repo -o "$OUT/repos.d/test-sub.repo"
curl -sf $M/test-full.repo -o "$OUT/test-full.repo"
DNF=(dnf -y -q --noplugins --releasever=9 --setopt=reposdir="$OUT/repos.d" --setopt=cachedir="$OUT/cache")
"${DNF[@]}" --installroot="$OUT/installroot" install pa > "$OUT/dnf-install.log" 2>&1
rpm --root "$OUT/installroot" -qa --qf '%{NAME}-%{VERSION}\n' | sort > "$OUT/installed.txt"
mkdir -p "$OUT/repos-full.d" && cp "$OUT/test-full.repo" "$OUT/repos-full.d/"
dnf -y -q --disableplugin=local --releasever=9 --setopt=reposdir="$OUT/repos-full.d" --setopt=cachedir="$OUT/cache2" \
  reposync --download-metadata --repoid test-full -p "$OUT/sync" > "$OUT/reposync.log" 2>&1

#!/usr/bin/env bash
# INSIDE `unshare -n -m` (loopback only, a private mount namespace): load + serve an apt archive,
# then isolated apt clients (their own APT_CONFIG: etc, lists, cache, status) use the `.sources`
# files the mirror serves exactly as written, with the keys installed where they say
# (/etc/apt/keyrings, a tmpfs here so the host's is untouched).
# Usage: airgap_apt.sh PYTHON ARCHIVE ROOT OUT
set -euo pipefail
PY=$1 ARCHIVE=$2 ROOT=$3 OUT=$(realpath "$4")
M=http://127.0.0.1:8001
source "$(dirname "$0")/airgap_lib.sh"
mount -t tmpfs tmpfs /etc/apt/keyrings
start_mirrors "$PY" "$ARCHIVE" "$ROOT" "$OUT" $M/suite-sub.sources

# client NAME ARCH REPO…: a sandboxed apt for ARCH using the mirror's REPO.sources files
client() {
  local name=$1 arch=$2 d="$OUT/$1"
  shift 2
  mkdir -p "$d"/etc/{apt.conf.d,preferences.d,sources.list.d,trusted.gpg.d} "$d"/lists/partial \
    "$d"/cache/archives/partial "$d"/log
  : > "$d/status"
  cat > "$d/apt.conf" <<CONF
Dir "$d/";
Dir::Etc "$d/etc/";
Dir::Etc::main "apt.conf";
Dir::Etc::parts "apt.conf.d";
Dir::Etc::sourcelist "sources.list";
Dir::Etc::sourceparts "sources.list.d";
Dir::Etc::preferencesparts "preferences.d";
Dir::Etc::trustedparts "trusted.gpg.d";
Dir::State "$d/";
Dir::State::Lists "$d/lists/";
Dir::State::status "$d/status";
Dir::Cache "$d/cache/";
Dir::Log "$d/log/";
Debug::NoLocking "1";
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
APT::Install-Recommends "true";
APT::Sandbox::User "root";
CONF
  for repo in "$@"; do
    curl -sf "$M/$repo.sources" -o "$d/etc/sources.list.d/$repo.sources"
    curl -sf "$M/$repo/key.gpg" -o "/etc/apt/keyrings/$repo.gpg"
  done
}
apt_in() { local d="$OUT/$1"; shift; APT_CONFIG="$d/apt.conf" LC_ALL=C apt-get "$@"; }

# the subset (suite layout) for amd64 and arm64, the flat subset, the full mirror
client amd64 amd64 suite-sub
client arm64 arm64 suite-sub
client flat amd64 flat-sub
client full amd64 suite-full
for c in amd64 arm64 flat full; do
  apt_in $c update > "$OUT/$c-update.log" 2> "$OUT/$c-update.err"
done
# -o APT::Install-Recommends=false: the suite subset was built without recommends (the flat one with)
apt_in amd64 install --download-only -y -o APT::Install-Recommends=false qa > "$OUT/amd64-install.log" 2>&1
apt_in arm64 install --download-only -y -o APT::Install-Recommends=false qa > "$OUT/arm64-install.log" 2>&1
apt_in flat install --download-only -y qa > "$OUT/flat-install.log" 2>&1
apt_in full install --download-only -y qunrel > "$OUT/full-install.log" 2>&1
for c in amd64 arm64 flat full; do
  ls "$OUT/$c/cache/archives" | grep '\.deb$' | sort > "$OUT/$c-debs.txt" || true
done
# a package outside the subset: apt fails the normal way (exit 100, "Unable to locate package")
set +e
apt_in amd64 install -s qunrel > "$OUT/outside.log" 2>&1
echo $? > "$OUT/outside.rc"
set -e
# what the full mirror serves for the upstream's signed Release files
mkdir -p "$OUT/served"
for f in InRelease Release Release.gpg; do
  curl -sf "$M/suite-full/dists/stable/$f" -o "$OUT/served/$f"
done
curl -sf "$M/suite-sub.sources" -o "$OUT/served/suite-sub.sources"

#!/usr/bin/env bash
# INSIDE `unshare -n`: two mirrors (127.0.0.2, 127.0.0.3) serve one loaded root; everything
# `gapcache vars` wrote is used by real clients: every URL/registry answers, dnf with the .repo
# (gpgcheck on), pip with pip.conf only, podman with registries.conf, containerd's ctr with
# hosts.toml; the playbooks run twice against localhost; the systemd unit's command runs; then the
# first mirror stops and containerd still pulls through the second.
# Usage: airgap_vars.sh PYTHON ROOT VARS OUT PBDIR UPSTREAM_REGISTRY
set -euo pipefail
PY=$1 ROOT=$2 VARS=$3 OUT=$4 PB=$5 UP=$6
ip link set lo up
ip route > "$OUT/route.txt"
PIDS=()
CD=$(mktemp -d /tmp/gccd.XXXXXX)
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$CD"; }
trap cleanup EXIT
serve() {  # serve HOST LOG
  "$PY" -m gapcache serve --root "$ROOT" --bind "$1" > "$2" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do curl -sf -o /dev/null "http://$1:5000/v2/" && return 0; sleep 0.05; done
  echo "mirror on $1 did not come up" >&2; cat "$2" >&2; exit 1
}
serve 127.0.0.2 "$OUT/serve1.log"
M1=${PIDS[0]}
serve 127.0.0.3 "$OUT/serve2.log"

echo "$SECONDS s: 1." >> "$OUT/times.txt"
# 1. every URL and registry in the rendered vars and the sourced shell vars answers
( source "$VARS/offline_repo_shell_vars.sh"
  while read -r n; do printf '%s=%s\n' "$n" "${!n}"; done < "$OUT/shell-names.txt" ) > "$OUT/shell-env.txt"
{ cat "$OUT/urls.txt"; sed -n 's/^[A-Z_]*=\(.*:\/\/.*\)$/\1/p' "$OUT/shell-env.txt" | grep -v ' '; } | sort -u |
  while read -r u; do echo "$(curl -s -o /dev/null -L -I -w '%{http_code}' "$u") $u"; done > "$OUT/url-status.txt"
{ cat "$OUT/registries.txt"; sed -n 's/^[A-Z_]*REGISTRY=\([^/]*\).*$/\1/p' "$OUT/shell-env.txt"; } | sort -u |
  while read -r r; do echo "$(curl -s -o /dev/null -w '%{http_code}' "http://$r/v2/") $r"; done > "$OUT/registry-status.txt"
while read -r ref; do  # repository:tag in the mirror, e.g. 127.0.0.2:5000/127.0.0.1_5001/team/app:1
  host=${ref%%/*} rest=${ref#*/}
  echo "$(curl -s -o /dev/null -I -w '%{http_code}' -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
    "http://$host/v2/${rest%:*}/manifests/${rest##*:}") $ref"
done < "$OUT/images.txt" > "$OUT/image-status.txt"

echo "$SECONDS s: 2." >> "$OUT/times.txt"
# 2. dnf with the generated .repo (gpgcheck on, keys from the mirror)
mkdir -p "$OUT/dnfroot"
dnf -y -q --noplugins --releasever=9 --setopt=reposdir="$VARS/clients/yum.repos.d" --setopt=cachedir="$OUT/dnfcache" \
  --installroot="$OUT/dnfroot" install pa > "$OUT/dnf.log" 2>&1
rpm --root "$OUT/dnfroot" -qa --qf '%{NAME}\n' | sort > "$OUT/dnf-installed.txt"

echo "$SECONDS s: 3." >> "$OUT/times.txt"
# 3. pip with the generated pip.conf and nothing else (no user, site or environment config)
BASE=$(command -v python3)
"$BASE" -m venv "$OUT/venv"
mkdir -p "$OUT/piphome" "$OUT/noxdg"
env -i PATH="$PATH" HOME="$OUT/piphome" XDG_CONFIG_HOME="$OUT/piphome" XDG_CONFIG_DIRS="$OUT/noxdg" \
  PIP_CONFIG_FILE="$VARS/clients/pip.conf" "$OUT/venv/bin/python" -m pip install -q --disable-pip-version-check six \
  > "$OUT/pip.log" 2>&1
"$OUT/venv/bin/python" -c 'import six; print(six.__version__)' > "$OUT/pip-import.txt"

echo "$SECONDS s: 4." >> "$OUT/times.txt"
# 4. podman with registries.conf: an unmodified reference, pulled through the mirror
PM=$CD/pm  # podman refuses a runroot longer than 50 characters
CONTAINERS_REGISTRIES_CONF="$VARS/clients/containers/registries.conf" \
  podman --root "$PM/root" --runroot "$PM/run" --storage-driver vfs pull -q "$UP/team/app:1" > "$OUT/podman.log" 2>&1
podman --root "$PM/root" --runroot "$PM/run" --storage-driver vfs images --format '{{.Repository}}:{{.Tag}}' \
  > "$OUT/podman-images.txt"

echo "$SECONDS s: 5." >> "$OUT/times.txt"
# 5. containerd with hosts.toml: ctr pulls the unmodified reference
cat > "$CD/config.toml" <<CONF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CD/c.sock"
CONF
containerd --config "$CD/config.toml" > "$OUT/containerd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -S "$CD/c.sock" ] && break; sleep 0.05; done
CTR=(ctr -a "$CD/c.sock" -n gapcache)
"${CTR[@]}" images pull --snapshotter native --hosts-dir "$VARS/clients/containerd/certs.d" "$UP/team/app:1" \
  > "$OUT/ctr-pull1.log" 2>&1
"${CTR[@]}" images ls -q > "$OUT/ctr-images1.txt"

echo "$SECONDS s: 6." >> "$OUT/times.txt"
# 6. the playbooks, twice, writing below $OUT/pb; the systemd unit's command run directly
A=(-i localhost, -c local -e "ansible_python_interpreter=$PY" -e "@$VARS/offline_repo_vars.yml" -e "@$OUT/pb-vars.yml")
ANSIBLE_NOCOLOR=1 ansible-playbook "${A[@]}" "$PB/site.yml" > "$OUT/playbook1.log" 2>&1
ANSIBLE_NOCOLOR=1 ansible-playbook "${A[@]}" "$PB/site.yml" > "$OUT/playbook2.log" 2>&1
mkdir -p "$OUT/dnfroot2"
dnf -y -q --noplugins --releasever=9 --setopt=reposdir="$OUT/pb/yum.repos.d" --setopt=cachedir="$OUT/dnfcache2" \
  --installroot="$OUT/dnfroot2" install pa > "$OUT/dnf2.log" 2>&1
rpm --root "$OUT/dnfroot2" -qa --qf '%{NAME}\n' | sort > "$OUT/dnf2-installed.txt"
EXEC=$(sed -n 's/^ExecStart=//p' "$OUT/pb/systemd/gapcache-mirrors.service")
echo "$EXEC" > "$OUT/execstart.txt"
bash -c "exec $EXEC" > "$OUT/unit-serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf -o /dev/null http://127.0.0.4:5000/v2/ && break; sleep 0.05; done
curl -s -o /dev/null -w '%{http_code}' http://127.0.0.4:5000/v2/ > "$OUT/unit-status.txt"

echo "$SECONDS s: 7." >> "$OUT/times.txt"
# 7. the first mirror stops: containerd falls back to the second
kill "$M1"; wait "$M1" 2>/dev/null || true
curl -s -o /dev/null -w '%{http_code}' http://127.0.0.2:5000/v2/ > "$OUT/m1-after-stop.txt" || true
"${CTR[@]}" images pull --snapshotter native --hosts-dir "$VARS/clients/containerd/certs.d" "$UP/team/other:2" \
  > "$OUT/ctr-pull2.log" 2>&1
"${CTR[@]}" images ls -q > "$OUT/ctr-images2.txt"
echo "$SECONDS s: end" >> "$OUT/times.txt"

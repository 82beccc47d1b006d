#!/usr/bin/env bash
# INSIDE `unshare -n`: load + serve an archive of images, then pull with skopeo and podman.
# Usage: airgap_images.sh PYTHON ARCHIVE ROOT OUT UPSTREAM AUTH_UPSTREAM  (hosts like 127.0.0.1:5001)
set -euo pipefail
PY=$1 ARCHIVE=$2 ROOT=$3 OUT=$4 UP=$5 AUP=$6
UPC=${UP/:/_} AUPC=${AUP/:/_}
M=127.0.0.1:5000
source "$(dirname "$0")/airgap_lib.sh"
start_mirrors "$PY" "$ARCHIVE" "$ROOT" "$OUT" http://$M/v2/
curl -s -D "$OUT/v2.headers" -o /dev/null http://$M/v2/
sk() { skopeo "$@"; }
sk inspect --raw --tls-verify=false "docker://$M/$UPC/team/app:1" > "$OUT/app-by-tag.json"
DIGEST=$(sha256sum "$OUT/app-by-tag.json" | cut -d' ' -f1)
sk inspect --raw --tls-verify=false "docker://$M/$UPC/team/app@sha256:$DIGEST" > "$OUT/app-by-digest.json"
sk inspect --raw --tls-verify=false "docker://$M/$UPC/team/docker:v2s2" > "$OUT/docker-v2s2.json"
sk inspect --raw --tls-verify=false "docker://$M/$AUPC/team/private:1" > "$OUT/private.json"
sk copy -q --src-tls-verify=false "docker://$M/$UPC/team/other:2" "oci:$OUT/copy:2"
curl -s "http://$M/v2/_catalog" > "$OUT/catalog.json"
curl -s "http://$M/v2/$UPC/team/app/tags/list" > "$OUT/tags.json"
# containerd's mirror parameter: a short name plus ?ns=<upstream host>
curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.index.v1+json' \
  "http://$M/v2/team/app/manifests/1?ns=$UP" > "$OUT/ns-status.txt"
# podman: by full name, by prefix-less name, and through a registries.conf mirror of the upstream
PM=$(mktemp -d /tmp/gcpm.XXXXXX)  # podman refuses a runroot longer than 50 characters
cleanup() { rm -rf "$PM"; }
P="podman --root $PM/root --runroot $PM/run --storage-driver vfs"
$P pull -q --tls-verify=false "$M/$UPC/team/app:1" > "$OUT/podman-full.txt"
$P pull -q --tls-verify=false "$M/team/other:2" > "$OUT/podman-short.txt"
cat > "$OUT/registries.conf" <<CONF
[[registry]]
prefix = "$UP"
location = "$UP"
[[registry.mirror]]
location = "$M/$UPC"
insecure = true
CONF
CONTAINERS_REGISTRIES_CONF="$OUT/registries.conf" $P pull -q "$UP/team/docker:v2s2" > "$OUT/podman-mirror.txt"
$P images --format '{{.Repository}}:{{.Tag}} {{.Digest}}' > "$OUT/podman-images.txt"

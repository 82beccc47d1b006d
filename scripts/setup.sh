#!/usr/bin/env bash
# Install what gapcache and its tests need on a fresh Debian/Ubuntu machine, into ./.venv.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(curl wget iproute2 util-linux ca-certificates python3-venv docker-registry skopeo podman apache2-utils rpm createrepo-c dnf dnf-plugins-core gnupg gpgv apt-utils containerd nginx)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's docker-registry package starts a registry service on :5000, the mirror's own port;
# the tests run theirs on free ports, so the packaged service is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  echo "setup: stopping the packaged docker-registry service (it holds port 5000)"
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip's own configuration (index, proxies) applies; the project pins its versions in pyproject.toml
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[build,dev]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/gapcache --version

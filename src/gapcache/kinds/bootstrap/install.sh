#!/bin/sh
# gapcache @VERSION@: install gapcache on an offline host from the wheels its archive carries.
#
#   tar -xf ARCHIVE install.sh && sh install.sh [--prefix DIR] ARCHIVE
#
# Needs only a POSIX shell, tar and Python >= 3.10 (zstd too for a .tar.zst archive). Creates a venv in
# DIR (default /opt/gapcache as root, else ~/.local/share/gapcache) without pip, then installs gapcache
# and what load, serve and vars need with the archive's own pip wheel: no index, no network. ARCHIVE
# may be the archive, a split archive's first part or its .toc.json; written beside an archive as
# ARCHIVE.install.sh, it finds ARCHIVE itself. Running it again is harmless.
set -eu

VERSION='@VERSION@'
TARGETS='@TARGETS@'  # PYTHON:ARCH pairs the archive carries wheels for

die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit "${CODE:-2}"
}

usage() {
  echo "usage: sh install.sh [--prefix DIR] ARCHIVE   (gapcache $VERSION; wheels for: $(carried))"
}

carried() {
  out=""
  for t in $TARGETS; do out="$out${out:+, }Python ${t%%:*} on ${t#*:}"; done
  echo "$out"
}

PREFIX=""
ARCHIVE=""
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [ -z "$ARCHIVE" ] || die "give one archive (got $ARCHIVE and $1)"; ARCHIVE=$1; shift ;;
  esac
done

if [ -z "$ARCHIVE" ]; then
  case $0 in
    *.install.sh) ARCHIVE=${0%.install.sh} ;;  # written beside the archive
    *) usage >&2; die "give the archive this install.sh came from" ;;
  esac
fi

if [ -z "$PREFIX" ]; then
  if [ "$(id -u)" = 0 ]; then
    PREFIX=/opt/gapcache
  elif [ -n "${XDG_DATA_HOME:-}" ]; then
    PREFIX=$XDG_DATA_HOME/gapcache
  elif [ -n "${HOME:-}" ]; then
    PREFIX=$HOME/.local/share/gapcache
  else
    die "no HOME: give --prefix DIR"
  fi
fi

# ---- a Python this archive carries wheels for -----------------------------------------------------
ARCH=$(uname -m)
case $ARCH in arm64) ARCH=aarch64 ;; amd64) ARCH=x86_64 ;; esac

version_of() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

too_old() {
  CODE=3 die "gapcache needs Python >= 3.10; $1 is Python $2.
  RHEL 9 / Rocky / Alma 9: dnf install python3.11   (then: PYTHON=python3.11 sh install.sh ...)
  Ubuntu 22.04 / 24.04: python3 is 3.10 / 3.12       (apt-get install python3)
  This archive carries wheels for: $(carried)"
}

PY=""
FOUND=""
if [ -n "${PYTHON:-}" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || CODE=3 die "PYTHON=$PYTHON: no such command"
  v=$(version_of "$PYTHON") || CODE=3 die "PYTHON=$PYTHON does not run"
  case $v in 2.* | 3.[0-9]) too_old "$PYTHON" "$v" ;; esac
  FOUND="$PYTHON ($v)"
  case " $TARGETS " in *" $v:$ARCH "*) PY=$PYTHON ;; esac
else
  OLD=""
  for c in python3.13 python3.12 python3.11 python3.10 python3; do
    command -v "$c" >/dev/null 2>&1 || continue
    v=$(version_of "$c") || continue
    case $v in 2.* | 3.[0-9]) OLD="$c:$v"; continue ;; esac
    FOUND="$FOUND${FOUND:+, }$c ($v)"
    case " $TARGETS " in *" $v:$ARCH "*) PY=$(command -v "$c"); break ;; esac
  done
  [ -n "$FOUND" ] || [ -z "$OLD" ] || too_old "${OLD%%:*}" "${OLD#*:}"
  [ -n "$FOUND" ] || CODE=3 die "no python3 found: gapcache needs Python >= 3.10
  RHEL 9 / Rocky / Alma 9: dnf install python3.11
  Ubuntu 22.04 / 24.04: apt-get install python3"
fi
[ -n "$PY" ] || CODE=3 die "this archive carries gapcache wheels for $(carried), but this host ($ARCH) has $FOUND.
  Install one of those Pythons (PYTHON=/path/to/it sh install.sh ...), or build the archive again with
  gapcache build --bootstrap-python X.Y --bootstrap-platform $ARCH"

# ---- the archive's bootstrap/ files ----------------------------------------------------------------
GIVEN=$ARCHIVE  # what `gapcache load` / `mirrors` is given (a split archive: its table of contents)
case $ARCHIVE in
  *.toc.json)
    [ -f "$ARCHIVE" ] || die "no such table of contents: $ARCHIVE"
    ARCHIVE=$("$PY" -c 'import json, os, sys
d = json.load(open(sys.argv[1]))
print(os.path.join(os.path.dirname(sys.argv[1]), d["parts"][0]["name"]))' "$ARCHIVE") ||
      die "cannot read the table of contents $ARCHIVE"
    ;;
esac
if [ ! -f "$ARCHIVE" ]; then  # a split archive is named by its first part
  case $ARCHIVE in
    *.tar.zst) first=${ARCHIVE%.tar.zst}.part001.tar.zst ;;
    *.tar) first=${ARCHIVE%.tar}.part001.tar ;;
    *) first=$ARCHIVE.part001 ;;
  esac
  [ -f "$first" ] || die "no such archive: $ARCHIVE"
  ARCHIVE=$first
  toc=${first%.part001*}.toc.json
  GIVEN=$toc
  [ -f "$toc" ] || GIVEN="${first%.part001*}.part*"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gapcache-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
magic=$(od -An -tx1 -N4 "$ARCHIVE" | tr -d ' \n')
if [ "$magic" = 28b52ffd ]; then
  command -v zstd >/dev/null 2>&1 || CODE=3 die "$ARCHIVE is zstd-compressed and zstd is not installed
  (dnf install zstd / apt-get install zstd), or use the uncompressed archive"
  # tar's notes on gapcache's own PAX header fields (GAPCACHE.*) are shown only if it fails
  zstd -dcq "$ARCHIVE" | tar -xf - -C "$TMP" bootstrap 2>"$TMP/tar.err" || {
    cat "$TMP/tar.err" >&2
    die "cannot read bootstrap/ from $ARCHIVE"
  }
else
  tar -xf "$ARCHIVE" -C "$TMP" bootstrap 2>"$TMP/tar.err" || {
    cat "$TMP/tar.err" >&2
    die "$ARCHIVE carries no bootstrap/ files (built with --no-bootstrap, or a differential archive)"
  }
fi
WHEELS=$TMP/bootstrap
PIP=""
for w in "$WHEELS"/pip-*.whl; do [ -f "$w" ] && PIP=$w; done
[ -n "$PIP" ] || die "$ARCHIVE carries no pip wheel in bootstrap/"
[ -f "$WHEELS/gapcache-$VERSION-py3-none-any.whl" ] || die "$ARCHIVE carries no gapcache $VERSION wheel"

# ---- the venv and the install ----------------------------------------------------------------------
if [ -x "$PREFIX/bin/python" ] && [ "$(version_of "$PREFIX/bin/python")" = "$(version_of "$PY")" ]; then
  :  # a venv from an earlier run: upgraded in place
else
  mkdir -p "$PREFIX"
  "$PY" -m venv --without-pip "$PREFIX" || CODE=3 die "cannot create a venv in $PREFIX with $PY"
fi
echo "install.sh: installing gapcache $VERSION into $PREFIX with $PY (no network)"
PIP_CONFIG_FILE=/dev/null "$PREFIX/bin/python" "$PIP/pip" --isolated install --quiet --no-index \
  --disable-pip-version-check --no-cache-dir --find-links "$WHEELS" "gapcache==$VERSION" ||
  die "pip could not install gapcache $VERSION from the archive's wheels"
"$PREFIX/bin/gapcache" --version >/dev/null || die "$PREFIX/bin/gapcache does not run"

abs=$(cd "$(dirname "$GIVEN")" && pwd)/$(basename "$GIVEN")
echo "install.sh: installed $("$PREFIX/bin/gapcache" --version) in $PREFIX/bin/gapcache"
echo "next: load the archive and serve the mirrors:"
echo "  $PREFIX/bin/gapcache mirrors $abs --root /opt/deepops"
echo "or step by step: $PREFIX/bin/gapcache load $abs --root /opt/deepops && $PREFIX/bin/gapcache serve --root /opt/deepops"

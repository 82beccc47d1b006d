#!/usr/bin/env bash
# INSIDE `unshare -n`: load + serve a git/Galaxy archive, then clone with git and install with
# ansible-galaxy from the mirror, configured only as `gapcache vars` would (a gitconfig with
# insteadOf, an ansible.cfg with [galaxy] server_list).
# Usage: airgap_git_galaxy.sh PYTHON ARCHIVE ROOT OUT UPSTREAM_GIT_BASE UPSTREAM_GIT_HOST
set -euo pipefail
PY=$1 ARCHIVE=$2 ROOT=$3 OUT=$4 UP=$5 HOST=$6
M=http://127.0.0.1:8004
source "$(dirname "$0")/airgap_lib.sh"
start_mirrors "$PY" "$ARCHIVE" "$ROOT" "$OUT" $M/galaxy/api/
export HOME=$OUT/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME"
unset $(env | sed -n 's/^\(GIT_[A-Z_]*\)=.*/\1/p' | grep -v -e GIT_CONFIG_NOSYSTEM -e GIT_TERMINAL_PROMPT) || true
git config --global url."$M/git/$HOST/".insteadOf "$UP/"
git config --global protocol.version 2
cd "$OUT"
git clone -q --recurse-submodules "$UP/org/parent.git" parent > git.log 2>&1
git -C parent rev-parse HEAD > parent.sha
git -C parent/lib/child rev-parse HEAD > child.sha
git clone -q --branch v1.0 "$UP/org/child.git" child-tag >> git.log 2>&1
git -C child-tag rev-parse HEAD > tag.sha
git clone -q --branch dev "$M/git/$HOST/org/child" child-dev >> git.log 2>&1   # the mirror URL, no .git
git -C child-dev rev-parse HEAD > dev.sha
git ls-remote "$UP/org/child.git" > ls-remote.txt
# ansible-galaxy with nothing but an ansible.cfg
cat > ansible.cfg <<CFG
[galaxy]
server_list = mirror

[galaxy_server.mirror]
url = $M/galaxy/
CFG
export ANSIBLE_CONFIG=$OUT/ansible.cfg ANSIBLE_GALAXY_CACHE_DIR=$OUT/galaxy-cache
ANSIBLE_GALAXY=$(dirname "$PY")/ansible-galaxy
printf 'collections:\n  - name: testns.app\nroles:\n  - src: testowner.ntp\n    version: 2.3.3\n  - src: git+%s/org/gitrole.git\n    version: v0.1\n    name: gitrole\n' "$UP" > requirements.yml
"$ANSIBLE_GALAXY" collection install -r requirements.yml -p "$OUT/collections" > collections.log 2>&1
"$ANSIBLE_GALAXY" role install -r requirements.yml -p "$OUT/roles" > roles.log 2>&1
set +e
"$ANSIBLE_GALAXY" collection install 'testns.base:==9.9.9' -p "$OUT/c2" > missing-version.log 2>&1
echo $? > missing-version.rc
git clone -q "$UP/org/nope.git" nope > missing-repo.log 2>&1
echo $? > missing-repo.rc

#!/usr/bin/env bash
# The main job on the built-in example, end to end on one machine:
#   connected side: build an archive of files whose URLs come from this host's apt sources;
#   offline side:   load it into ./demo/root and serve the mirrors on 127.0.0.1 (Ctrl-C stops).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p demo
ls /var/lib/apt/lists/*Packages* >/dev/null 2>&1 || apt-get update -qq
python scripts/example_manifest.py demo/example.yaml
# the archive carries gapcache itself (install.sh + wheels) for this host's Python and CPU; a real build
# defaults to Python 3.10-3.12 on x86_64 and aarch64
gapcache build -f demo/example.yaml -o demo/example.tar --store demo/store \
  --bootstrap-python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --bootstrap-platform "$(uname -m)"
gapcache ls demo/example.tar
gapcache verify -q demo/example.tar
echo
echo "Offline side: load + serve (the URLs below are the mirrors; Ctrl-C to stop)"
exec gapcache mirrors demo/example.tar --root demo/root --bind 127.0.0.1 "$@"

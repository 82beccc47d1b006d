#!/usr/bin/env bash
# The whole test suite: installs what it needs, then lint, types and tests.
#   scripts/test.sh                 everything (what CI runs)
#   scripts/test.sh -m "not slow"   the fast suite only (any pytest arguments pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"

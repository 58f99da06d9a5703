#!/usr/bin/env bash
# Run the whole test suite (creates the virtual environments when missing):
#   1. lint (ruff)  2. engine, protocol and add-on logic tests (pytest, main venv)
#   3. the extension inside real Blender 4.2 and 5.0 (bpy venvs of their own; skips cleanly without bpy)
# Extra arguments go to the main pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -40; exit 1; }
status=0
.venv/bin/python -m pytest -q "$@" || status=$?
scripts/test_blender.sh || status=$?
exit $status

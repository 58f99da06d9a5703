#!/usr/bin/env bash
# Run the whole test suite (creates the virtual environments when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"

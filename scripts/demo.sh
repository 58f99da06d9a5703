#!/usr/bin/env bash
# The main job: a real stylization of the built-in demo scene on this machine (creates the venv when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
.venv/bin/splatbrush demo -o "${1:-out/demo}"

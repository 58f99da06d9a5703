#!/usr/bin/env bash
# Create (when missing) and update the project's virtual environment in .venv.
# Usage: scripts/setup_venv.sh            -> engine + models + dev tools
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SPLATBRUSH_VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi

# On the project's build machines a capped torch lies on local disk and must be asked for by exact version;
# everywhere else pip picks a current torch for the platform.
TORCH_PINS=()
if [ -f /etc/xdg/pip/constraints.txt ] && grep -q 'torch<=2.14.1' /etc/xdg/pip/constraints.txt; then
  TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
fi

stamp="$VENV/.splatbrush-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing splatbrush and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${TORCH_PINS[@]}" -e ".[models,dev]"
  touch "$stamp"
fi

#!/usr/bin/env bash
# Tests inside real Blender: the `bpy` module from PyPI in its own venvs (.venv-blender-4.2, .venv-blender-5.0,
# .venv-blender-5.3), the extension zip built by build.py installed into it, tests/blender/ run with pytest.
#
#   scripts/test_blender.sh            # every version in SPLATBRUSH_BLENDER_VERSIONS (default "4.2 5.0 5.3")
#   SPLATBRUSH_BLENDER_VERSIONS=5.0 scripts/test_blender.sh -k render     # extra args go to pytest
#
# Blender 4.2-5.0 run Python 3.11 (bpy cp311 wheels), 5.1+ Python 3.13 (cp313): PYTHON311 / PYTHON313 pick the
# interpreters (default: python3.11 / python3.13 on PATH, or pyenv's). Idempotent and quick once the venvs
# exist. A version whose Python or bpy cannot be had here prints SKIP (exit 0 when none could be tested). The Stylize test starts a real engine with
# .venv/bin/python (scripts/setup_venv.sh makes it); without it that test skips.
# SPLATBRUSH_BLENDER_VENV_ROOT=DIR keeps the bpy venvs in DIR instead of the checkout (e.g. a cache shared
# by fresh clones).
set -uo pipefail
cd "$(dirname "$0")/.."

# 5.3 is the newest bpy on PyPI (Python 3.13): Blender 5.3 accepts the zip since it bundles a cp313 wheel
# (Pillow) beside pyzmq's cp312-abi3 one; build.py checks Blender's Python-version rule (docs/blender.md).
VERSIONS=${SPLATBRUSH_BLENDER_VERSIONS:-"4.2 5.0 5.3"}

find_python() {  # $1 = 3.11 | 3.13: a working interpreter of that version, or nothing
  local cand
  for cand in "$(command -v "python$1" 2>/dev/null)" "$HOME"/.pyenv/versions/"$1".*/bin/python"$1"; do
    [ -n "$cand" ] && [ -x "$cand" ] && "$cand" -c "import venv" 2>/dev/null && { echo "$cand"; return; }
  done
}
PY311=${PYTHON311:-$(find_python 3.11)}
PY313=${PYTHON313:-$(find_python 3.13)}

python_for() {  # the CPython a Blender version's bpy wheel needs: 4.2-5.0 -> 3.11, 5.1+ -> 3.13
  case "$1" in
    4.*|5.0) echo "$PY311" ;;
    *) echo "$PY313" ;;
  esac
}

spec_for() {  # the pip requirements of one Blender version (real Blender 4.2-5.0 bundle numpy 1.26)
  case "$1" in
    4.2) echo "bpy==4.2.* numpy<2 pytest" ;;
    5.0) echo "bpy==5.0.1 numpy<2 pytest" ;;
    4.*) echo "bpy==$1.* numpy<2 pytest" ;;
    *) echo "bpy==$1.* pytest" ;;
  esac
}

VENV_ROOT=${SPLATBRUSH_BLENDER_VENV_ROOT:-.}

ensure_venv() {  # $1 = version; returns non-zero when bpy cannot be installed
  local venv="$VENV_ROOT/.venv-blender-$1" spec stamp py
  spec=$(spec_for "$1")
  py=$(python_for "$1")
  stamp="$venv/.splatbrush-installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] && "$venv/bin/python" -c "import bpy" 2>/dev/null; then
    return 0
  fi
  echo "[test_blender] installing $spec into $venv (large download, once)"
  mkdir -p "$VENV_ROOT"
  if [ -z "$py" ]; then
    echo "[test_blender] no Python for Blender $1 (set PYTHON311 / PYTHON313)"
    return 1
  fi
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || return 1
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $spec || return 1
  # the extension must bring its own pyzmq (a bundled wheel): never let one leak into the test venv
  "$venv/bin/python" -m pip uninstall -y -q pyzmq >/dev/null 2>&1 || true
  echo "$spec" > "$stamp"
}

BUILD_PY=.venv/bin/python
[ -x "$BUILD_PY" ] || BUILD_PY=${PY311:-$PY313}
if [ -z "$BUILD_PY" ]; then
  echo "[test_blender] SKIP: no Python 3.11 or 3.13 found to build the extension"
  exit 0
fi
if ! "$BUILD_PY" build.py --local-only; then
  echo "[test_blender] SKIP: could not build the extension zip (pyzmq wheel not downloadable?)"
  exit 0
fi

status=0
ran=0
for v in $VERSIONS; do
  if ! ensure_venv "$v"; then
    echo "[test_blender] SKIP: bpy for Blender $v could not be installed"
    continue
  fi
  echo "[test_blender] Blender $v"
  "$VENV_ROOT/.venv-blender-$v/bin/python" -m pytest -c tests/blender/pytest.ini --confcutdir tests/blender \
    tests/blender -q "$@"
  rc=$?
  ran=$((ran + 1))
  [ $rc -eq 0 ] || status=$rc
done
[ $ran -gt 0 ] || echo "[test_blender] SKIP: no Blender version could be tested"
exit $status

#!/usr/bin/env bash
# Tests inside real Blender: the `bpy` module from PyPI in its own venvs (.venv-blender-4.2, .venv-blender-5.0),
# the extension zip built by build.py installed into it, tests/blender/ run with pytest.
#
#   scripts/test_blender.sh            # every version in SPLATBRUSH_BLENDER_VERSIONS (default "4.2 5.0")
#   SPLATBRUSH_BLENDER_VERSIONS=5.0 scripts/test_blender.sh -k render     # extra args go to pytest
#
# Idempotent and quick once the venvs exist. When bpy cannot be installed here (no Python 3.11, no
# registry, unsupported platform) it prints SKIP and exits 0. The Stylize test starts a real engine with
# .venv/bin/python (scripts/setup_venv.sh makes it); without it that test skips.
# SPLATBRUSH_BLENDER_VENV_ROOT=DIR keeps the bpy venvs in DIR instead of the checkout (e.g. a cache shared
# by fresh clones).
set -uo pipefail
cd "$(dirname "$0")/.."

VERSIONS=${SPLATBRUSH_BLENDER_VERSIONS:-"4.2 5.0"}
PY311=${PYTHON311:-$(command -v python3.11 || true)}
if [ -z "$PY311" ]; then
  echo "[test_blender] SKIP: no python3.11 on PATH (bpy 4.2-5.0 wheels need CPython 3.11; set PYTHON311)"
  exit 0
fi

spec_for() {  # the pip requirements of one Blender version (real Blender 4.2-5.0 bundle numpy 1.26)
  case "$1" in
    4.2) echo "bpy==4.2.* numpy<2 pytest" ;;
    5.0) echo "bpy==5.0.1 numpy<2 pytest" ;;
    *) echo "bpy==$1.* numpy<2 pytest" ;;
  esac
}

VENV_ROOT=${SPLATBRUSH_BLENDER_VENV_ROOT:-.}

ensure_venv() {  # $1 = version; returns non-zero when bpy cannot be installed
  local venv="$VENV_ROOT/.venv-blender-$1" spec stamp
  spec=$(spec_for "$1")
  stamp="$venv/.splatbrush-installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] && "$venv/bin/python" -c "import bpy" 2>/dev/null; then
    return 0
  fi
  echo "[test_blender] installing $spec into $venv (large download, once)"
  mkdir -p "$VENV_ROOT"
  [ -x "$venv/bin/python" ] || "$PY311" -m venv "$venv" || return 1
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $spec || return 1
  # the extension must bring its own pyzmq (a bundled wheel): never let one leak into the test venv
  "$venv/bin/python" -m pip uninstall -y -q pyzmq >/dev/null 2>&1 || true
  echo "$spec" > "$stamp"
}

BUILD_PY=.venv/bin/python
[ -x "$BUILD_PY" ] || BUILD_PY=$PY311
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

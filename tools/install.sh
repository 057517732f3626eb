#!/usr/bin/env bash
# Create (or reuse) the project virtualenv and install the pinned stack + mmvlp.
#
#   make install            # what users run; this script does the work
#
# Environment:
#   PYTHON            interpreter for a new venv             (default: python3)
#   MMVLP_VENV        virtualenv path                        (default: <repo>/.venv)
#   MMVLP_WHEEL_DIR   prebuilt wheels to reuse (mmcv)        (default: ../shared/wheels if present)
#   MMVLP_CACHE_DIR   where a wheel built here is kept       (default: ~/.cache/mmvlp)
#   FORCE_CUDA        1/0: build mmcv's CUDA ops or not      (default: 1 on hosts with a GPU)
#
# mmcv wheels are kept per build, under wheels/<key>/ with the key of
# `tools/check_env.py --mmcv-key` (torch release + cpu or CUDA version, e.g.
# torch2.14.1-cu130): a CPU-only wheel is never installed on a GPU host and
# the reverse; a wheel from MMVLP_WHEEL_DIR is checked the same way after
# installing it.
#
# A second run on a ready machine only checks the installed versions (seconds).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${MMVLP_VENV:-$REPO/.venv}"
CACHE_DIR="${MMVLP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmvlp}"
WHEEL_CACHE="$CACHE_DIR/wheels"
if [[ -z "${MMVLP_WHEEL_DIR:-}" && -d "$REPO/../shared/wheels" ]]; then
  MMVLP_WHEEL_DIR="$(cd "$REPO/../shared/wheels" && pwd)"
fi
WHEEL_DIR="${MMVLP_WHEEL_DIR:-}"
MMCV_VERSION=2.1.0
LOG="$VENV/install.log"
STAMP="$VENV/.mmvlp-installed"

step() { printf '==> %s\n' "$*"; }
fail() {
  printf '\nERROR: %s\n' "$1" >&2
  [[ -n "${2:-}" ]] && printf 'Fix: %s\n' "$2" >&2
  if [[ -f "$LOG" ]]; then
    printf -- '--- last lines of %s ---\n' "$LOG" >&2
    tail -n 25 "$LOG" >&2
  fi
  exit 1
}
# Run a command with its output in the log only.
quiet() { "$@" >>"$LOG" 2>&1; }

# Everything that decides what gets installed; a change re-runs the install.
fingerprint() {
  cat "$REPO"/requirements/*.txt "$REPO/setup.py" "$REPO/tools/install.sh" \
    | sha256sum | cut -d' ' -f1
}

# --- 1. virtualenv -------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' on PATH" \
    "install Python 3.11 (with venv) or set PYTHON=/path/to/python3.11"
  step "creating virtualenv $VENV ($("$PYTHON" --version 2>&1))"
  "$PYTHON" -m venv "$VENV" || fail "could not create $VENV" \
    "install the venv module (Debian: apt-get install python3-venv)"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
touch "$LOG"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(fingerprint)" ]] && \
   "$PY" "$REPO/tools/check_env.py" --quiet >>"$LOG" 2>&1; then
  step "environment $VENV is up to date (tools/check_env.py passed)"
  exit 0
fi

PYTAG="cp$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
step "python $("$PY" --version 2>&1 | cut -d' ' -f2) in $VENV (log: $LOG)"
quiet "${PIP[@]}" install --upgrade "pip<26" wheel \
  || fail "could not upgrade pip" "check access to PyPI"

# --- 2. torch + torchvision ----------------------------------------------
if "$PY" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m
assert m.version('torch').split('+')[0] == '2.14.1'
assert m.version('torchvision').split('+')[0] == '0.29.1'
EOF
then
  step "torch 2.14.1 + torchvision 0.29.1 already installed"
else
  step "installing torch 2.14.1 + torchvision 0.29.1 (about 1 minute from a local cache)"
  quiet "${PIP[@]}" install torch==2.14.1 torchvision==0.29.1 \
    || fail "torch 2.14.1 / torchvision 0.29.1 did not install" \
            "these must come as a pair; check that pip can reach them (pip index versions torch)"
fi

# --- 3. mmcv 2.1.0 with compiled ops (CUDA ops on GPU hosts) --------------
MMCV_KEY="$("$PY" "$REPO/tools/check_env.py" --mmcv-key 2>>"$LOG")" \
  || fail "cannot tell which mmcv build this host needs" "see the problem above (tools/check_env.py --mmcv-key)"
if [[ "$MMCV_KEY" == *-cpu ]]; then MMCV_CUDA=0; else MMCV_CUDA=1; fi
mmcv_ok() {
  "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >>"$LOG" 2>&1 \
    && "$PY" "$REPO/tools/check_env.py" --mmcv-matches "$MMCV_KEY" >>"$LOG" 2>&1
}

build_mmcv() {
  local work
  work="$(mktemp -d)"
  step "building mmcv $MMCV_VERSION ($MMCV_KEY) from source (about 11 minutes on 2 cores without CUDA; done once per machine and build)"
  if [[ "$MMCV_CUDA" == 1 ]] && ! command -v nvcc >/dev/null && \
     [[ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
    fail "mmcv's CUDA ops need nvcc (the CUDA toolkit of torch's CUDA version, $MMCV_KEY)" \
         "install the CUDA toolkit and set CUDA_HOME, or FORCE_CUDA=0 for CPU-only ops (mmdet then fails on GPUs)"
  fi
  quiet "${PIP[@]}" install "setuptools<70" ninja \
    || fail "could not install the mmcv build tools" "check access to PyPI"
  quiet "${PIP[@]}" download --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work" \
    || fail "could not download the mmcv $MMCV_VERSION source" "check access to PyPI"
  tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  # torch 2.14's headers need C++20; mmcv 2.1.0 asks for C++17.
  sed -i "s/-std=c++17/-std=c++20/g" "$work/mmcv-$MMCV_VERSION/setup.py"
  mkdir -p "$WHEEL_CACHE/$MMCV_KEY"
  (cd "$work/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 FORCE_CUDA="$MMCV_CUDA" \
     MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" wheel --no-deps --no-build-isolation . \
     -w "$WHEEL_CACHE/$MMCV_KEY") >>"$LOG" 2>&1 \
    || fail "building mmcv $MMCV_VERSION failed" \
            "needs gcc/g++ with C++20 and the Python headers (Debian: apt-get install build-essential python3-dev)"
  rm -rf "$work"
}

install_mmcv_from() {  # $1: directory with wheels
  local wheel
  wheel="$(ls "$1"/mmcv-"$MMCV_VERSION"-"$PYTAG"-"$PYTAG"-linux_"$(uname -m)".whl 2>/dev/null | head -n 1 || true)"
  [[ -n "$wheel" ]] || return 1
  step "installing mmcv from $wheel"
  # The file itself (replacing an mmcv without ops), then its dependencies.
  quiet "${PIP[@]}" install --no-deps --force-reinstall "$wheel" || return 1
  quiet "${PIP[@]}" install "$wheel" || return 1
  mmcv_ok || { step "that wheel is not the $MMCV_KEY build (or does not import); ignoring it"; return 1; }
}

if mmcv_ok; then
  step "mmcv $MMCV_VERSION ($MMCV_KEY ops) already installed"
else
  if ! { [[ -n "$WHEEL_DIR" ]] && { install_mmcv_from "$WHEEL_DIR/$MMCV_KEY" || \
                                    install_mmcv_from "$WHEEL_DIR"; }; } && \
     ! install_mmcv_from "$WHEEL_CACHE/$MMCV_KEY"; then
    build_mmcv
    install_mmcv_from "$WHEEL_CACHE/$MMCV_KEY" || fail "the mmcv wheel built in $WHEEL_CACHE/$MMCV_KEY does not import" \
      "delete $WHEEL_CACHE/$MMCV_KEY and run make install again; see $LOG"
  fi
fi

# --- 4. the rest of the stack, test tools and mmvlp -----------------------
step "installing the OpenMMLab stack and test tools (requirements/*.txt)"
quiet "${PIP[@]}" install -r "$REPO/requirements/runtime.txt" -r "$REPO/requirements/tests.txt" \
  || fail "installing requirements/runtime.txt + tests.txt failed" "see the log above; check access to PyPI"
quiet "${PIP[@]}" install --no-build-isolation -r "$REPO/requirements/optional.txt" \
  || fail "installing requirements/optional.txt (deepspeed) failed" "see the log above"
quiet "${PIP[@]}" install --no-deps -r "$REPO/requirements/tests-nodeps.txt" \
  || fail "installing requirements/tests-nodeps.txt (torchscale) failed" "see the log above"
step "installing mmvlp (editable)"
quiet "${PIP[@]}" install --no-deps --no-build-isolation -e "$REPO" \
  || fail "pip install -e . failed" "see the log above"

step "checking the environment (tools/check_env.py)"
"$PY" "$REPO/tools/check_env.py" || fail "the installed environment is not the pinned one" \
  "see the lines above"
fingerprint >"$STAMP"
step "done: activate with 'source ${VENV#$REPO/}/bin/activate'"

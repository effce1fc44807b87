#!/usr/bin/env bash
# The virtual environment CI runs the XLA tests (tests/xla) in, created when missing and cached
# outside the repository: torch-xla and the exact torch it imports with (the pins of
# pyproject's `xla` extra, which the TPU image installs too), this checkout (editable, with
# the trainer's dependencies) and pytest. torch 2.9 from PyPI is the CUDA build (a few GB with
# its nvidia packages, it runs on the CPU); its wheels are kept in a wheel cache so a rebuilt
# venv needs no download. Re-running it with everything present only re-links the checkout.
#
# Prints the venv's path on stdout (all else goes to stderr), so CI runs
#   XLA_VENV=$(bash .ci/xla-venv.sh) && PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 "$XLA_VENV/bin/pytest" tests/xla
# Environment: MUTASK_XLA_VENV (default ~/.cache/mutask/xla-venv-<torch-xla version>),
# MUTASK_XLA_WHEELS (default ~/.cache/mutask/wheels/xla), PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
log() { printf 'xla-venv: %s\n' "$*" >&2; }
# Python runs from /: in the repository root the folder operator/ shadows the stdlib module.
cd /

# The pins, read from pyproject.toml.
PINS="$("$PYTHON" - "$ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]
print(" ".join(extras["xla"]))
EOF
)"
read -r -a PIN_LIST <<<"$PINS"
VERSION="$(printf '%s\n' "${PIN_LIST[@]}" | sed -n 's/^torch-xla==//p')"
[[ -n "$VERSION" ]] || { log "pyproject.toml's xla extra pins no torch-xla==X"; exit 1; }
TEST_DEPS=("pytest>=8" "pytest-timeout>=2.3" "pytest-asyncio>=0.23")
VENV="${MUTASK_XLA_VENV:-$HOME/.cache/mutask/xla-venv-$VERSION}"
WHEELS="${MUTASK_XLA_WHEELS:-$HOME/.cache/mutask/wheels/xla}"
# What the venv was built from; a different stamp (pins or dependencies changed) rebuilds it.
STAMP="$PINS ${TEST_DEPS[*]} $(sed -n '/^trainer = \[/,/^\]/p' "$ROOT/pyproject.toml" | tr -d ' \n')"

pip_() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" >&2; }

if [[ ! -f "$VENV/.mutask-stamp" || "$(cat "$VENV/.mutask-stamp")" != "$STAMP" ]]; then
  log "creating $VENV (torch-xla $VERSION; pins: $PINS)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")" "$WHEELS"
  "$PYTHON" -m venv "$VENV"
  pip_ install "pip>=24" "setuptools>=77" wheel
  # the big wheels once into the wheel cache (files already there are reused), then offline
  pip_ download -d "$WHEELS" "${PIN_LIST[@]}"
  pip_ install --no-index --find-links "$WHEELS" "${PIN_LIST[@]}"
  printf '%s\n' "${PIN_LIST[@]}" >"$VENV/constraints.txt"
  # the trainer's dependencies and the test tools; the pins keep torch and torch-xla as they are
  pip_ install --constraint "$VENV/constraints.txt" --find-links "$WHEELS" \
    "$ROOT[trainer,xla]" "${TEST_DEPS[@]}"
  pip_ uninstall -y mutask
  printf '%s' "$STAMP" >"$VENV/.mutask-stamp"
  log "created $VENV"
fi
# This checkout, editable (a fresh clone elsewhere re-links it); the dependencies are there.
pip_ install --no-deps --no-build-isolation -e "$ROOT"
"$VENV/bin/python" -c 'import torch, torch_xla, mutask.trainer' >&2 || {
  log "$VENV is broken (torch/torch_xla/mutask do not import); delete it to rebuild"
  exit 1
}
echo "$VENV"

#!/usr/bin/env bash
# Create .venv at the repo root and install merge3 with pinned dependencies.
# Idempotent: does nothing when pyproject.toml and requirements.lock are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv
STAMP=$VENV/.merge3-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "merge3: setting up $VENV (first run takes ~3 minutes)..." >&2
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
$VENV/bin/python -m pip install -q --upgrade "pip>=24" >/dev/null
# torch first, pinned: the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
$VENV/bin/python -m pip install -q "torch==2.13.0" 2>&1 | { grep -v "^WARNING: Location" || true; }
$VENV/bin/python -m pip install -q -c requirements.lock -e ".[dev]" 2>&1 | { grep -vE "^WARNING: Location|BuildBackendWarning|^ +" || true; }
echo "$want" > "$STAMP"
echo "merge3: $VENV ready." >&2

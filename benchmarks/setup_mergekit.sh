#!/usr/bin/env bash
# Create .venv-mergekit at the repo root with mergekit 0.1.5 beside the CPU torch.
# mergekit is a benchmark reference only (benchmarks/mergekit_parity, benchmarks/merge_speed),
# never a merge3 dependency. Idempotent: does nothing when this script is unchanged.
# Torch first and pinned: an unpinned torch pulls a multi-GB CUDA build (ENVIRONMENT.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv-mergekit
STAMP=$VENV/.merge3-mergekit-installed
want=$(sha256sum benchmarks/setup_mergekit.sh | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "merge3: setting up $VENV with mergekit 0.1.5 (first run takes ~1-2 min)..." >&2
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
quiet() { "$@" 2>&1 | { grep -vE "^WARNING: Location|BuildBackendWarning|^ +" || true; }; }
quiet $VENV/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
quiet $VENV/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
quiet $VENV/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" "mergekit==0.1.5"
$VENV/bin/python -c "import mergekit, torch" 2>/dev/null && [ -x $VENV/bin/mergekit-yaml ] || {
  echo "merge3: $VENV is broken: 'import mergekit' fails; delete $VENV and rerun." >&2
  exit 1
}
echo "$want" > "$STAMP"
echo "merge3: $VENV ready." >&2

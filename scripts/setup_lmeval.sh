#!/usr/bin/env bash
# Create .venv-lmeval at the repo root: the real lm-evaluation-harness 0.4.13 (HF backend)
# beside the CPU torch, used by tests/evaluators/test_lm_eval_fidelity.py to compare
# merge3's per-item scores with lm-eval's own --log_samples output. merge3 is not
# installed here: the test runs `lm_eval` from this venv and reads its files from .venv.
# Idempotent: does nothing when this script is unchanged. transformers is pinned as in
# requirements.lock so both venvs tokenize and compute alike.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv_lib.sh
venv_current .venv-lmeval scripts/setup_lmeval.sh && exit 0
venv_begin "lm-eval 0.4.13"
venv_pip "$TORCH_PIN" "lm-eval[hf]==0.4.13" "transformers==5.19.0" "tokenizers==0.23.3" \
  "datasets==5.2.0" "safetensors==0.8.0"
venv_drop_media
venv_check "import lm_eval, lm_eval.models.huggingface, transformers, torch" \
  "'import lm_eval.models.huggingface' fails"
venv_done

#!/usr/bin/env bash
# Create .venv-lmeval at the repo root: the real lm-evaluation-harness 0.4.13 (HF backend)
# beside the CPU torch, used by tests/evaluators/test_lm_eval_fidelity.py to compare
# merge3's per-item scores with lm-eval's own --log_samples output. merge3 is not
# installed here: the test runs `lm_eval` from this venv and reads its files from .venv.
# Idempotent: does nothing when this script is unchanged.
# Traps (ENVIRONMENT.md in ../shared): torch first and pinned (an unpinned torch pulls a
# multi-GB CUDA build); transformers pinned as in requirements.lock so both venvs tokenize
# and compute alike; the registry's torchvision/torchaudio/torchcodec, if any dependency
# pulls them, break `import transformers` beside the CPU torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv-lmeval
STAMP=$VENV/.merge3-lmeval-installed
want=$(sha256sum scripts/setup_lmeval.sh | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "merge3: setting up $VENV with lm-eval 0.4.13 (first run takes a few minutes)..." >&2
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
quiet() { "$@" 2>&1 | { grep -vE "^WARNING: (Location|Skipping)|BuildBackendWarning|^ +" || true; }; }
quiet $VENV/bin/python -m pip install -q --upgrade "pip>=24"
quiet $VENV/bin/python -m pip install -q "torch==2.13.0"
quiet $VENV/bin/python -m pip install -q "torch==2.13.0" "lm-eval[hf]==0.4.13" \
  "transformers==5.19.0" "tokenizers==0.23.3" "datasets==5.2.0" "safetensors==0.8.0"
quiet $VENV/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
$VENV/bin/python -c "import lm_eval, lm_eval.models.huggingface, transformers, torch" \
  2>/dev/null || {
  echo "merge3: $VENV is broken: 'import lm_eval.models.huggingface' fails; delete $VENV" \
    "and rerun." >&2
  exit 1
}
echo "$want" > "$STAMP"
echo "merge3: $VENV ready." >&2

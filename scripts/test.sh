#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_vllm.sh
bash scripts/setup_lmeval.sh  # the real lm-eval for tests/evaluators/test_lm_eval_fidelity.py
bash scripts/setup_browser.sh  # Debian's chromium for tests/ui (the MLflow UI test)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"

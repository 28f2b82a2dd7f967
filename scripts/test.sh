#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_vllm.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/ruff check .
# Tests marked `cluster` start their own two-node Ray cluster on loopback. They pass one at a
# time (`pytest -m cluster -k NAME`) but hung when run together in one process during the
# last session, so they are outside the timed suite until that is fixed (see docs/search.md).
exec .venv/bin/python -m pytest -m "not cluster" "$@"

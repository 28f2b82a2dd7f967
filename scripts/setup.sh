#!/usr/bin/env bash
# Create .venv at the repo root and install merge3 with pinned dependencies.
# Idempotent: does nothing when pyproject.toml and requirements.lock are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv_lib.sh
venv_current .venv pyproject.toml requirements.lock && exit 0
venv_begin "merge3 and its pinned dependencies"
venv_pip -c requirements.lock -e ".[dev]"
venv_check "import merge3, irt, evaluators, search, torch" "'import merge3' fails"
venv_done

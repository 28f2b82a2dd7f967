# Shared steps of merge3's setup scripts (sourced, not run): a venv at the repo root that
# is rebuilt only when its recipe changes, pip output filtered, torch installed first.
# Traps (ENVIRONMENT.md in ../shared): torch first and pinned (an unpinned torch pulls a
# multi-GB CUDA build); the registry's torchvision/torchaudio/torchcodec break
# `import transformers` beside the CPU torch.
#
#   source scripts/venv_lib.sh
#   venv_current .venv-x RECIPE_FILE... && exit 0                # built from these
#   venv_begin "what it holds"                                   # venv, pip, torch
#   venv_pip "torch==2.13.0" "pkg==1.0"                          # pip install -q ...
#   venv_check "import pkg" "'import pkg' fails"                 # or exit 1
#   venv_done

TORCH_PIN="torch==2.13.0"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# pip's noise: index locations this machine lacks, build-backend warnings, indented detail
venv_quiet() {
  "$@" 2>&1 | { grep -vE "^WARNING: (Location|Skipping)|BuildBackendWarning|^ +" || true; }
}

# VENV RECIPE...: true when VENV was built from these recipe files already (then the
# script exits); a separate step, so that `set -e` still stops a failing install below.
venv_current() {
  VENV=$1
  shift
  VENV_STAMP=$VENV/.merge3-installed
  VENV_WANT=$(cat "$@" scripts/venv_lib.sh | sha256sum | cut -d' ' -f1)
  [ -f "$VENV_STAMP" ] && [ "$(cat "$VENV_STAMP")" = "$VENV_WANT" ]
}

# WHAT: create the venv venv_current named, upgrade pip, install the pinned CPU torch
venv_begin() {
  echo "merge3: setting up $VENV with $1 (first run takes a few minutes)..." >&2
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  venv_quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
  venv_pip "$TORCH_PIN"
}

venv_pip() {
  venv_quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"
}

# drop the registry's vision/audio wheels that do not match the CPU torch
venv_drop_media() {
  venv_quiet "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec
}

# CODE WHAT: run CODE in the venv's python; on failure say WHAT and how to recover
venv_check() {
  "$VENV/bin/python" -c "$1" 2>/dev/null || {
    echo "merge3: $VENV is broken: $2; delete $VENV and rerun." >&2
    exit 1
  }
}

venv_done() {
  echo "$VENV_WANT" > "$VENV_STAMP"
  echo "merge3: $VENV ready." >&2
}

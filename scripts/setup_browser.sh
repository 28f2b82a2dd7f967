#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/ui/): the MLflow UI is opened in
# /usr/bin/chromium, driven by the Python playwright package, which never downloads a
# browser of its own. Idempotent: exits at once when /usr/bin/chromium is there.
# Needs apt-get and root (or password-less sudo).
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "merge3: $CHROMIUM is missing and this machine has no apt-get: install Chromium so" \
       "that $CHROMIUM exists (Debian's package 'chromium'), then rerun." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "merge3: $CHROMIUM is missing and installing it needs root: run" \
       "'sudo bash scripts/setup_browser.sh' (or 'sudo apt-get install -y chromium')." >&2
  exit 1
fi
echo "merge3: installing Debian's chromium for the browser test (tests/ui)..." >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "merge3: apt-get installed 'chromium' but $CHROMIUM does not exist." >&2
  exit 1
fi
echo "merge3: $("$CHROMIUM" --version 2>/dev/null || echo chromium) ready." >&2

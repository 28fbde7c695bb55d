#!/usr/bin/env bash
# Install what tests/serving/web/test_browser.py needs: a Chromium binary and Playwright's Python package.
#
# Playwright drives the system Chromium (Debian's `chromium` package) through executable_path,
# so `playwright install` (a browser download) is neither needed nor used.
#
#   tests/browser_setup.sh            # Chromium, and Playwright into .venv when it exists
#   PYTHON=/path/to/python tests/browser_setup.sh
#   KAM_CHROMIUM=/opt/chromium/chrome tests/browser_setup.sh   # use a Chromium already there
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${KAM_CHROMIUM:-/usr/bin/chromium}"
PYTHON="${PYTHON:-.venv/bin/python}"

if [ ! -x "$CHROMIUM" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no Chromium at $CHROMIUM and no apt-get: install Chromium and set KAM_CHROMIUM" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # the package lists may be missing or stale on a fresh machine: refresh them only then
  $SUDO apt-get install -y -qq chromium >/dev/null \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; }
fi
echo "chromium: $("$CHROMIUM" --version 2>/dev/null)"

if [ -x "$PYTHON" ]; then
  if ! "$PYTHON" -c "import playwright" >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet "playwright>=1.45,<2"
  fi
  echo "playwright: $("$PYTHON" -m playwright --version)"
else
  echo "no $PYTHON yet: Playwright comes with the dev extra (pip install -e '.[dev]')"
fi

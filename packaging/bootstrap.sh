#!/usr/bin/env bash
# Create .venv with everything Latent Studio needs, on a fresh machine.
#   bash packaging/bootstrap.sh          # the app
#   bash packaging/bootstrap.sh --dev    # the app + test tools (and the font packages the training tests read)
# Torch is installed first and pinned (constraints.txt): any looser spec pulls a multi-GB CUDA build here.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt "torch==2.13.0"
if [ "$DEV" = 1 ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
  # Font packages: the glyph-data tests render real Debian fonts. Only where apt exists and we are root.
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if ! dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q "install ok installed" \
       || ! dpkg-query -W -f='${Status}' fonts-liberation 2>/dev/null | grep -q "install ok installed"; then
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu fonts-liberation >/dev/null
    fi
  fi
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e .
fi

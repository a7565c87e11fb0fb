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
  # Debian packages, only where apt exists and we are root, and only those missing (apt-get update at most once):
  # fonts: the glyph-data tests render real Debian fonts;
  # X tools and the libraries of Qt's xcb platform: the end-to-end test (tests/ui/test_e2e_xvfb.py) runs the real
  # window on Xvfb, drives it with xdotool and takes screenshots with ImageMagick's `import`; libpulse0: Qt's
  # multimedia backend loads it (sound playback; with no sound device the app says so and goes on). binutils:
  # PyInstaller reads library headers with objdump (tests/packaging/test_bundle.py builds the one-folder bundle).
  # libimage-exiftool-perl: tests/export/test_metadata_fits.py proves with exiftool that JPEG/WebP metadata reads back.
  X_PACKAGES=(xvfb xdotool imagemagick libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libxcb-image0
              libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libegl1 libgl1 libfontconfig1
              libdbus-1-3 libpulse0 binutils)  # binutils: PyInstaller's objdump (the bundle test builds it)
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
    MISSING=()
    installed fonts-dejavu-core || MISSING+=(fonts-dejavu)
    installed fonts-liberation || MISSING+=(fonts-liberation)
    installed libimage-exiftool-perl || MISSING+=(libimage-exiftool-perl)
    for pkg in "${X_PACKAGES[@]}"; do
      installed "$pkg" || MISSING+=("$pkg")
    done
    if [ "${#MISSING[@]}" -gt 0 ]; then
      echo "bootstrap: apt-get install ${MISSING[*]}" >&2
      # quiet when it works (apt's chatter, debconf notes), everything when it fails
      if ! out=$(apt-get update -qq 2>&1 \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MISSING[@]}" 2>&1)
      then
        echo "$out" >&2
        exit 1
      fi
    fi
  elif ! command -v Xvfb >/dev/null 2>&1 || ! command -v xdotool >/dev/null 2>&1 \
       || ! command -v import >/dev/null 2>&1; then
    echo "bootstrap: the end-to-end test is skipped without Xvfb, xdotool and ImageMagick (Debian, as root:" \
         "apt-get install ${X_PACKAGES[*]})" >&2
  fi
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e .
fi

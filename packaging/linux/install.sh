#!/usr/bin/env bash
# Put an unpacked Latent Studio bundle on the desktop, for the current user (no root needed):
#   bash install.sh [BUNDLE-FOLDER]      # default: the folder this script is in, or its parent
#   bash install.sh --uninstall
# It links ~/.local/bin/latent-studio to the bundle's executable, installs the icon in every size into
# ~/.local/share/icons/hicolor and latent-studio.desktop into ~/.local/share/applications. The bundle itself stays
# where it is (it may be read-only); move it later and run this again.
set -euo pipefail
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
BIN="$HOME/.local/bin"
SIZES=(16 24 32 48 64 128 256 512)
if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$BIN/latent-studio" "$DATA/applications/latent-studio.desktop"
  for s in "${SIZES[@]}"; do rm -f "$DATA/icons/hicolor/${s}x${s}/apps/latent-studio.png"; done
  echo "Latent Studio removed from the desktop (the bundle and your data folder are untouched)."
  exit 0
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
BUNDLE="${1:-}"
if [ -z "$BUNDLE" ]; then
  for candidate in "$HERE" "$HERE/.." "$HERE/../.."; do
    if [ -x "$candidate/latent-studio" ] && [ ! -d "$candidate/latent-studio" ]; then BUNDLE="$candidate"; break; fi
  done
fi
if [ -z "$BUNDLE" ] || [ ! -x "$BUNDLE/latent-studio" ]; then
  echo "install.sh: give the unpacked bundle folder (the one holding the latent-studio executable)" >&2
  exit 1
fi
BUNDLE="$(cd "$BUNDLE" && pwd)"
ICONS=""
for candidate in "$BUNDLE/_internal/studio/data/icons" "$BUNDLE/studio/data/icons" "$HERE/../../studio/data/icons"; do
  if [ -f "$candidate/latent-studio-256.png" ]; then ICONS="$candidate"; break; fi
done
DESKTOP=""
for candidate in "$HERE/latent-studio.desktop" "$BUNDLE/_internal/linux/latent-studio.desktop"; do
  if [ -f "$candidate" ]; then DESKTOP="$candidate"; break; fi
done
[ -n "$ICONS" ] && [ -n "$DESKTOP" ] || { echo "install.sh: the bundle lacks its icons or .desktop file" >&2; exit 1; }
mkdir -p "$BIN" "$DATA/applications"
ln -sfn "$BUNDLE/latent-studio" "$BIN/latent-studio"
for s in "${SIZES[@]}"; do
  mkdir -p "$DATA/icons/hicolor/${s}x${s}/apps"
  cp "$ICONS/latent-studio-$s.png" "$DATA/icons/hicolor/${s}x${s}/apps/latent-studio.png"
done
# the launcher runs the bundle by its full path, so it works even when ~/.local/bin is not on PATH
sed -e "s|^Exec=latent-studio|Exec=\"$BUNDLE/latent-studio\"|" -e "s|^TryExec=latent-studio|TryExec=$BUNDLE/latent-studio|" \
  "$DESKTOP" > "$DATA/applications/latent-studio.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$DATA/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
echo "Latent Studio is in your applications menu; from a terminal: $BIN/latent-studio"

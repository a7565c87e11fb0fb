#!/usr/bin/env bash
# Build the desktop app as a one-folder bundle (PyInstaller, packaging/latent-studio.spec).
#   bash packaging/build.sh                # -> dist/latent-studio/latent-studio
#   bash packaging/build.sh --dist DIR     # -> DIR/latent-studio/latent-studio
# Needs the venv made by packaging/bootstrap.sh. PyInstaller's work files go to a temporary folder, never the repo.
# Prints the bundle's path (stdout) and its size (stderr); exits 1 with a message when the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${LATENT_STUDIO_BUILD_PYTHON:-$ROOT/.venv/bin/python}  # the tests pass their own interpreter
DIST=$ROOT/dist

usage() { sed -n '2,6s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) [ $# -ge 2 ] || { echo "build.sh: --dist needs a folder" >&2; exit 2; }; DIST=$2; shift 2 ;;
    --dist=*) DIST=${1#--dist=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ ! -x "$PY" ]; then
  echo "build.sh: no Python at $PY: run 'bash packaging/bootstrap.sh' first" >&2
  exit 1
fi
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  # pyproject's `bundle` extra (the one place that names it), without reinstalling the app into that interpreter
  mapfile -t BUNDLE_REQS < <("$PY" -c 'import sys
try:
    import tomllib
except ImportError:  # Python 3.10: the app depends on tomli there
    import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["bundle"]))')
  echo "build.sh: installing the bundle extra (${BUNDLE_REQS[*]}) into $PY" >&2
  "$PY" -m pip install --disable-pip-version-check -c constraints.txt "${BUNDLE_REQS[@]}" \
    || { echo "build.sh: could not install PyInstaller (pip's error is above)" >&2; exit 1; }
fi
# PyInstaller reads shared-library headers with binutils' objdump on Linux.
if [ "$(uname -s)" = Linux ] && ! command -v objdump >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "build.sh: apt-get install binutils (PyInstaller needs objdump)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      binutils >/dev/null
  else
    echo "build.sh: PyInstaller needs objdump: install binutils (Debian: apt-get install binutils)" >&2
    exit 1
  fi
fi

mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
BUNDLE=$DIST/latent-studio
WORK=$(mktemp -d "${TMPDIR:-/tmp}/latent-studio-build.XXXXXX")
LOG=$(mktemp "${TMPDIR:-/tmp}/latent-studio-build.XXXXXX.log")
trap 'rm -rf "$WORK"' EXIT

echo "build.sh: building $BUNDLE (log: $LOG)" >&2
START=$SECONDS
# cwd = the work folder: nothing PyInstaller writes lands in the checkout.
if ! (cd "$WORK" && "$PY" -m PyInstaller --noconfirm --workpath "$WORK/build" --distpath "$DIST" \
        "$ROOT/packaging/latent-studio.spec") >"$LOG" 2>&1; then
  tail -n 40 "$LOG" >&2
  echo "build.sh: the PyInstaller build FAILED (the last lines are above; the whole log is $LOG)" >&2
  exit 1
fi
for needed in "$BUNDLE/latent-studio" "$BUNDLE/_internal/torch/bin/torch_shm_manager"; do
  if [ ! -x "$needed" ]; then
    echo "build.sh: the build FAILED: $needed is missing or not executable (log: $LOG)" >&2
    exit 1
  fi
done
grep -h "^latent-studio.spec:" "$LOG" >&2 || true  # what the spec trimmed
rm -f "$LOG"
BYTES=$(du -sb "$BUNDLE" | cut -f1)
echo "build.sh: built in $((SECONDS - START)) s: $BUNDLE ($((BYTES / 1000000)) MB, $BYTES bytes)" >&2
echo "$BUNDLE"

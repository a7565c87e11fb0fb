#!/usr/bin/env bash
# Create .venv with everything Latent Studio needs, on a fresh machine.
#   bash packaging/bootstrap.sh                  # the app
#   bash packaging/bootstrap.sh --dev            # the app + test tools (and, as root with apt, the system packages)
#   bash packaging/bootstrap.sh --with diffusers # the app + optional extras (diffusers, onnx: pyproject's extras)
#   --torch auto|cpu|cuda   which PyTorch build (default auto: cuda where nvidia-smi works, else cpu)
#   --torch-index URL       install torch from this index instead (e.g. https://download.pytorch.org/whl/cu128)
#   --print-plan            say what would be installed, and how, and stop
# Torch is installed first, pinned by constraints.txt (torch==2.13.0); the app and its extras come from pyproject.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,8s/^# \{0,1\}//p' "$0"; }
DEV=0 TORCH=auto TORCH_INDEX="" PLAN=0 EXTRAS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) DEV=1; shift ;;
    --torch) [ $# -ge 2 ] || { echo "bootstrap: --torch needs auto, cpu or cuda" >&2; exit 2; }; TORCH=$2; shift 2 ;;
    --torch=*) TORCH=${1#--torch=}; shift ;;
    --torch-index) [ $# -ge 2 ] || { echo "bootstrap: --torch-index needs a URL" >&2; exit 2; }
                   TORCH_INDEX=$2; shift 2 ;;
    --torch-index=*) TORCH_INDEX=${1#--torch-index=}; shift ;;
    --with) [ $# -ge 2 ] || { echo "bootstrap: --with needs an extra (diffusers, onnx)" >&2; exit 2; }
            IFS=, read -r -a more <<< "$2"; EXTRAS+=("${more[@]}"); shift 2 ;;
    --with=*) IFS=, read -r -a more <<< "${1#--with=}"; EXTRAS+=("${more[@]}"); shift ;;
    --print-plan) PLAN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bootstrap: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$TORCH" in auto|cpu|cuda) ;; *) echo "bootstrap: --torch takes auto, cpu or cuda, not '$TORCH'" >&2; exit 2 ;; esac
[ "$DEV" = 1 ] && EXTRAS=(dev ${EXTRAS[@]+"${EXTRAS[@]}"})
for extra in ${EXTRAS[@]+"${EXTRAS[@]}"}; do
  grep -q "^$extra = \[" pyproject.toml \
    || { echo "bootstrap: no extra '$extra' in pyproject.toml (it has: dev, diffusers, onnx, bundle)" >&2; exit 2; }
done

PY=${PYTHON:-python3}
VPY=.venv/bin/python
PIP=(-m pip install --disable-pip-version-check -c constraints.txt)
TORCH_PIN=$(grep -m1 '^torch==' constraints.txt)  # the one pin (torch==2.13.0)
CPU_INDEX=${LATENT_STUDIO_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
SYSTEM=$(uname -s)
say() { echo "bootstrap: $*" >&2; }

# --- which torch --------------------------------------------------------------------------------------------------
cuda_works() {  # a working NVIDIA driver: nvidia-smi lists a GPU
  command -v nvidia-smi >/dev/null 2>&1 || return 1
  local out
  out=$( (command -v timeout >/dev/null 2>&1 && timeout 20 nvidia-smi -L || nvidia-smi -L) 2>/dev/null) || return 1
  [ -n "$out" ]
}
reachable() {  # the index answers for torch within 15 s (no answer: pip would retry for minutes)
  "$PY" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=15).read(1)
EOF
}
WHY=""
BUILD=$TORCH
if [ "$TORCH" = auto ]; then
  if [ "$SYSTEM" = Darwin ]; then
    BUILD=default WHY="macOS: the package index's wheel (CPU and Apple MPS)"
  elif cuda_works; then
    BUILD=cuda WHY="nvidia-smi lists a GPU"
  else
    BUILD=cpu WHY=$(command -v nvidia-smi >/dev/null 2>&1 && echo "nvidia-smi does not work" || echo "no nvidia-smi")
  fi
else
  WHY="asked for"
  [ "$SYSTEM" = Darwin ] && [ "$TORCH" != cuda ] && BUILD=default WHY="macOS: the package index's wheel (CPU and MPS)"
fi
INDEX_ARGS=()
if [ -n "$TORCH_INDEX" ]; then
  INDEX_ARGS=(--index-url "$TORCH_INDEX") WHERE="from $TORCH_INDEX (--torch-index)"
elif [ "$BUILD" = cpu ]; then
  if reachable "$CPU_INDEX"; then
    INDEX_ARGS=(--index-url "$CPU_INDEX") WHERE="the CPU build from the PyTorch CPU index $CPU_INDEX"
  else
    WHERE="the PyTorch CPU index $CPU_INDEX cannot be reached: what pip resolves from its configured index"
    WHERE+=" (on Linux the package index's torch is the CUDA build unless pip is set up with a CPU wheel)"
  fi
elif [ "$BUILD" = cuda ]; then
  WHERE="the package index's build (on Linux: CUDA, with its nvidia-* packages, several GB); for another CUDA"
  WHERE+=" version use --torch-index https://download.pytorch.org/whl/cu128 (nvidia-smi shows what the driver supports)"
else
  WHERE="the package index's build"
fi
TORCH_CMD=("$VPY" "${PIP[@]}" ${INDEX_ARGS[@]+"${INDEX_ARGS[@]}"} "$TORCH_PIN")
TARGET=.
[ "${#EXTRAS[@]}" -gt 0 ] && TARGET=".[$(IFS=,; echo "${EXTRAS[*]}")]"
APP_CMD=("$VPY" "${PIP[@]}" -e "$TARGET")

# --- system packages (Debian / Ubuntu) ----------------------------------------------------------------------------
# The plain install only names what the window needs (python -m studio.sysdeps: Qt's own and its xcb plugin's
# libraries). With --dev as root where apt exists, the missing ones of these are installed (apt-get update once):
# fonts: the glyph-data tests render real Debian fonts;
# X tools and the libraries of Qt's xcb platform: the end-to-end tests run the real window on Xvfb, drive it with
# xdotool and take screenshots with ImageMagick's `import`; libpulse0: Qt's multimedia backend loads it (sound
# playback; with no sound device the app says so and goes on). binutils: PyInstaller reads library headers with
# objdump (tests/packaging/test_bundle.py builds the one-folder bundle), and the sysdeps test reads Qt's plugin.
# libimage-exiftool-perl: tests/export/test_metadata_fits.py proves with exiftool that JPEG/WebP metadata reads back.
X_PACKAGES=(xvfb xdotool imagemagick libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libxcb-image0
            libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libegl1 libgl1 libfontconfig1
            libdbus-1-3 libpulse0 binutils)
DEV_PACKAGES=(fonts-dejavu-core fonts-liberation libimage-exiftool-perl "${X_PACKAGES[@]}")
# what to install when a package above is missing (fonts-dejavu-core is checked, fonts-dejavu brings the rest)
apt_name() { [ "$1" = fonts-dejavu-core ] && echo fonts-dejavu || echo "$1"; }
APT_INSTALL=0
[ "$DEV" = 1 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && APT_INSTALL=1

if [ "$PLAN" = 1 ]; then
  echo "venv: .venv ($( [ -x "$VPY" ] && echo "exists" || echo "new, from $PY"))"
  echo "torch: $BUILD ($WHY): $WHERE"
  echo "run: ${TORCH_CMD[*]}"
  echo "run: ${APP_CMD[*]}"
  if [ "$SYSTEM" != Linux ]; then
    echo "system packages: none needed on $SYSTEM"
  elif [ "$APT_INSTALL" = 1 ]; then
    echo "system packages: apt-get install the missing ones of: ${DEV_PACKAGES[*]}"
  else
    echo "system packages: checked (python -m studio.sysdeps); the missing ones are named with the apt-get line"
  fi
  exit 0
fi

START=$SECONDS
step() { say "[$1/4] $2 ($((SECONDS - START)) s)"; }

step 1 "virtual environment .venv"
if [ ! -x "$VPY" ]; then
  "$PY" -m venv .venv
fi
say "      $("$VPY" --version 2>&1) at .venv"

step 2 "PyTorch: $BUILD ($WHY): $WHERE"
say "      ${TORCH_CMD[*]}"
"${TORCH_CMD[@]}"
# what was installed, and its size on disk (torch, its nvidia-* and triton packages)
"$VPY" - "$BUILD" <<'EOF' >&2
import importlib.metadata as md, os, sys, sysconfig, warnings
warnings.filterwarnings("ignore")  # torch's note that numpy is not installed yet
import torch
site = sysconfig.get_paths()["purelib"]
def size(path):
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total
names = {d.metadata["Name"] or "" for d in md.distributions()}
nvidia = sorted(name for name in names if name.lower().startswith("nvidia-"))
folders = [os.path.join(site, name) for name in ("torch", "nvidia", "triton", "functorch", "torchgen")]
mb = sum(size(f) for f in folders if os.path.isdir(f)) / 1e6
build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
try:
    available = "yes" if torch.cuda.is_available() else "no"
except Exception as exc:  # a driver problem is worth a word, not a failed install
    available = f"no ({exc})"
print(f"bootstrap:       installed torch {torch.__version__}: the {build}, CUDA available: {available}; "
      f"{mb:,.0f} MB on disk (torch{f' + {len(nvidia)} nvidia packages' if nvidia else ', no nvidia packages'})")
asked = sys.argv[1]
if asked == "cpu" and torch.version.cuda:
    print("bootstrap:       note: this is not the CPU build asked for (the PyTorch CPU index was not reached, or "
          "torch was installed before); to replace it: .venv/bin/pip uninstall torch, then run this again where "
          "download.pytorch.org is reachable, or with --torch-index URL")
if asked == "cuda" and not torch.version.cuda:
    print("bootstrap:       note: this is not a CUDA build (pip's configuration offers a CPU wheel, or torch was "
          "installed before); to replace it: .venv/bin/pip uninstall torch, then run this again with "
          "--torch-index https://download.pytorch.org/whl/cu128 (or the CUDA version nvidia-smi shows)")
EOF

step 3 "Latent Studio and its packages: pip install -e '$TARGET'"
"${APP_CMD[@]}"

step 4 "system packages"
if [ "$SYSTEM" != Linux ]; then
  say "      none needed on $SYSTEM"
else
  if [ "$APT_INSTALL" = 1 ]; then
    installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
    MISSING=()
    for pkg in "${DEV_PACKAGES[@]}"; do
      installed "$pkg" || MISSING+=("$(apt_name "$pkg")")
    done
    if [ "${#MISSING[@]}" -gt 0 ]; then
      say "      apt-get install ${MISSING[*]}"
      # quiet when it works (apt's chatter, debconf notes), everything when it fails
      if ! out=$(apt-get update -qq 2>&1 \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MISSING[@]}" 2>&1)
      then
        echo "$out" >&2
        exit 1
      fi
    else
      say "      all installed: ${DEV_PACKAGES[*]}"
    fi
  elif [ "$DEV" = 1 ] && { ! command -v Xvfb >/dev/null 2>&1 || ! command -v xdotool >/dev/null 2>&1 \
       || ! command -v import >/dev/null 2>&1; }; then
    say "      the end-to-end tests are skipped without Xvfb, xdotool and ImageMagick (Debian, as root:" \
        "apt-get install ${X_PACKAGES[*]})"
  fi
  # what the window needs, by library file (also where apt is not the package manager)
  "$VPY" -m studio.sysdeps | sed 's/^/bootstrap:       /' >&2 || true
fi
say "done in $((SECONDS - START)) s: run .venv/bin/latent-studio (or 'source .venv/bin/activate', then latent-studio)"

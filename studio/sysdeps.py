"""The system libraries Qt needs on Linux, checked before Qt is loaded (Qt-free, no studio imports).

Without them Qt's xcb platform plugin aborts with "could not load the Qt platform plugin xcb" and a core dump, and
names no library. `qt_start_problem()` says instead which library files are missing and the one `apt-get install`
line that adds them; `latent-studio` (the window) calls it before it imports Qt, and `packaging/bootstrap.sh` runs
`python -m studio.sysdeps` after installing, so a plain install names them too.

The lists are the shared libraries that PySide6's own Qt libraries and its xcb plugin link to (their ELF `NEEDED`
entries, less glibc and what PySide6 bundles); tests/ui/test_sysdeps.py reads the installed plugin and checks that
this list still covers it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable, Iterable, Mapping

# soname → the Debian / Ubuntu package that has it
PACKAGES: dict[str, str] = {
    # what libQt6Gui, libQt6Core and libQt6DBus load on any platform (offscreen too)
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    # what the xcb platform plugin (X11) loads on top
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
}
QT_LIBRARIES = ("libEGL.so.1", "libGL.so.1", "libfontconfig.so.1", "libfreetype.so.6", "libX11.so.6",
                "libxkbcommon.so.0", "libglib-2.0.so.0", "libgthread-2.0.so.0", "libdbus-1.so.3")
XCB_LIBRARIES = tuple(name for name in PACKAGES if name not in QT_LIBRARIES)

Loader = Callable[[str], object]


def can_load(soname: str, load: Loader = ctypes.CDLL) -> bool:
    """Whether the dynamic loader finds `soname` (and what it needs) the way Qt will: by name, through the system's
    library path and LD_LIBRARY_PATH."""
    try:
        load(soname)
    except OSError:
        return False
    return True


def missing_libraries(names: Iterable[str], load: Loader = ctypes.CDLL) -> list[str]:
    return [name for name in names if not can_load(name, load)]


def platform_will_be_xcb(env: Mapping[str, str] | None = None, system: str | None = None) -> bool:
    """Whether Qt will start its xcb (X11) platform: on Linux, QT_QPA_PLATFORM names xcb first, or is unset with an
    X display and no Wayland session (where Qt tries Wayland first and xcb only as a fallback)."""
    env = os.environ if env is None else env
    system = sys.platform if system is None else system
    if not system.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0].strip() == "xcb"
    if not env.get("DISPLAY"):
        return False
    wayland = bool(env.get("WAYLAND_DISPLAY")) and env.get("XDG_SESSION_TYPE", "").lower() == "wayland"
    return not wayland


def apt_line(missing: Iterable[str]) -> str:
    packages = list(dict.fromkeys(PACKAGES[name] for name in missing if name in PACKAGES))
    return "sudo apt-get install " + " ".join(packages)


def describe_missing(missing: list[str], what: str) -> str:
    """One message: what cannot start, the missing files, and the apt-get line (Debian, Ubuntu)."""
    return (f"{what} needs system libraries that are not installed: {', '.join(missing)}. On Debian or Ubuntu: "
            f"{apt_line(missing)} (on other systems install the packages that provide these files)")


def qt_start_problem(env: Mapping[str, str] | None = None, system: str | None = None,
                     load: Loader = ctypes.CDLL) -> str | None:
    """Why the window cannot start on this system (the library files missing and how to add them), or None. Checks
    only on Linux; the xcb plugin's libraries only when Qt will use xcb."""
    system = sys.platform if system is None else system
    if not system.startswith("linux"):
        return None
    names = list(QT_LIBRARIES)
    if platform_will_be_xcb(env, system):
        names += XCB_LIBRARIES
    missing = missing_libraries(names, load)
    if not missing:
        return None
    what = "Qt's xcb platform plugin (X11)" if platform_will_be_xcb(env, system) else "Qt"
    return "cannot open the window: " + describe_missing(missing, what)


def main(argv: list[str] | None = None) -> int:
    """`python -m studio.sysdeps`: check every library the window needs on X11 (as after an install, display or
    not); prints what is missing and the apt-get line. Exit status 1 when something is missing, else 0."""
    del argv
    if not sys.platform.startswith("linux"):
        print("system libraries: nothing to check on this platform (Qt's wheel brings what it needs)")
        return 0
    missing = missing_libraries([*QT_LIBRARIES, *XCB_LIBRARIES])
    if not missing:
        print(f"system libraries: the {len(PACKAGES)} libraries the window needs on X11 are installed")
        return 0
    print(describe_missing(missing, "the window (Qt on X11)"))
    return 1


if __name__ == "__main__":
    sys.exit(main())

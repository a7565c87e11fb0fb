"""Qt's system libraries on Linux (studio.sysdeps): the window names a missing one and the apt-get line before Qt
loads, instead of Qt's "could not load the Qt platform plugin xcb" abort; and the list covers what the installed
PySide6 really links to."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio import sysdeps

ROOT = Path(__file__).resolve().parents[2]


def test_qt_uses_xcb_when_asked_or_on_an_x_display_without_a_wayland_session():
    xcb = sysdeps.platform_will_be_xcb
    assert xcb({"DISPLAY": ":0"}, "linux")
    assert xcb({"QT_QPA_PLATFORM": "xcb"}, "linux") and xcb({"QT_QPA_PLATFORM": "xcb:foo;wayland"}, "linux")
    assert not xcb({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, "linux")
    assert not xcb({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}, "linux")
    assert not xcb({}, "linux")  # no display: not xcb's libraries that are the problem
    assert not xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, "linux")
    assert xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "x11"}, "linux")
    assert not xcb({"DISPLAY": ":0"}, "darwin") and not xcb({"QT_QPA_PLATFORM": "xcb"}, "win32")


def _loader(missing: set[str]):
    def load(name: str):
        if name in missing:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return object()
    return load


def test_a_missing_xcb_library_is_named_with_its_apt_get_line():
    load = _loader({"libxcb-cursor.so.0", "libxcb-icccm.so.4"})
    problem = sysdeps.qt_start_problem({"DISPLAY": ":1"}, "linux", load)
    assert problem is not None
    assert problem.startswith("cannot open the window: Qt's xcb platform plugin (X11) needs system libraries")
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4" in problem
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 (" in problem
    # offscreen or Wayland do not load the xcb plugin: nothing to say; elsewhere nothing is checked
    assert sysdeps.qt_start_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", load) is None
    assert sysdeps.qt_start_problem({"DISPLAY": ":1"}, "darwin", _loader(set(sysdeps.PACKAGES))) is None
    # what Qt's own libraries load is needed on any platform
    problem = sysdeps.qt_start_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", _loader({"libEGL.so.1"}))
    assert problem is not None and "libEGL.so.1" in problem and "apt-get install libegl1" in problem
    assert sysdeps.qt_start_problem({"DISPLAY": ":1"}, "linux", _loader(set())) is None


def test_one_apt_line_names_each_package_once():
    assert sysdeps.apt_line(["libglib-2.0.so.0", "libgthread-2.0.so.0"]) == "sudo apt-get install libglib2.0-0"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils' objdump (bootstrap.sh --dev installs it)")
def test_the_list_covers_every_library_the_installed_qt_links_to():
    """The ELF NEEDED entries of PySide6's xcb plugin and the Qt libraries it loads, less glibc's and what the
    wheel ships itself (Qt's own libraries, ICU): every one is in sysdeps.PACKAGES. A PySide6 update that needs a
    new system library fails here instead of on a user's machine."""
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    bundled = {p.name for p in (qt / "lib").iterdir()}
    files = [qt / "plugins" / "platforms" / "libqxcb.so",
             *(qt / "lib" / f"libQt6{name}.so.6" for name in ("XcbQpa", "Gui", "Widgets", "Core", "DBus"))]
    system = ("libc.so", "libm.so", "libstdc++.so", "libgcc_s.so", "libpthread.so", "libdl.so", "librt.so",
              "ld-linux", "libz.so", "libzstd.so")
    needed: set[str] = set()
    for path in files:
        assert path.is_file(), path
        dump = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True, check=True).stdout
        needed |= {line.split()[1] for line in dump.splitlines() if line.strip().startswith("NEEDED")}
    assert "libxcb-cursor.so.0" in needed  # the plugin was read
    outside = {n for n in needed if n not in bundled and not n.startswith(system)}
    assert outside - set(sysdeps.PACKAGES) == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")
def test_the_window_refuses_with_the_message_before_qt_loads_no_abort(tmp_path):
    """`latent-studio` on an X display where a library Qt's xcb plugin needs cannot be loaded (the loader made to
    fail for libxcb-cursor.so.0 alone, in a subprocess): the message and the apt-get line, status 1, no Qt abort,
    no core dump, and PySide6 never imported."""
    script = (
        "import sys, studio.sysdeps as s\n"
        "real = s.can_load\n"
        "s.can_load = lambda name, load=None: name != 'libxcb-cursor.so.0' and real(name)\n"
        "from studio.cli import main\n"
        "code = main(['gui'])\n"
        "print('PySide6 imported' if 'PySide6' in sys.modules else 'PySide6 not imported')\n"
        "sys.exit(code)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":97", PYTHONPATH=str(ROOT), LATENT_STUDIO_DATA=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr)  # not -6 (SIGABRT) or 134
    assert done.stdout.strip() == "PySide6 not imported"
    err = done.stderr
    assert err.startswith("latent-studio: cannot open the window: Qt's xcb platform plugin (X11) needs system "
                          "libraries that are not installed: libxcb-cursor.so.0."), err
    assert "sudo apt-get install libxcb-cursor0" in err
    assert "qt.qpa.plugin" not in err and "Aborted" not in err and "core dumped" not in err
    assert err.count("\n") == 1  # one line


def _library_path(soname: str) -> str | None:
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():  # "\tlibxcb-cursor.so.0 (libc6,x86-64) => /usr/lib/…/libxcb-cursor.so.0"
        if line.strip().startswith(soname + " ") and "=>" in line:
            return os.path.realpath(line.rsplit("=>", 1)[-1].strip())
    return None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="hides a real library in a private mount namespace: Linux, root and unshare")
def test_a_really_missing_library_is_named_instead_of_qts_abort(tmp_path):
    """libxcb-cursor.so.0 really unloadable: a bind mount of /dev/null over it in a mount namespace of this command
    alone (nothing else on the machine sees it). The app says which library and the apt-get line, status 1; without
    the check Qt aborts ("no Qt platform plugin could be initialized", SIGABRT, status 134)."""
    real = _library_path("libxcb-cursor.so.0")
    if real is None:
        pytest.skip("libxcb-cursor.so.0 is not installed here")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -m is not allowed here")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":96", PYTHONPATH=str(ROOT), LATENT_STUDIO_DATA=str(tmp_path / "data"))
    script = f'mount --bind /dev/null "{real}" && exec "{sys.executable}" -m studio --exit-after-ms 100'
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert done.stderr.startswith("latent-studio: cannot open the window: Qt's xcb platform plugin (X11) needs "
                                  "system libraries that are not installed: libxcb-cursor.so.0."), done.stderr
    assert "sudo apt-get install libxcb-cursor0" in done.stderr and "platform plugin could be" not in done.stderr

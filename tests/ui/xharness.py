"""The real-window harness: a real X server (Xvfb), the app as a user starts it, real input (xdotool, through XTEST)
and real screenshots (ImageMagick `import`). Every end-to-end test under tests/ui uses it.

    def test_something(xdisplay, tmp_path):
        display = xdisplay(1280, 720)                  # a fresh Xvfb of that size (torn down after the test)
        screen = Screen(display)
        app = App.start(display, tmp_path, "--model", "glyph-gan")
        geo = app.geometry()                           # where the named widgets are, once the first output shows
        ...
        geo = app.geometry(again=True)                 # ask the running app for a fresh report
        app.quit(screen)                               # Ctrl+Q (answers Discard if asked); checks exit code 0

The app writes its geometry report (studio/ui/app.py, `--report-geometry FILE`) 300 ms after its first image or
sound shows, and again whenever FILE.again appears. Rectangles are in device-independent pixels with the window's
pixel ratio alongside; `App.rect(name)` gives screen pixels.

Needs `Xvfb`, `xdotool` and `import` (packaging/bootstrap.sh --dev installs them on Debian); a test that asks for a
display is skipped with the reason when one is missing. Nothing here depends on this machine's fonts: tests find
widgets by object name in the report, never by pixel positions of text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SCREEN = (1440, 900)
TOOLS = ("Xvfb", "xdotool", "import")

# Thresholds, in grey levels (0–255), mean absolute difference over a region: rendering is deterministic on the CPU
# and nothing animates in the regions compared, so an unchanged region differs by exactly 0.
PREVIEW_CHANGED = 5.0
CONTROL_UNCHANGED = 0.5
HANDLE_MOVED = 1.0


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _skip_without_tools() -> None:
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (Debian: apt-get install xvfb xdotool imagemagick; "
                    "bash packaging/bootstrap.sh --dev does it)")


def _owns(number: int, proc: subprocess.Popen) -> bool:
    """Whether display `number` is up and is `proc`'s: its socket exists and its lock file names proc's PID. (Two
    test processes may pick the same free number at once; the socket alone would let the loser use, and later kill,
    the winner's server.)"""
    try:
        pid = int(Path(f"/tmp/.X{number}-lock").read_text().strip())
    except (OSError, ValueError):
        return False
    return pid == proc.pid and Path(f"/tmp/.X11-unix/X{number}").exists()


def start_xvfb(width: int, height: int) -> tuple[str, subprocess.Popen]:
    """A fresh Xvfb of width × height on a free display number: (":N", its process)."""
    _skip_without_tools()
    for number in range(91, 300):
        socket = Path(f"/tmp/.X11-unix/X{number}")
        if socket.exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None and not _owns(number, proc):
            time.sleep(0.05)
        if proc.poll() is None and _owns(number, proc):
            return f":{number}", proc
        stop(proc)  # lost a race for this number (or it failed): try the next one
    pytest.skip("no free X display number in :91…:299 for Xvfb")


@pytest.fixture
def xvfb():
    """A fresh 1440 × 900 Xvfb; yields the DISPLAY string (":N"), killed at the end."""
    display, proc = start_xvfb(*SCREEN)
    try:
        yield display
    finally:
        stop(proc)


@pytest.fixture
def xdisplay():
    """A factory: xdisplay(width, height) starts a fresh Xvfb of that size and returns its DISPLAY; all are killed at
    the end of the test."""
    started: list[subprocess.Popen] = []

    def make(width: int = SCREEN[0], height: int = SCREEN[1]) -> str:
        display, proc = start_xvfb(width, height)
        started.append(proc)
        return display

    try:
        yield make
    finally:
        for proc in started:
            stop(proc)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Screen:
    """xdotool and ImageMagick on one display."""

    def __init__(self, display: str):
        self.display = display
        self.env = {**os.environ, "DISPLAY": display}

    def xdotool(self, *args: str | int) -> str:
        done = subprocess.run(["xdotool", *map(str, args)], env=self.env, capture_output=True, text=True, timeout=20)
        return done.stdout.strip()

    def windows(self, name: str) -> list[int]:
        """Visible windows whose title matches `name` (a regular expression); none → []."""
        out = self.xdotool("search", "--onlyvisible", "--name", name)
        return [int(w) for w in out.split()]

    def title(self, window: int) -> str:
        return self.xdotool("getwindowname", window)

    def focus(self) -> int:
        return int(self.xdotool("getwindowfocus") or 0)

    def key(self, window: int, *keys: str) -> None:
        """Real key presses (XTEST, typed at the focused window), after making sure `window` has the focus.

        Not `key --window`: that sends synthetic events (XSendEvent), which many apps ignore.
        """
        if self.focus() != window:
            self.xdotool("windowfocus", "--sync", window)
        assert self.focus() == window, f"cannot focus window {window} ({self.title(window)!r})"
        self.xdotool("key", "--delay", 50, *keys)

    def move(self, x: int, y: int) -> None:
        self.xdotool("mousemove", "--sync", int(x), int(y))

    def click(self, x: int, y: int, button: int = 1) -> None:
        self.move(x, y)
        time.sleep(0.1)
        self.xdotool("click", button)

    def wheel(self, x: int, y: int, notches: int) -> None:
        """Real wheel notches over (x, y): positive scrolls down (X button 5), negative up (button 4)."""
        self.move(x, y)
        time.sleep(0.1)
        button = 5 if notches > 0 else 4
        for _ in range(abs(notches)):
            self.xdotool("click", button)
            time.sleep(0.05)

    def shot(self, path: Path | None = None) -> np.ndarray:
        """The whole screen as an RGB array (saved at `path` too when given)."""
        target = path or Path(os.environ.get("TMPDIR", "/tmp")) / f"lstudio-shot-{os.getpid()}.png"
        subprocess.run(["import", "-window", "root", str(target)], env=self.env, check=True, timeout=20,
                       capture_output=True)
        with Image.open(target) as image:
            pixels = np.asarray(image.convert("RGB"))
        if path is None:
            target.unlink(missing_ok=True)
        return pixels

    def settled(self, rect, timeout: float = 20) -> np.ndarray:
        """A screenshot taken once `rect` is the same in two shots 0.3 s apart."""
        def still():
            a = crop(self.shot(), rect)
            time.sleep(0.3)
            b = self.shot()
            return (b,) if mad(a, crop(b, rect)) == 0 else None

        got = wait_for(still, timeout, 0)
        assert got, f"the region {rect} never settled"
        return got[0]


def crop(pixels: np.ndarray, rect) -> np.ndarray:
    x, y, w, h = rect
    return pixels[y:y + h, x:x + w]


def grey(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of the grey levels of two same-sized RGB regions."""
    assert a.shape == b.shape and a.size, (a.shape, b.shape)
    return float(np.abs(grey(a) - grey(b)).mean())


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def app_env(display: str, tmp: Path, extra: dict | None = None) -> dict:
    """The environment of an app under test: this display, the xcb platform, user folders under `tmp`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORMTHEME", "XDG_CURRENT_DESKTOP", "DESKTOP_SESSION",
                        "QT_SCALE_FACTOR", "QT_SCREEN_SCALE_FACTORS", "QT_AUTO_SCREEN_SCALE_FACTOR",
                        "QT_ENABLE_HIGHDPI_SCALING", "XAUTHORITY", "LATENT_STUDIO_DEVICE")}
    runtime = tmp / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", XDG_RUNTIME_DIR=str(runtime),
               LATENT_STUDIO_DATA=str(tmp / "data"), LATENT_STUDIO_CACHE=str(tmp / "cache"),
               PYTHONUNBUFFERED="1", HOME=str(tmp / "home"))
    (tmp / "home").mkdir(exist_ok=True)
    env.update(extra or {})
    return env


class App:
    """The app as a process on a display, with its geometry report and its output for failure messages."""

    def __init__(self, proc: subprocess.Popen, tmp: Path, report: Path):
        self.proc, self.tmp, self.report = proc, tmp, report
        self.stdout, self.stderr = tmp / "app.stdout", tmp / "app.stderr"
        self.geo: dict = {}

    @classmethod
    def start(cls, display: str, tmp: Path, *args: str, env: dict | None = None, threads: int = 1) -> "App":
        """`python -m studio gui --report-geometry … ARGS` on `display`, its output in tmp/app.stdout, app.stderr."""
        report = tmp / "geometry.json"
        with open(tmp / "app.stdout", "wb") as out, open(tmp / "app.stderr", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "studio", "gui", "--report-geometry", str(report),
                                     "--threads", str(threads), *args], cwd=REPO, env=app_env(display, tmp, env),
                                    stdout=out, stderr=err)
        return cls(proc, tmp, report)

    def log(self) -> str:
        """The app's output so far, for failure messages."""
        return (f"\n--- app stdout ---\n{self.stdout.read_text(errors='replace')}"
                f"\n--- app stderr ---\n{self.stderr.read_text(errors='replace')}")

    def geometry(self, again: bool = False, timeout: float = 90) -> dict:
        """The geometry report: the first one (written once the first output shows), or with again=True a fresh
        one from the running app."""
        if again:
            old = self.report.stat().st_mtime_ns if self.report.exists() else 0
            ask = Path(str(self.report) + ".again")
            ask.write_text("")
            assert wait_for(lambda: not ask.exists() and self.report.exists()
                            and self.report.stat().st_mtime_ns != old or self.proc.poll() is not None, timeout), \
                "the app wrote no fresh geometry report" + self.log()
        else:
            assert wait_for(lambda: self.report.exists() or self.proc.poll() is not None, timeout), \
                f"no geometry report in {timeout:.0f} s" + self.log()
        assert self.proc.poll() is None, f"the app exited early with code {self.proc.returncode}" + self.log()
        self.geo = json.loads(self.report.read_text(encoding="utf-8"))
        return self.geo

    def rect(self, name: str, geo: dict | None = None) -> tuple[int, int, int, int]:
        """The named widget's rectangle in screen pixels (from the last report unless `geo` is given)."""
        geo = geo or self.geo
        assert name in geo, f"{name!r} missing from the geometry report: {sorted(geo)}"
        ratio = float(geo.get("ratio", 1.0))
        x, y, w, h = (round(v * ratio) for v in geo[name])
        return x, y, w, h

    def centre(self, name: str) -> tuple[int, int]:
        x, y, w, h = self.rect(name)
        return x + w // 2, y + h // 2

    def main_window(self, screen: Screen) -> int:
        ids = wait_for(lambda: screen.windows("^Latent Studio"), 10)
        assert ids, "no visible window titled 'Latent Studio…'" + self.log()
        return ids[0]

    def quit(self, screen: Screen, discard: bool = True, timeout: float = 15) -> int:
        """Ctrl+Q; if the app asks about unsaved changes, Tab to Discard and Space. Asserts a clean exit (code 0, no
        traceback) and returns the code."""
        if self.proc.poll() is None:
            screen.key(self.main_window(screen), "ctrl+q")
            if discard:
                asked = wait_for(lambda: screen.windows("^Unsaved Changes$") or self.proc.poll() is not None, 5)
                if isinstance(asked, list) and asked:
                    time.sleep(0.3)
                    screen.key(asked[0], "Tab", "space")
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the app did not exit within {timeout:.0f} s of Ctrl+Q" + self.log())
        assert code == 0, f"exit code {code}" + self.log()
        assert "Traceback" not in self.stderr.read_text(errors="replace"), "the app printed a traceback" + self.log()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

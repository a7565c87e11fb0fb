"""End to end in the real window (Xvfb, xdotool): File → Open of a PNG the command line exported, through the File
menu with the keyboard and Qt's own file dialog — the preview then shows that picture and the messages (in the log
file) say what was restored; then Ctrl+E exports the picture ×4 and the export toast shows at the window's
bottom-right."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xharness import REPO, App, Screen, crop, grey, wait_for, xdisplay  # noqa: F401 (a fixture)

MATCH = 12.0  # grey levels: the preview (the picture scaled to fit, smoothed or not) against the file, shrunk back


def preview_difference(screen: Screen, app: App, picture: np.ndarray) -> float:
    """Mean grey difference between the on-screen preview (shrunk to the picture's size) and the picture."""
    geo = app.geometry(again=True)
    x, y, w, h = app.rect("previewImage", geo)
    shown = crop(screen.shot(), (x + 1, y + 1, w - 2, h - 2))  # inside the frame line
    small = np.asarray(Image.fromarray(shown).resize((picture.shape[1], picture.shape[0]), Image.Resampling.BOX))
    return float(np.abs(grey(small) - grey(picture)).mean())


@pytest.mark.slow
def test_file_open_of_an_exported_png_then_export_shows_a_toast(xdisplay, tmp_path):
    made = tmp_path / "made.png"
    done = subprocess.run([sys.executable, "-m", "studio", "render", "--model", "glyphs", "--seed", "4242",
                           "--prompt", "Open", "--out", str(made)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    with Image.open(made) as image:
        picture = np.asarray(image.convert("RGB"))

    display = xdisplay(1280, 720)
    screen = Screen(display)
    app = App.start(display, tmp_path, "--model", "glyphs")
    try:
        app.geometry()
        window = app.main_window(screen)
        before = preview_difference(screen, app, picture)
        assert before > MATCH, f"the first picture already looks like the file ({before:.1f})"

        screen.key(window, "alt+f")
        time.sleep(0.5)
        screen.xdotool("key", "--delay", 50, "o")  # &Open… in the open File menu
        dialogs = wait_for(lambda: screen.windows("^Open$"), 20)
        assert dialogs, "File → Open showed no file dialog" + app.log()
        time.sleep(0.5)
        screen.xdotool("type", "--delay", 20, str(made))
        screen.xdotool("key", "Return")
        close = wait_for(lambda: (d := preview_difference(screen, app, picture)) <= MATCH and d, 30, 0.5)
        assert close, f"the preview never showed {made.name}" + app.log()
        screen.shot(tmp_path / "opened.png")
        logs = list((tmp_path / "data" / "logs").glob("*.log"))
        assert logs and any("Restored the request from made.png" in p.read_text(errors="replace") for p in logs), \
            "no message said what was restored" + app.log()
        assert screen.title(window).endswith("*")  # the restored request is an edit of the document

        screen.key(window, "ctrl+e")
        export = wait_for(lambda: screen.windows("^Export Image$"), 20)
        assert export, "Ctrl+E showed no export dialog" + app.log()
        time.sleep(0.5)
        screen.key(export[0], "ctrl+a")
        out = tmp_path / "home" / "big.png"
        screen.xdotool("type", "--delay", 20, str(out))
        # the scale box: Tab from the path to Browse…, then the Scale radio, then its spin box
        screen.xdotool("key", "--delay", 80, "Tab", "Tab", "Tab", "ctrl+a")
        screen.xdotool("type", "--delay", 20, "4")
        screen.xdotool("key", "Return")
        assert wait_for(out.exists, 60, 0.3), "the export wrote nothing" + app.log()
        geo = app.geometry(again=True)
        assert "exportToast" in geo, "no export toast" + app.log()
        tx, ty, tw, th = app.rect("exportToast", geo)
        wx, wy, ww, wh = app.rect("mainWindow", geo)
        seen_w, seen_h = min(wx + ww, 1280) - wx, min(wy + wh, 720) - wy  # the part of the window on the screen
        assert tx + tw <= 1280 and ty + th <= 720, f"the toast {tx, ty, tw, th} is off the 1280×720 screen"
        assert tx + tw > wx + seen_w * 0.6 and ty + th > wy + seen_h * 0.6, "the toast is not at the bottom right"
        screen.shot(tmp_path / "toast.png")
        with Image.open(out) as image:
            assert image.size == (4 * picture.shape[1], 4 * picture.shape[0])
        app.quit(screen)
    finally:
        app.kill()

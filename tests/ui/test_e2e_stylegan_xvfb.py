"""End to end in the real window (Xvfb, xdotool): File → Open Model File… on an NVIDIA network pickle, through the
File menu with the keyboard and Qt's own file dialog — the pickle is converted into the user models folder without
running anything in it, the app switches to the package, the preview shows its picture, and the StyleGAN controls
(truncation, cutoff, mix seed, noise mode) show; choosing another noise mode renders again."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sg_pickles import fixture_snapshot
from xharness import PREVIEW_CHANGED, App, Screen, crop, grey, wait_for, xdisplay  # noqa: F401 (a fixture)


def preview(screen: Screen, app: App) -> np.ndarray:
    geo = app.geometry(again=True)
    x, y, w, h = app.rect("previewImage", geo)
    return grey(crop(screen.shot(), (x + 1, y + 1, w - 2, h - 2)))


@pytest.mark.slow
def test_open_model_file_on_a_network_pickle_in_the_real_window(xdisplay, tmp_path):
    pkl = fixture_snapshot("sg2_uncond", tmp_path / "network-snapshot-000080.pkl")
    display = xdisplay(1440, 900)
    screen = Screen(display)
    app = App.start(display, tmp_path, "--model", "glyphs")
    try:
        app.geometry()
        window = app.main_window(screen)
        before = preview(screen, app)
        assert "noiseModeCombo" not in app.geo

        screen.key(window, "alt+f")
        time.sleep(0.5)
        screen.xdotool("key", "--delay", 50, "f")  # Open Model &File… in the open File menu
        dialogs = wait_for(lambda: screen.windows("^Open Model File$"), 20)
        assert dialogs, "File → Open Model File showed no file dialog" + app.log()
        time.sleep(0.5)
        screen.xdotool("type", "--delay", 20, str(pkl))
        screen.xdotool("key", "Return")

        package = tmp_path / "data" / "models" / "network-snapshot-000080"
        assert wait_for(lambda: (package / "model.toml").exists(), 60, 0.3), "nothing was imported" + app.log()
        shown = wait_for(lambda: "noiseModeCombo" in app.geometry(again=True), 60, 0.5)
        assert shown, "the app did not switch to the imported StyleGAN package" + app.log()
        for name in ("slider_truncation", "truncationCutoffSpin", "mixSeedEdit", "noiseModeCombo"):
            assert name in app.geo, f"{name} is not shown" + app.log()
        assert not (tmp_path / "network-snapshot-000080.pkl.SOURCE_WAS_EXECUTED").exists()
        def changed_from(old: np.ndarray, threshold: float) -> bool:
            now = preview(screen, app)
            return now.shape != old.shape or float(np.abs(now - old).mean()) > threshold

        assert wait_for(lambda: changed_from(before, PREVIEW_CHANGED), 30, 0.5), \
            "the preview still shows the glyph model" + app.log()
        screen.shot(tmp_path / "imported.png")

        # noise mode: const → none through the combo box (keyboard in its popup). It sits below the direction
        # sliders: scroll the panel with the wheel (over a slider without focus, the wheel scrolls) until it shows
        def reach(name: str) -> str:
            controls = app.geometry(again=True)["controls"]
            return next(info["reach"] for key, info in controls.items() if key.endswith("/" + name))

        for _ in range(20):
            if reach("noise_mode") == "screen":
                break
            assert reach("noise_mode") == "scroll", "the noise mode cannot be reached" + app.log()
            screen.wheel(*app.centre("dockLatent"), 3)
            time.sleep(0.3)
        assert reach("noise_mode") == "screen", "the wheel did not bring the noise mode on screen" + app.log()
        x, y = app.centre("noiseModeCombo")
        first = preview(screen, app)
        screen.click(x, y)
        time.sleep(0.5)
        screen.xdotool("key", "--delay", 80, "End", "Return")
        assert wait_for(lambda: changed_from(first, 0.5), 30, 0.5), \
            "choosing another noise mode did not render again" + app.log()
        screen.shot(tmp_path / "noise-none.png")
        app.quit(screen)
    finally:
        app.kill()

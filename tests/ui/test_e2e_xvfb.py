"""End to end, as a person uses the app: a real X server (Xvfb), the real window, real input events (xdotool,
through XTEST), real screenshots (ImageMagick `import`).

The app starts with the shipped glyph model; we drag the first principal-direction slider with the mouse, check that
the preview (and only the preview area, not e.g. the Models dock) changed on screen, then quit with Ctrl+Q and answer
the "Unsaved Changes" box with the keyboard (Tab to Discard, Space), and check the process exits cleanly.

Needs `Xvfb`, `xdotool` and ImageMagick's `import` (packaging/bootstrap.sh --dev installs them on Debian); skipped
with the reason when one is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xharness import (CONTROL_UNCHANGED, HANDLE_MOVED, PREVIEW_CHANGED, REPO, SCREEN, Screen, app_env, crop,  # noqa: F401
                      grey, mad, wait_for, xvfb)

_wait_for = wait_for


def _start_app(display: str, tmp: Path, report: Path, *args: str):
    """The app on `display`, writing its widgets' geometry to `report` once its first output shows, with its output
    in tmp/app.stdout and tmp/app.stderr; (process, a function giving that output for failure messages)."""
    stdout, stderr = tmp / "app.stdout", tmp / "app.stderr"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        app = subprocess.Popen([sys.executable, "-m", "studio", "gui", "--report-geometry", str(report),
                                "--threads", "1", *args], cwd=REPO, env=app_env(display, tmp), stdout=out,
                               stderr=err)

    def output() -> str:
        return (f"\n--- app stdout ---\n{stdout.read_text(errors='replace')}"
                f"\n--- app stderr ---\n{stderr.read_text(errors='replace')}")

    return app, output


def _geometry(app: subprocess.Popen, report: Path, app_log) -> dict:
    """The geometry report, once the app wrote it (the app must still run)."""
    assert _wait_for(lambda: report.exists() or app.poll() is not None, 90), "no geometry report in 90 s"
    assert app.poll() is None, f"the app exited early with code {app.returncode}" + app_log()
    return json.loads(report.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_drag_a_direction_slider_changes_the_preview_then_quit_discarding(xvfb, tmp_path):
    screen = Screen(xvfb)
    report = tmp_path / "geometry.json"
    log_err = tmp_path / "app.stderr"
    started = time.monotonic()
    app, app_log = _start_app(xvfb, tmp_path, report)
    try:
        # 1. The window is up with its first preview: the app says where its widgets are.
        geo = _geometry(app, report, app_log)
        ratio = float(geo.get("ratio", 1.0))

        def rect(name: str) -> tuple[int, int, int, int]:
            assert name in geo, f"{name!r} missing from the geometry report: {sorted(geo)}"
            x, y, w, h = (round(v * ratio) for v in geo[name])
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(SCREEN[0], x + w), min(SCREEN[1], y + h)
            assert x1 - x0 >= 8 and y1 - y0 >= 8, f"{name} is not on screen: {geo[name]}"
            return x0, y0, x1 - x0, y1 - y0

        window, preview, handle, models = (rect(n) for n in ("mainWindow", "previewImage", "slider_d0_handle",
                                                            "dockModels"))
        menu = (window[0], window[1], window[2], models[1] - window[1])  # the strip above the docks: the menu bar
        assert menu[3] >= 10, f"no room for a menu bar above the Models dock: {window}, {models}"
        print(f"\nwindow up after {time.monotonic() - started:.1f} s; preview at {preview}, Dir 1 slider at {handle}")

        ids = screen.windows("^Latent Studio")
        assert ids, "no visible window titled 'Latent Studio…' (xdotool search --name)"
        main = ids[0]
        assert "Latent Studio" in screen.title(main)
        assert "*" not in screen.title(main), f"a fresh document should not be modified: {screen.title(main)!r}"

        # The preview is on screen and still (the report comes 300 ms after the first image; wait for two equal shots).
        def still_preview() -> tuple[np.ndarray] | None:
            """(screenshot,) once the preview region is the same in two shots 0.3 s apart."""
            a = crop(screen.shot(), preview)
            time.sleep(0.3)
            b = screen.shot()
            return (b,) if mad(a, crop(b, preview)) == 0 else None

        settled = _wait_for(still_preview, 20, 0)
        assert settled, "the preview never settled"
        before = settled[0]
        Image.fromarray(before).save(tmp_path / "before.png")
        shown = grey(crop(before, preview))
        assert shown.std() > 20, f"the preview region looks blank (grey std {shown.std():.1f})" + app_log()

        # 2. Drag Dir 1 with the mouse. Its value starts at 0, the middle of −3…+3, so the handle is at the centre.
        x, y = handle[0] + handle[2] // 2, handle[1] + handle[3] // 2
        distance = round(handle[2] * 0.4)
        screen.xdotool("mousemove", "--sync", x, y)
        time.sleep(0.2)
        screen.xdotool("mousedown", 1)
        for step in range(1, 9):
            time.sleep(0.05)
            screen.xdotool("mousemove", "--sync", x + distance * step // 8, y)
        time.sleep(0.1)
        screen.xdotool("mouseup", 1)
        screen.xdotool("mousemove", "--sync", window[0] + window[2] - 5, window[1] + window[3] - 5)  # out of the way

        # 3. Wait for the re-render: poll the preview region, then for it to settle.
        changed = _wait_for(lambda: mad(crop(screen.shot(), preview), crop(before, preview)) > PREVIEW_CHANGED, 20,
                            0.2)
        assert changed, "the preview did not change within 20 s of the drag" + app_log()
        settled = _wait_for(still_preview, 20, 0)
        assert settled, "the preview never settled after the drag"
        after = settled[0]
        Image.fromarray(after).save(tmp_path / "after.png")
        print(f"screenshots: {tmp_path / 'before.png'} {tmp_path / 'after.png'}")

        preview_diff = mad(crop(before, preview), crop(after, preview))
        menu_diff = mad(crop(before, menu), crop(after, menu))
        models_diff = mad(crop(before, models), crop(after, models))
        handle_diff = mad(crop(before, handle), crop(after, handle))
        print(f"grey mean abs diff: preview {preview_diff:.2f}, slider {handle_diff:.2f}, menu bar {menu_diff:.2f}, "
              f"Models dock {models_diff:.2f}")
        assert preview_diff > PREVIEW_CHANGED
        assert handle_diff > HANDLE_MOVED, "the slider handle did not move on screen"
        assert menu_diff < CONTROL_UNCHANGED, "the menu bar changed: more than the preview was redrawn"
        assert models_diff < CONTROL_UNCHANGED, "the Models dock changed: more than the preview was redrawn"
        assert _wait_for(lambda: "*" in screen.title(main), 5), \
            f"the title should mark the document modified: {screen.title(main)!r}"

        # 4. Quit with Ctrl+Q; the document is modified, so the app asks. Tab from the default Save to Discard, Space.
        screen.key(main, "ctrl+q")
        dialogs = _wait_for(lambda: screen.windows("^Unsaved Changes$"), 10)
        assert dialogs, "Ctrl+Q on a modified document did not ask about unsaved changes" + app_log()
        assert app.poll() is None, "the app quit without asking about unsaved changes"
        time.sleep(0.3)  # let the box take the focus and lay out its buttons
        screen.key(dialogs[0], "Tab", "space")
        try:
            code = app.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("the app did not exit within 15 s of Discard" + app_log())
        print(f"exited with {code} after {time.monotonic() - started:.1f} s in all")
        assert code == 0, f"exit code {code}" + app_log()
        assert "Traceback" not in log_err.read_text(errors="replace"), "the app printed a traceback" + app_log()
        autosave = tmp_path / "data" / "autosave"
        left = sorted(p.name for p in autosave.iterdir()) if autosave.is_dir() else []
        assert not left, f"a clean exit leaves no autosave or lock behind: {left}"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)


@pytest.mark.slow
def test_the_sound_model_shows_its_waveform_and_spectrogram_and_space_is_safe_without_a_device(xvfb, tmp_path):
    """The shipped sound model in the real window: the audio view replaces the canvas, draws a waveform (light blue
    on dark) over a coloured spectrogram, and with no sound device here Space (play) changes nothing and the app
    quits cleanly."""
    screen = Screen(xvfb)
    report = tmp_path / "geometry.json"
    log_err = tmp_path / "app.stderr"
    app, app_log = _start_app(xvfb, tmp_path, report, "--model", "one-shots")
    try:
        geo = _geometry(app, report, app_log)
        assert "audioPlot" in geo and "previewCanvas" not in geo, sorted(geo)  # the audio view, not the canvas
        ratio = float(geo.get("ratio", 1.0))
        x, y, w, h = (round(v * ratio) for v in geo["audioPlot"])
        shot = screen.shot(tmp_path / "sound.png")
        plot = shot[y:y + h, x:x + w].astype(np.int16)
        top, bottom = plot[: h // 3], plot[h // 2:]
        # the waveform: light blue strokes (blue well above red) in the upper part
        assert ((top[..., 2] - top[..., 0]) > 60).mean() > 0.01, "no waveform drawn" + app_log()
        # the spectrogram: magma colours (red above blue where it is loud) in the lower part
        assert ((bottom[..., 0] - bottom[..., 2]) > 40).mean() > 0.01, "no spectrogram drawn" + app_log()
        main = screen.windows("^Latent Studio")[0]
        screen.key(main, "space")  # play: there is no output device, so nothing happens, and nothing breaks
        time.sleep(0.5)
        assert app.poll() is None, "the app died on Space" + app_log()
        screen.key(main, "ctrl+q")
        assert app.wait(15) == 0, app_log()
        assert "Traceback" not in log_err.read_text(errors="replace"), app_log()
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)


@pytest.mark.slow
def test_typing_a_prompt_into_the_generated_field_renders_it_and_ctrl_z_takes_it_back(xvfb, tmp_path):
    """The GAN's prompt field is built from the family's parameter spec: real clicks and keys type a new prompt, the
    preview redraws it, and Ctrl+Z (the app's Undo, with the focus back on the window) restores the exact picture."""
    screen = Screen(xvfb)
    report = tmp_path / "geometry.json"
    log_err = tmp_path / "app.stderr"
    app, app_log = _start_app(xvfb, tmp_path, report, "--model", "glyph-gan")
    try:
        geo = _geometry(app, report, app_log)
        ratio = float(geo.get("ratio", 1.0))

        def rect(name: str) -> tuple[int, int, int, int]:
            assert name in geo, f"{name!r} missing from the geometry report: {sorted(geo)}"
            x, y, w, h = (round(v * ratio) for v in geo[name])
            return x, y, w, h

        field, canvas = rect("promptEdit"), rect("previewCanvas")
        main = screen.windows("^Latent Studio")[0]

        def settled_shot() -> np.ndarray:
            def still():
                a = screen.shot()
                time.sleep(0.3)
                b = screen.shot()
                return (b,) if mad(crop(a, canvas), crop(b, canvas)) == 0 else None

            got = _wait_for(still, 20, 0)
            assert got, "the preview never settled" + app_log()
            return got[0]

        before = settled_shot()
        Image.fromarray(before).save(tmp_path / "gan-before.png")
        # click into the prompt field, select its text and type over it with real key presses
        screen.xdotool("mousemove", "--sync", field[0] + field[2] // 2, field[1] + field[3] // 2)
        screen.xdotool("click", 1)
        time.sleep(0.2)
        screen.xdotool("key", "--delay", 50, "ctrl+a")
        screen.xdotool("type", "--delay", 80, "Hi")
        changed = _wait_for(lambda: mad(crop(screen.shot(), canvas), crop(before, canvas)) > PREVIEW_CHANGED, 20, 0.2)
        assert changed, "typing a prompt did not change the preview" + app_log()
        typed = settled_shot()
        Image.fromarray(typed).save(tmp_path / "gan-typed.png")
        assert _wait_for(lambda: "*" in screen.title(main), 5), "the title should mark the document modified"
        # focus back on the canvas (a click), then the app's Undo from the keyboard
        screen.xdotool("mousemove", "--sync", canvas[0] + 10, canvas[1] + 10)
        screen.xdotool("click", 1)
        time.sleep(0.2)
        screen.key(main, "ctrl+z")
        restored = _wait_for(lambda: mad(crop(screen.shot(), canvas), crop(before, canvas)) == 0, 20, 0.2)
        Image.fromarray(screen.shot()).save(tmp_path / "gan-undone.png")
        print(f"\nscreenshots: {tmp_path / 'gan-before.png'} {tmp_path / 'gan-typed.png'} {tmp_path / 'gan-undone.png'}")
        assert restored, "Ctrl+Z did not bring back the exact picture of the old prompt" + app_log()
        assert _wait_for(lambda: "*" not in screen.title(main), 5), "undone to the saved state: not modified"
        screen.key(main, "ctrl+q")
        assert app.wait(15) == 0, app_log()
        assert "Traceback" not in log_err.read_text(errors="replace"), app_log()
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)

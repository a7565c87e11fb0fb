"""The window's behaviour as a user meets it, on a real X server with real keys and wheel (tests/ui/xharness.py):

- undo / redo from the keyboard: Ctrl+Z, Ctrl+Shift+Z and Ctrl+Y, with the focus on the preview and on a panel, and
  no "Ambiguous shortcut overload" from Qt;
- the scroll wheel over a direction slider of the Latent panel, and over the Timeline's spin boxes, scrolls and edits
  nothing (the document's undo index and modified mark stay); a slider clicked first takes the wheel;
- Esc during a long diffusion render leaves the half-made picture dimmed with "Cancelled at step k/n" and the status
  bar saying so; a new render clears the mark; one progress bar shows while it renders.

The app's geometry report carries a small "state" (status message, canvas note, undo index, progress bars shown) so
nothing here reads text off the screen.
"""

from __future__ import annotations

import time

import pytest

from xharness import CONTROL_UNCHANGED, App, Screen, crop, grey, mad, wait_for, xdisplay  # noqa: F401 (a fixture)

SIZE = (1440, 900)


def _state(app: App) -> dict:
    return app.geometry(again=True)["state"]


def _wait_state(app: App, check, timeout: float = 30) -> dict:
    got = wait_for(lambda: (lambda s: s if check(s) else None)(_state(app)), timeout, 0.2)
    assert got, f"the app never reached the state asked for; last: {_state(app)}" + app.log()
    return got


def _in_view(app: App, name: str, dock_name: str, report: dict) -> bool:
    if name not in report:
        return False
    dock = app.rect(dock_name, report)
    x, y, w, h = app.rect(name, report)
    return dock[1] + 20 <= y and y + h <= dock[1] + dock[3] and y + h <= SIZE[1]


def _scroll_into_view(app: App, screen: Screen, name: str, dock_name: str, over: str) -> dict:
    """Wheel a notch at a time over widget `over` until `name` shows inside dock `dock_name`; the fresh report."""
    report = app.geometry(again=True)
    where = app.centre(over)
    for _ in range(20):
        if _in_view(app, name, dock_name, report):
            return report
        screen.wheel(*where, 1)
        report = app.geometry(again=True)
    pytest.fail(f"{name} never came into view in {dock_name}: {report.get(name)}, {report.get(dock_name)}")


@pytest.mark.slow
def test_undo_redo_keys_and_the_wheel_in_the_real_window(xdisplay, tmp_path):
    display = xdisplay(*SIZE)
    screen = Screen(display)
    app = App.start(display, tmp_path)  # the shipped default model (Glyph Styles) and its direction sliders
    try:
        app.geometry()
        window = app.main_window(screen)
        preview = app.rect("previewImage")

        def modified() -> bool:
            return screen.title(window).endswith("*")

        def press(keys: str, want_modified: bool) -> None:
            screen.key(window, keys)
            assert wait_for(lambda: modified() == want_modified, 15), \
                f"{keys}: the title is {screen.title(window)!r}" + app.log()

        # 1. Undo and redo by every key, focus on the preview
        screen.click(*app.centre("previewCanvas"))
        first = screen.settled(preview)
        press("ctrl+r", True)  # a new random seed: one undoable step
        second = screen.settled(preview)
        assert mad(crop(first, preview), crop(second, preview)) > CONTROL_UNCHANGED, "Ctrl+R changed nothing"
        press("ctrl+z", False)
        assert mad(crop(first, preview), crop(screen.settled(preview), preview)) <= CONTROL_UNCHANGED
        press("ctrl+shift+z", True)
        assert mad(crop(second, preview), crop(screen.settled(preview), preview)) <= CONTROL_UNCHANGED
        press("ctrl+z", False)
        press("ctrl+y", True)
        assert mad(crop(second, preview), crop(screen.settled(preview), preview)) <= CONTROL_UNCHANGED
        # … and with the focus on a panel (the model list)
        screen.click(*app.centre("modelDetails"))  # (a click on the model list would choose a model)
        assert _state(app)["focus"] == "modelDetails"
        press("ctrl+z", False)
        press("ctrl+shift+z", True)
        press("ctrl+z", False)
        press("ctrl+y", True)
        press("ctrl+z", False)
        assert "Ambiguous shortcut" not in app.stderr.read_text(errors="replace"), app.log()

        # 2. The wheel over an unfocused direction slider scrolls the Latent panel and edits nothing
        geo = app.geometry(again=True)
        state = geo["state"]
        slider = app.rect("slider_d1_handle", geo)
        screen.click(*app.centre("previewCanvas"))  # the focus is elsewhere
        screen.wheel(slider[0] + slider[2] // 2, slider[1] + slider[3] // 2, 4)
        time.sleep(1.0)  # (nothing should happen; give a wrong render time to show)
        after = app.geometry(again=True)
        assert after["state"]["undo_index"] == state["undo_index"] and not after["state"]["modified"], \
            f"the wheel edited the document: {state} → {after['state']}"
        moved = "slider_d1_handle" not in after or app.rect("slider_d1_handle", after)[1] != slider[1]
        assert moved, "the Latent panel did not scroll under the wheel" + app.log()
        # a slider clicked first (on its handle: no value change) takes the wheel
        dock = app.rect("dockLatent", after)
        shown = [name for name in after if name.startswith("slider_d") and name.endswith("_handle")
                 and dock[1] + 30 <= app.rect(name, after)[1] <= dock[1] + dock[3] - 40]  # in the panel's view
        assert shown, f"no direction slider in view in the Latent dock {dock}"
        handle = app.rect(shown[0], after)
        screen.click(handle[0] + handle[2] // 2, handle[1] + handle[3] // 2)
        focused = shown[0]  # (the QSlider is "slider_dN_handle"; "slider_dN" is its row)
        assert _wait_state(app, lambda s: s["focus"] == focused)["undo_index"] == state["undo_index"]
        screen.wheel(handle[0] + handle[2] // 2, handle[1] + handle[3] // 2, -1)
        _wait_state(app, lambda s: s["undo_index"] != state["undo_index"] and s["modified"])
        press("ctrl+z", False)

        # 3. The Timeline: a keyframe, then the wheel over its spin boxes edits nothing
        press("ctrl+k", True)  # a keyframe; the Timeline dock comes forward
        geo = app.geometry(again=True)
        state = geo["state"]
        screen.click(*app.centre("previewCanvas"))
        dock = app.rect("dockTimeline", geo)

        def in_view(name: str, report: dict) -> bool:
            x, y, w, h = app.rect(name, report)
            return name in report and dock[1] + 20 <= y and y + h <= dock[1] + dock[3] and y + h <= SIZE[1]

        # the wheel over the Timeline scrolls its controls into view (passing over its spin boxes as they come)
        where = app.centre("keyframeList")
        boxes: list[str] = []
        for _ in range(20):  # a notch at a time, until a spin box shows
            screen.wheel(*where, 1)
            geo = app.geometry(again=True)
            assert geo["state"]["undo_index"] == state["undo_index"], "scrolling the Timeline edited the document"
            boxes = [n for n in ("timelineFps", "keyframeDuration", "mappingGain0") if n in geo and in_view(n, geo)]
            if boxes:
                break
        screen.shot(tmp_path / "window-timeline.png")
        assert boxes, f"no Timeline spin box came into view in {dock}: " + str({n: geo.get(n) for n in
                                                                                 ("timelineFps", "keyframeDuration")})
        for name in boxes:
            box = app.rect(name, geo)
            before = crop(screen.shot(), box)
            screen.wheel(box[0] + box[2] // 2, box[1] + box[3] // 2, -3)
            time.sleep(0.5)
            now = app.geometry(again=True)
            assert now["state"]["undo_index"] == state["undo_index"], f"the wheel over {name} edited the document"
            assert not now["state"]["modified"] == (not state["modified"])
            if app.rect(name, now) == box:  # not scrolled away: it shows the same value
                assert mad(before, crop(screen.shot(), box)) <= CONTROL_UNCHANGED, f"{name} changed under the wheel"
        app.quit(screen)
    finally:
        app.kill()


@pytest.mark.slow
def test_escape_marks_a_cancelled_diffusion_render_in_the_real_window(xdisplay, tmp_path):
    display = xdisplay(*SIZE)
    screen = Screen(display)
    app = App.start(display, tmp_path, "--model", "glyph-diffusion")
    try:
        geo = app.geometry()
        window = app.main_window(screen)
        preview = app.rect("previewImage")
        _wait_state(app, lambda s: s["progress_bars"] == 0, 60)  # the first render finished
        finished = crop(screen.settled(preview), preview)
        # many steps, so Esc lands mid-way: type them into the Steps box (the wheel brings it into view first)
        geo = _scroll_into_view(app, screen, "stepsSpin", "dockConditions", "promptHint")
        steps = app.rect("stepsSpin", geo)
        screen.click(steps[0] + steps[2] // 2, steps[1] + steps[3] // 2)
        screen.key(window, "ctrl+a")
        screen.xdotool("type", "--delay", 50, "400")
        screen.key(window, "Return")
        # while it renders: one progress bar (the status bar's), then Esc
        running = _wait_state(app, lambda s: s["progress_bars"] >= 1, 60)
        assert running["progress_bars"] == 1, running
        time.sleep(1.0)
        screen.click(*app.centre("previewCanvas"))
        screen.key(window, "Escape")
        state = _wait_state(app, lambda s: s["progress_bars"] == 0 and s["canvas_note"], 30)
        note = state["canvas_note"]
        assert note.startswith("Cancelled at step ") and note.endswith("/400"), note
        assert state["status"].startswith(note), state
        shot = screen.settled(preview)
        screen.shot(tmp_path / "cancelled.png")
        dimmed = crop(shot, preview)
        contrast = lambda pixels: float(grey(pixels).std())  # noqa: E731
        assert contrast(dimmed) < 0.6 * contrast(finished), (contrast(dimmed), contrast(finished))
        # a new render (undo the steps: back to 25) clears the mark
        screen.key(window, "ctrl+z")
        state = _wait_state(app, lambda s: not s["canvas_note"] and s["progress_bars"] == 0, 60)
        assert not state["status"].startswith("Cancelled"), state
        again = crop(screen.settled(preview), preview)
        assert mad(again, finished) <= CONTROL_UNCHANGED, "the finished picture did not come back"
        app.quit(screen)
    finally:
        app.kill()


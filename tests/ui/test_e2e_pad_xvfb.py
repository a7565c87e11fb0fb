"""The Pad and Compare in the real window (tests/ui/xharness.py), 1280 × 720, on the shipped Glyph GAN (it has
principal directions): the Pad's tab raised with a real click, a real mouse drag on the pad moves d0 and d1 as one
undoable step and changes the preview; Seed corners, picked with real keys, blend the corner seeds' w on a click;
then Ctrl+Shift+P pins that render (corner seed 3), Ctrl+Z goes back to seed 0, C (in the preview) opens Compare,
and the divider dragged with the real mouse shows the pinned picture left of it and the current one right of it.
Screenshots land in the test's folder (their paths are printed: pytest -s)."""

from __future__ import annotations

import time

import pytest

from studio.ui.compare import LABEL_BAND, fit_box

from xharness import PREVIEW_CHANGED, App, Screen, crop, mad, wait_for, xdisplay  # noqa: F401 (a fixture)

SIZE = (1280, 720)
MARGIN = 22  # studio.ui.panels.pad.MARGIN: the pad's square sits inside it
EQUAL = 0.5  # grey levels: painting is deterministic, so one picture painted twice differs by 0
DIFFERENT = 1.0  # the two glyph styles compared (seeds 0 and 3) differ by far more over the picture's rows


def drag(screen: Screen, points) -> None:
    """A real drag with the left button (XTEST): press at the first point, move through the others, release."""
    screen.move(*points[0])
    screen.xdotool("mousedown", 1)
    for x, y in points[1:]:
        time.sleep(0.05)
        screen.move(x, y)
    time.sleep(0.1)
    screen.xdotool("mouseup", 1)


@pytest.mark.slow
def test_drag_the_pad_then_compare_with_the_pinned_render(xdisplay, tmp_path):
    display = xdisplay(*SIZE)
    screen = Screen(display)
    app = App.start(display, tmp_path, "--model", "glyph-gan")
    try:
        geo = app.geometry()
        window = app.main_window(screen)
        assert geo["model"] == "glyph-gan", geo["model"]
        assert "Pad" in geo["dockTabs"], f"no Pad tab: {sorted(geo['dockTabs'])}"
        tx, ty, tw, th = geo["dockTabs"]["Pad"]
        screen.click(tx + tw // 2, ty + th // 2)
        geo = app.geometry(again=True)
        assert "latentPad" in geo, "the Pad did not come forward" + app.log()
        start_index, start_params = geo["state"]["undo_index"], geo["state"]["params"]
        assert "d0" not in start_params and "d1" not in start_params, start_params
        preview = app.rect("previewImage")
        before = crop(screen.settled(preview), preview)

        # --- a real drag on the pad: centre → up and right, half way to the edges -------------------------------
        x, y, w, h = app.rect("latentPad")
        side = min(w, h) - 2 * MARGIN
        cx, cy = x + w // 2, y + h // 2
        path = [(cx + round(f * side / 4), cy - round(f * side / 4)) for f in (0, 0.25, 0.5, 0.75, 1.0)]
        drag(screen, path)
        changed = wait_for(lambda: mad(crop(screen.shot(), preview), before) > PREVIEW_CHANGED, 30)
        assert changed, "the preview did not change while dragging the pad" + app.log()

        def moved():  # the report of a request at x 0.5 (d0: half of the slider's ±3) and y 0.5 (up), once there
            params = app.geometry(again=True)["state"]["params"]
            return all(abs(float(params.get(name, 0.0)) - 1.5) < 0.1 for name in ("d0", "d1"))

        assert wait_for(moved, 20, 0.2), f"the pad did not set d0, d1: {app.geo['state']['params']}" + app.log()
        geo = app.geo
        assert geo["state"]["undo_index"] == start_index + 1, "the drag was not one undoable step"
        screen.settled(preview)
        pad_shot = tmp_path / "pad.png"
        screen.shot(pad_shot)
        print("screenshot:", pad_shot)

        # --- seed corners: the mode picked with real keys, a click on the top-right corner (seed s11) -------------
        directions = crop(screen.shot(), preview)
        screen.click(*app.centre("padMode"))
        time.sleep(0.5)  # the drop-down opens
        screen.key(window, "Down", "Return")
        corner = (cx + side // 2 - 2, cy - side // 2 + 2)

        def blended():  # the corners are computed on the worker first: the click lands once they are in
            state = app.geometry(again=True)["state"]
            return state["latent_values"] == 128  # the Glyph GAN's w: the blend of the corners' w
        screen.click(*corner)
        assert wait_for(blended, 30, 0.3), f"no blended latent: {app.geo['state']}" + app.log()
        assert wait_for(lambda: mad(crop(screen.shot(), preview), directions) > PREVIEW_CHANGED, 30), \
            "the seed pad did not change the preview" + app.log()
        geo = app.geo
        assert geo["state"]["undo_index"] == start_index + 2, "the click was not one more step"
        corners_shot = tmp_path / "pad-seeds.png"
        screen.settled(preview)
        screen.shot(corners_shot)
        print("screenshot:", corners_shot)

        # --- pin, another seed, compare -----------------------------------------------------------------------
        # the pinned picture is corner seed 3's style; Ctrl+Z takes the latent back to seed 0's, the picture the
        # directions drag showed (a random seed could draw a style too close to tell apart)
        screen.key(window, "ctrl+shift+p")
        screen.key(window, "ctrl+z")
        assert wait_for(lambda: mad(crop(screen.shot(), preview), directions) < EQUAL, 30), \
            "Ctrl+Z did not bring back seed 0's picture" + app.log()
        screen.click(*app.centre("previewCanvas"))
        screen.key(window, "c")
        geo = app.geometry(again=True)
        assert "compareArea" in geo, "C did not open Compare" + app.log()
        assert geo["state"]["latent_values"] == 0 and geo["state"]["undo_index"] == start_index + 1
        ax, ay, aw, ah = app.rect("compareArea")
        # the picture fitted in the compare area below its labels, at the preview's proportions
        _, by, _, bh = fit_box((ax, ay + LABEL_BAND, aw, ah - LABEL_BAND), (preview[2], preview[3]))
        band = (ax, round(by + bh / 5), aw, round(bh * 3 / 5))  # the picture's middle rows

        def settled_band():
            return crop(screen.settled(band), band)

        drag(screen, [(ax + aw // 2, ay + ah // 2), (ax + aw - 3, ay + ah // 2)])  # divider to the right edge
        all_pinned = settled_band()
        drag(screen, [(ax + aw // 2, ay + ah // 2), (ax + 3, ay + ah // 2)])  # … and to the left edge
        all_current = settled_band()
        divider = aw * 2 // 5
        drag(screen, [(ax + aw // 2, ay + ah // 2), (ax + aw // 3, ay + ah // 2), (ax + divider, ay + ah // 2)])
        split = settled_band()
        left, right = (slice(0, divider - 8), slice(divider + 8, aw))
        assert mad(all_pinned[:, left], all_current[:, left]) > DIFFERENT  # the two renders differ on both sides
        assert mad(all_pinned[:, right], all_current[:, right]) > DIFFERENT
        assert mad(split[:, left], all_pinned[:, left]) < EQUAL, "left of the divider is not the pinned render"
        assert mad(split[:, right], all_current[:, right]) < EQUAL, "right of the divider is not the current render"
        compare_shot = tmp_path / "compare.png"
        screen.shot(compare_shot)
        print("screenshot:", compare_shot)
        app.quit(screen)
    finally:
        app.kill()

"""The gallery in the real window at 1280 × 720 (tests/ui/xharness.py): two renders queued with real keys land in the
Gallery dock, opened by clicking its tab; a real click picks a thumbnail, Space opens the viewer (the render large),
a real 4 rates it in the index, → walks to the other render, Esc closes; Ctrl+click picks both and *Compare* shows them
side by side; tags typed in the dock reach the index; a rubber band dragged with the mouse picks both; a right-click
opens the renders' menu. The screenshots' paths are printed (pytest -s)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from xharness import App, Screen, crop, wait_for, xdisplay  # noqa: F401 (a fixture)

SIZE = (1280, 720)
THUMB_CELL = (96 + 16, 96 + 24)  # studio.ui.panels.gallery: THUMB and the grid around it


def _renders(tmp: Path) -> list[Path]:
    return sorted((tmp / "data" / "renders").rglob("*.png"))


def _rows(tmp: Path) -> list[tuple]:
    """(seed, rating, tags) of the index's items, newest first, read as a third-party tool would."""
    with sqlite3.connect(tmp / "data" / "gallery" / "index.sqlite") as db:
        return db.execute("SELECT seed, rating, tags FROM items ORDER BY created DESC, id DESC").fetchall()


def _cell(app: App, k: int, geo: dict) -> tuple[int, int]:
    """The middle of thumbnail k (0 = the newest) on the gallery's grid, in screen pixels (a picture is centred in
    its cell's square)."""
    x, y, w, _ = app.rect("galleryView", geo)
    ratio = geo.get("ratio", 1.0)
    cw, ch = int(THUMB_CELL[0] * ratio), int(THUMB_CELL[1] * ratio)
    per_row = max(1, w // cw)
    return x + (k % per_row) * cw + cw // 2, y + (k // per_row) * ch + int(50 * ratio)


@pytest.mark.slow
def test_gallery_view_rate_walk_compare_and_tag_with_real_input(xdisplay, tmp_path):
    display = xdisplay(*SIZE)
    screen = Screen(display)
    app = App.start(display, tmp_path)  # the shipped default model (Glyph Styles)
    try:
        app.geometry()
        window = app.main_window(screen)
        screen.click(*app.centre("promptEdit"))
        screen.key(window, "ctrl+Return")
        assert wait_for(lambda: len(_renders(tmp_path)) == 1, 60), "Ctrl+Enter wrote nothing" + app.log()
        screen.key(window, "ctrl+r")  # a random seed: the second render differs
        screen.key(window, "ctrl+Return")
        assert wait_for(lambda: len(_renders(tmp_path)) == 2, 60), "the second render" + app.log()
        assert wait_for(lambda: len(_rows(tmp_path)) == 2, 30), "the renders are not in the index" + app.log()
        geo = app.geometry(again=True)
        x, y, w, h = geo["dockTabs"]["Gallery"]
        ratio = geo.get("ratio", 1.0)
        screen.click(int((x + w / 2) * ratio), int((y + h / 2) * ratio))
        geo = wait_for(lambda: (g := app.geometry(again=True)) and "galleryView" in g and g, 30)
        assert geo, "the Gallery did not open from its tab" + app.log()
        # the dock grows to its height as it opens: its view's place, once two reports agree
        geo = wait_for(lambda: (a := app.geometry(again=True)) and (b := app.geometry(again=True))
                       and a.get("galleryView") == b.get("galleryView") and b, 30)
        screen.settled(app.rect("galleryView", geo))
        screen.click(*_cell(app, 0, geo))
        screen.key(window, "space")
        viewers = wait_for(lambda: screen.windows("^Gallery — "), 20)
        assert viewers, "Space did not open the viewer" + app.log()
        viewer = viewers[0]
        geo = wait_for(lambda: (g := app.geometry(again=True)) and "viewerLeftCanvas" in g and g, 30)
        assert geo and "viewerRightCanvas" not in geo, "the viewer shows one render" + app.log()
        canvas = app.rect("viewerLeftCanvas", geo)
        shot = tmp_path / "viewer.png"
        pixels = crop(screen.settled(canvas), canvas)
        screen.shot(shot)
        print("screenshot:", shot)
        assert pixels.std() > 10, "the viewer shows no picture"  # glyphs on a plain ground, not a blank box
        newest = _rows(tmp_path)[0][0]
        screen.key(viewer, "4")
        assert wait_for(lambda: _rows(tmp_path)[0][1] == 4, 10), ("4 did not rate the render", _rows(tmp_path))
        screen.key(viewer, "Right", "2")  # the older render: two stars
        assert wait_for(lambda: _rows(tmp_path)[1][1] == 2, 10), ("→ then 2", _rows(tmp_path))
        assert _rows(tmp_path)[0][:2] == (newest, 4)
        screen.key(viewer, "Escape")
        assert wait_for(lambda: not screen.windows("^Gallery — "), 10), "Esc did not close the viewer"
        # both picked (a click, a Ctrl+click): Compare shows them side by side
        geo = app.geometry(again=True)
        screen.click(*_cell(app, 0, geo))
        screen.xdotool("keydown", "ctrl")
        screen.click(*_cell(app, 1, geo))
        screen.xdotool("keyup", "ctrl")
        screen.click(*app.centre("galleryCompare"))
        assert wait_for(lambda: screen.windows("^Gallery — .* and "), 20), "Compare did not open" + app.log()
        geo = wait_for(lambda: (g := app.geometry(again=True)) and "viewerRightCanvas" in g and g, 30)
        assert geo, "the viewer does not show two renders" + app.log()
        left, right = app.rect("viewerLeftCanvas", geo), app.rect("viewerRightCanvas", geo)
        assert left[0] + left[2] <= right[0] + 2 and abs(left[1] - right[1]) <= 2  # side by side
        shot = tmp_path / "compare.png"
        screen.settled(right)
        screen.shot(shot)
        print("screenshot:", shot)
        screen.key(screen.windows("^Gallery — ")[0], "Escape")
        assert wait_for(lambda: not screen.windows("^Gallery — "), 10), "Esc did not close the viewer"
        # tags typed for the two picked renders reach the index; X in the list rejects
        screen.click(*app.centre("galleryTags"))
        screen.xdotool("type", "--delay", "40", "keeper")
        screen.key(window, "Return")
        assert wait_for(lambda: [r[2] for r in _rows(tmp_path)] == ["keeper", "keeper"], 10), _rows(tmp_path)
        screen.click(*_cell(app, 1, geo))
        screen.key(window, "x")
        assert wait_for(lambda: _rows(tmp_path)[1][1] == -1, 10), ("X in the list", _rows(tmp_path))
        # a rubber band dragged with the real mouse from the empty cells right of the renders picks both: drawn
        # while the button is held, and Compare opens on the two
        x, y, w, h = app.rect("galleryView", geo)
        ratio = geo.get("ratio", 1.0)
        cw, ch = int(THUMB_CELL[0] * ratio), int(THUMB_CELL[1] * ratio)
        start, end = (x + 3 * cw + cw // 2, y + ch - int(12 * ratio)), _cell(app, 0, geo)
        empty = (x + 2 * cw + cw // 2, y + int(80 * ratio))  # inside the band; the third cell holds no render
        before = screen.shot()[empty[1], empty[0]].astype(int)
        screen.move(*start)
        screen.xdotool("mousedown", 1)
        screen.move((start[0] + end[0]) // 2, (start[1] + end[1]) // 2)
        screen.move(*end)
        time.sleep(0.3)
        shot = tmp_path / "band.png"
        during = screen.shot(shot)[empty[1], empty[0]].astype(int)
        print("screenshot:", shot)
        screen.xdotool("mouseup", 1)
        assert abs(during - before).sum() > 20, ("no rubber band drawn", before, during)
        screen.click(*app.centre("galleryCompare"))
        assert wait_for(lambda: screen.windows("^Gallery — .* and "), 20), "the band did not pick both" + app.log()
        screen.key(screen.windows("^Gallery — ")[0], "Escape")
        assert wait_for(lambda: not screen.windows("^Gallery — "), 10), "Esc did not close the viewer"
        # a right-click on a picked render opens the menu for the picked renders beside the pointer; Esc closes it
        cell = _cell(app, 0, geo)

        def beside(pixels):  # right of the pointer, above it and below it (a menu near the screen's foot opens up)
            return [pixels[y0:y1, cell[0] + 20:cell[0] + 120].astype(int)
                    for y0, y1 in ((cell[1] - 80, cell[1] - 20), (cell[1] + 20, cell[1] + 80))]

        before = beside(screen.shot())
        screen.click(*cell, button=3)
        time.sleep(0.5)
        shot = tmp_path / "menu.png"
        after = beside(screen.shot(shot))
        print("screenshot:", shot)
        assert max(abs(a - b).mean() for a, b in zip(after, before)) > 5, "no menu beside the pointer"
        screen.key(window, "Escape")
        app.quit(screen)
    finally:
        app.kill()

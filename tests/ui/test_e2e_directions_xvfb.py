"""Named directions in the real window (tests/ui/xharness.py), on the shipped Glyph GAN at 1280 × 720: a real
double-click on the first direction's label opens "Rename Direction", the name typed there replaces "Dir 1" on the
slider; "Save…" in the directions group saves the set (typed name) into the user data folder; after a restart the
slider shows the name again — the label's pixels are those of the renamed label, not of "Dir 1". The screenshots'
paths are printed (pytest -s) for looking at."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from studio.latent.direction_sets import read_set

from xharness import CONTROL_UNCHANGED, App, Screen, crop, mad, wait_for, xdisplay  # noqa: F401 (a fixture)

SIZE = (1280, 720)


def _dialog(screen: Screen, title: str, app: App) -> int:
    found = wait_for(lambda: screen.windows(f"^{title}$"), 20)
    assert found, f"no {title!r} dialog" + app.log()
    time.sleep(0.3)  # its line edit takes the focus once shown
    return found[0]


def _type_into(screen: Screen, window: int, text: str, shot: Path | None = None) -> None:
    screen.key(window, "ctrl+a")
    screen.xdotool("type", "--delay", 60, text)
    if shot is not None:
        time.sleep(0.3)
        screen.shot(shot)
    screen.key(window, "Return")


def _start(display: str, tmp: Path) -> App:
    (tmp / "geometry.json").unlink(missing_ok=True)  # a report of the previous run is not this one's
    return App.start(display, tmp, "--model", "glyph-gan")


@pytest.mark.slow
def test_rename_a_direction_save_the_set_and_see_the_name_after_a_restart(xdisplay, tmp_path):
    display = xdisplay(*SIZE)
    screen = Screen(display)
    app = _start(display, tmp_path)
    try:
        geo = app.geometry()
        assert geo.get("model") == "glyph-gan", geo.get("model")
        for name in ("directionSetBar", "directionSetCombo", "directionSetSave", "caption_d0", "slider_d0"):
            assert name in geo, f"{name} is not visible at 1280 × 720" + app.log()
        main = app.main_window(screen)
        label = app.rect("caption_d0")
        before = crop(screen.settled(label), label)

        x, y = app.centre("caption_d0")
        screen.move(x, y)
        time.sleep(0.2)
        screen.xdotool("click", "--repeat", 2, "--delay", 80, 1)  # a real double-click
        dialog_shot = tmp_path / "directions-rename.png"
        _type_into(screen, _dialog(screen, "Rename Direction", app), "Bold", dialog_shot)
        renamed = wait_for(lambda: (g := app.geometry(again=True))["state"]["undo_index"] > geo["state"]["undo_index"]
                           and g, 20, 0.3)
        assert renamed, "the rename made no undo step" + app.log()
        label = app.rect("caption_d0", renamed)
        after = crop(screen.settled(label), label)
        assert before.shape != after.shape or mad(before, after) > CONTROL_UNCHANGED, "the label did not change"

        screen.click(*app.centre("directionSetSave"))
        _type_into(screen, _dialog(screen, "Save Direction Set", app), "Styles")
        saved = tmp_path / "data" / "directions" / "glyph-gan" / "Styles.lsdirs"
        assert wait_for(saved.exists, 20), "Save… wrote no set" + app.log()
        stored = read_set(saved)
        assert stored.model_id == "glyph-gan" and stored.find("Bold").index == 0
        assert stored.find("Bold").vector is not None and stored.dimension == 128
        named = tmp_path / "directions-named.png"
        screen.shot(named)
        app.quit(screen)  # the rename was a step of the document: Discard when asked

        app = _start(display, tmp_path)
        again = app.geometry()
        assert again.get("model") == "glyph-gan"
        label_again = app.rect("caption_d0", again)
        shown = crop(screen.settled(label_again), label_again)
        assert shown.shape == after.shape and mad(shown, after) <= CONTROL_UNCHANGED, \
            "after a restart the first direction's label is not the renamed one" + app.log()
        restarted = tmp_path / "directions-restarted.png"
        screen.shot(restarted)
        print("screenshots:", dialog_shot, named, restarted)
        app.quit(screen)
    finally:
        app.kill()

"""The timeline's track in the real window (tests/ui/xharness.py) at 1280×720 on the shipped glyph model: three
keyframes added with Ctrl+K and the Add Keyframe button (the seed drawn anew between them with Ctrl+R), the track
fully in view in the Timeline dock, a keyframe dragged with the real mouse to retime it, Play moving the playhead
and changing the preview, I / O typed at the track setting the in and out points, a sound chosen with Sound… (Qt's
file dialog) and a mapping added: the waveform and the mapping's curve under the track. The screenshots' paths are
printed (pytest -s) for looking at; SHOTS=folder keeps copies there."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xharness import PREVIEW_CHANGED, App, Screen, crop, mad, wait_for, xdisplay  # noqa: F401 (a fixture)

SIZE = (1280, 720)


def _timeline(app: App) -> dict:
    return app.geometry(again=True)["state"]["timeline"]


def _keep(path: Path) -> None:
    folder = os.environ.get("SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


@pytest.mark.slow
def test_add_drag_play_and_set_in_out_on_the_track(xdisplay, tmp_path):
    display = xdisplay(*SIZE)
    screen = Screen(display)
    app = App.start(display, tmp_path)  # the shipped default model (Glyph Styles)
    try:
        app.geometry()
        window = app.main_window(screen)
        screen.click(*app.centre("previewCanvas"))
        screen.key(window, "ctrl+k")  # the first keyframe; the Timeline dock comes forward
        assert wait_for(lambda: len(_timeline(app)["starts"]) == 1, 30), "Ctrl+K added no keyframe" + app.log()
        for count in (2, 3):
            screen.key(window, "ctrl+r")  # another seed, so that the keyframes differ
            time.sleep(0.3)
            screen.click(*app.centre("addKeyframe"))
            assert wait_for(lambda: len(_timeline(app)["starts"]) == count, 30), "Add Keyframe added none" + app.log()
        geo = app.geometry(again=True)
        state = geo["state"]["timeline"]
        assert state["starts"] == [0.0, 2.0, 4.0] and state["playhead"] == 4.0, state
        # the track, its bar and the Play button: in the dock and on the screen, no scrolling needed
        dock, track = app.rect("dockTimeline", geo), app.rect("timelineTrack", geo)
        for name in ("timelineTrack", "timelinePlay", "addKeyframe", "exportVideo"):
            x, y, w, h = app.rect(name, geo)
            assert dock[1] <= y and y + h <= dock[1] + dock[3] and y + h <= SIZE[1] and x + w <= SIZE[0], \
                f"{name} {x, y, w, h} is not fully in the Timeline dock {dock}"
        assert wait_for(lambda: _timeline(app)["thumbs_ready"] == 3, 30), "no keyframe thumbnails" + app.log()

        # drag keyframe 2 (at 2 s) by 1 s to the right with the real mouse
        kx, ky, kw, kh = _timeline(app)["keyframes"][1]
        scale = state["scale"]
        x0, y0 = track[0] + kx + 8, track[1] + ky + kh // 2
        screen.move(x0, y0)
        screen.xdotool("mousedown", 1)
        for step in range(1, 11):
            screen.xdotool("mousemove", "--sync", x0 + round(scale * step / 10), y0)
            time.sleep(0.03)
        screen.xdotool("mouseup", 1)
        assert wait_for(lambda: abs(_timeline(app)["starts"][1] - 3.0) <= 0.1, 10), _timeline(app)
        starts = _timeline(app)["starts"]
        assert starts[0] == 0.0 and starts[2] == 4.0, starts  # the others kept their times
        keys = session_durations(starts)
        assert keys[0] == pytest.approx(3.0, abs=0.1) and keys[1] == pytest.approx(1.0, abs=0.1)
        dragged = tmp_path / "timeline-dragged.png"
        screen.shot(dragged)
        _keep(dragged)

        # click the ruler near the start, then Play: the playhead moves and the preview changes
        screen.click(track[0] + round(state["x0"]) + 2, track[1] + 10)
        image = app.rect("previewImage", geo)
        before = crop(screen.shot(), image)
        screen.click(*app.centre("timelineLoopPlay"))  # round and round until stopped
        screen.click(*app.centre("timelinePlay"))
        assert wait_for(lambda: _timeline(app)["playhead"] > 1.0, 20), "the playhead did not move" + app.log()
        changed = wait_for(lambda: mad(before, crop(screen.shot(), image)) > PREVIEW_CHANGED, 20)
        assert changed, "the preview did not change while playing"
        playing = tmp_path / "timeline-playing.png"
        screen.shot(playing)
        _keep(playing)
        state = _timeline(app)
        assert state["shown"] >= 2 and state["status"].startswith("playing 24 fps"), state
        screen.click(*app.centre("timelinePlay"))  # Stop
        assert wait_for(lambda: not _timeline(app)["playing"], 10)

        # in and out points: click the ruler, type I; click later, type O (the track has the focus)
        screen.click(track[0] + round(state["x0"] + 1.0 * scale), track[1] + 10)
        screen.key(window, "i")
        screen.click(track[0] + round(state["x0"] + 3.5 * scale), track[1] + 10)
        screen.key(window, "o")
        assert wait_for(lambda: _timeline(app)["in"] is not None and _timeline(app)["out"] is not None, 10), \
            _timeline(app)
        state = _timeline(app)
        assert state["in"] == pytest.approx(1.0, abs=0.05) and state["out"] == pytest.approx(3.5, abs=0.05)

        # a sound through Sound… and Qt's file dialog, and a mapping: the waveform and its curve under the track
        wav = tmp_path / "beat.wav"
        rate = 22050
        t = np.arange(5 * rate) / rate
        sf.write(str(wav), (0.5 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32),
                 rate)
        _scroll_to(app, screen, "timelineSound", dock)  # below the track: the wheel scrolls the dock to it
        screen.click(*app.centre("timelineSound"))
        dialogs = wait_for(lambda: screen.windows("^Timeline Sound$"), 20)
        assert dialogs, "Sound… showed no file dialog" + app.log()
        time.sleep(0.5)
        screen.xdotool("type", "--delay", 20, str(wav))
        screen.xdotool("key", "Return")
        assert wait_for(lambda: _timeline(app)["waveform"], 20), "no waveform under the track" + app.log()
        _scroll_to(app, screen, "addMapping", dock)
        screen.click(*app.centre("addMapping"))
        assert wait_for(lambda: _timeline(app)["curves"] == 1, 20), "no mapping curve under the track" + app.log()
        top = None
        for _ in range(10):  # back up to the top of the dock: until the track stops moving
            screen.wheel(dock[0] + dock[2] - 30, dock[1] + dock[3] - 30, -3)
            now = app.rect("timelineTrack", app.geometry(again=True))
            if now == top:
                break
            top = now
        assert top is not None and top[1] >= track[1], f"the track {top} did not scroll back to {track}"
        shot = tmp_path / "timeline.png"
        screen.shot(shot)
        _keep(shot)
        print("screenshots:", dragged, playing, shot)
        app.quit(screen)
    finally:
        app.kill()


def _scroll_to(app: App, screen: Screen, name: str, dock: tuple[int, int, int, int]) -> None:
    """Wheel the Timeline dock down until widget `name` is wholly in it (over its right edge: no value widget)."""
    for _ in range(12):
        geo = app.geometry(again=True)
        if name in geo:
            x, y, w, h = app.rect(name, geo)
            if dock[1] <= y and y + h <= dock[1] + dock[3]:
                return
        screen.wheel(dock[0] + dock[2] - 30, dock[1] + dock[3] - 30, 2)
    raise AssertionError(f"{name} never scrolled into the Timeline dock {dock}")


def session_durations(starts: list[float]) -> list[float]:
    return [b - a for a, b in zip(starts, starts[1:])]

"""The Timeline's track (studio.ui.panels.timeline_track) in the panel, on the fake engine (offscreen): the playhead
follows a click on the ruler and previews that frame, a dragged keyframe retimes as one undo step, the wheel zooms
around the pointer, I / O set the in and out points, Add Keyframe goes in at the playhead, Play moves the playhead
and counts the frames shown, thumbnails and the sound's waveform arrive without blocking."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QWheelEvent

from studio.ui.panels.timeline import TimelinePanel
from studio.ui.panels.timeline_track import RULER_H, TRACK_TOP, THUMB_H, tick_step, time_label


@pytest.fixture
def panel(qtbot, session):
    widget = TimelinePanel(session)
    widget.resize(900, 420)
    widget.show()
    qtbot.addWidget(widget)
    qtbot.waitExposed(widget)
    return widget


def add(qtbot, session, panel, seed: int) -> None:
    session.change("Seed", seed=seed, latent=None)
    with qtbot.waitSignal(session.timeline_changed, timeout=5000):
        panel.add_current.click()


@pytest.fixture
def three_keys(qtbot, session, panel):
    for seed in (3, 5, 7):  # Add, Add, Add: the playhead follows the end, keyframes at 0, 2 and 4 s
        add(qtbot, session, panel, seed)
    return panel


def test_add_add_add_lines_keyframes_up_and_the_track_shows_them(qtbot, session, three_keys):
    track = three_keys.track
    assert session.timeline.starts == [0.0, 2.0, 4.0] and track.playhead == 4.0
    assert [track.thumb_rect(i).left() for i in range(3)] == [track.x_of(t) for t in (0.0, 2.0, 4.0)]
    qtbot.waitUntil(lambda: len(track.thumbs) == 3, timeout=5000)  # rendered on the export lane, one at a time
    assert all(isinstance(image, QImage) and image.height() == 2 * THUMB_H for image in track.thumbs.values())


def test_a_click_on_the_ruler_moves_the_playhead_and_previews_that_frame(qtbot, session, engine, three_keys):
    track = three_keys.track
    request, steps = session.request, session.undo.count()
    x = round(track.x_of(1.5))
    qtbot.mouseClick(track, Qt.MouseButton.LeftButton, pos=QPoint(x, RULER_H // 2))
    assert track.playhead == pytest.approx(1.5, abs=1 / 24)
    job = engine.submitted[-1]
    assert job.lane == "preview" and job.request == session.timeline.request_at(track.playhead)
    assert three_keys.scrubber.value() == round(track.playhead * 24)
    assert three_keys.time.text().startswith(f"{track.playhead:.2f} s / 4.00 s")
    assert session.request == request and session.undo.count() == steps  # scrubbing edits nothing


def test_add_keyframe_at_the_playhead_splits_the_segment(qtbot, session, three_keys):
    track = three_keys.track
    qtbot.mouseClick(track, Qt.MouseButton.LeftButton, pos=QPoint(round(track.x_of(3.0)), RULER_H // 2))
    add(qtbot, session, three_keys, 9)
    assert session.timeline.starts == pytest.approx([0.0, 2.0, 3.0, 4.0])
    assert session.core.undo.undo_text.startswith("Add keyframe at 3.00 s") and track.playhead == pytest.approx(3.0)


def test_dragging_a_keyframe_retimes_it_in_one_undo_step(qtbot, session, three_keys):
    track = three_keys.track
    steps = session.undo.count()
    rect = track.thumb_rect(1)
    start = QPoint(round(rect.left() + 6), round(rect.center().y()))
    qtbot.mousePress(track, Qt.MouseButton.LeftButton, pos=start)
    assert three_keys.keyframes.currentRow() == 1  # pressing a keyframe selects it
    for dx in (10, 25, 40, round(track.x_of(2.5) - track.x_of(2.0))):
        qtbot.mouseMove(track, QPoint(start.x() + dx, start.y()))
    qtbot.mouseRelease(track, Qt.MouseButton.LeftButton, pos=QPoint(start.x() + 40, start.y()))
    assert session.timeline.starts == pytest.approx([0.0, 2.5, 4.0], abs=1 / 24)  # the others kept their times
    assert session.undo.count() == steps + 1 and session.core.undo.undo_text == "Retime keyframe"
    session.undo.undo()
    assert session.timeline.starts == [0.0, 2.0, 4.0]
    # far past its neighbour: it stops short of it
    rect = track.thumb_rect(1)
    start = QPoint(round(rect.left() + 6), round(rect.center().y()))
    qtbot.mousePress(track, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(track, QPoint(start.x() + 20, start.y()))
    qtbot.mouseMove(track, QPoint(track.width() - 2, start.y()))
    qtbot.mouseRelease(track, Qt.MouseButton.LeftButton, pos=QPoint(track.width() - 2, start.y()))
    starts = session.timeline.starts
    assert 3.9 < starts[1] < 4.0 and starts[2] == 4.0


def test_the_first_keyframe_does_not_move(qtbot, session, three_keys):
    track = three_keys.track
    steps = session.undo.count()
    start = QPoint(round(track.thumb_rect(0).left() + 4), round(track.thumb_rect(0).center().y()))
    qtbot.mousePress(track, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(track, QPoint(start.x() + 60, start.y()))
    qtbot.mouseRelease(track, Qt.MouseButton.LeftButton, pos=QPoint(start.x() + 60, start.y()))
    assert session.timeline.starts == [0.0, 2.0, 4.0] and session.undo.count() == steps


def wheel(widget, x: float, dy: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    event = QWheelEvent(QPointF(x, RULER_H + 10), QPointF(widget.mapToGlobal(QPoint(int(x), RULER_H + 10))),
                        QPoint(0, 0), QPoint(0, dy), Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase,
                        False)
    widget.wheelEvent(event)


def test_the_wheel_zooms_around_the_pointer_and_shift_scrolls(three_keys):
    track = three_keys.track
    x = track.x_of(2.0)
    scale = track.scale
    wheel(track, x, 240)
    assert track.scale == pytest.approx(scale * 2) and track.x_of(2.0) == pytest.approx(x)
    wheel(track, x, -480)
    assert track.scale == pytest.approx(scale / 2)
    wheel(track, x, 1200)  # zoomed in far: frames on the ruler
    assert tick_step(track.scale, 24)[1]
    offset = track.offset
    wheel(track, x, -120, Qt.KeyboardModifier.ShiftModifier)
    assert track.offset > offset


def test_tick_labels_adapt_to_the_zoom():
    assert tick_step(80, 24) == (1.0, False) and tick_step(20, 24) == (5.0, False)
    assert tick_step(300, 24) == (pytest.approx(0.25), True) and tick_step(250, 30)[0] == pytest.approx(1 / 3)
    step, frames = tick_step(2000, 24)
    assert frames and step == pytest.approx(1 / 24)
    assert time_label(1.5, 24, True) == "1s 12f" and time_label(0.25, 24, True) == "6f"
    assert time_label(2.0, 24, False) == "2s" and time_label(90, 24, False) == "1:30"


def test_i_and_o_set_the_in_and_out_points(qtbot, session, three_keys):
    track = three_keys.track
    track.setFocus()
    qtbot.mouseClick(track, Qt.MouseButton.LeftButton, pos=QPoint(round(track.x_of(1.0)), RULER_H // 2))
    qtbot.keyClick(track, Qt.Key.Key_I)
    qtbot.mouseClick(track, Qt.MouseButton.LeftButton, pos=QPoint(round(track.x_of(3.0)), RULER_H // 2))
    qtbot.keyClick(track, Qt.Key.Key_O)
    assert session.timeline.span == pytest.approx((1.0, 3.0))
    assert session.core.undo.undo_text == "Set out point"
    assert three_keys.total.text() == "96 frames, 4.0 s"
    assert session.timeline.frame_span() == (24, 72)  # what the video export renders
    image = track.grab().toImage()  # outside the points is shaded
    inside, outside = (image.pixelColor(round(track.x_of(t)) + 3, TRACK_TOP + THUMB_H + 6) for t in (2.4, 3.6))
    assert outside.lightness() < inside.lightness()


def test_play_moves_the_playhead_and_counts_the_frames_shown(qtbot, session, engine, three_keys):
    track = three_keys.track
    qtbot.mouseClick(track, Qt.MouseButton.LeftButton, pos=QPoint(round(track.x_of(0.0)) + 1, RULER_H // 2))
    track.setFocus()
    sent = len(engine.submitted)
    qtbot.keyClick(track, Qt.Key.Key_Space)
    assert three_keys.playing and three_keys.play.text() == "Stop"
    qtbot.waitUntil(lambda: track.playhead > 0.3, timeout=10000)
    qtbot.waitUntil(lambda: three_keys.meter.shown_total >= 2, timeout=10000)
    assert [job.lane for job in engine.submitted[sent:]].count("preview") >= 2
    assert three_keys.play_status.text().startswith("playing 24 fps · showing ")
    qtbot.keyClick(track, Qt.Key.Key_Escape)
    assert not three_keys.playing and three_keys.play.text() == "Play"
    assert three_keys.play_status.text().startswith("stopped · ")
    at = track.playhead
    qtbot.wait(100)
    assert track.playhead == at


def test_a_click_while_playing_plays_on_from_there_and_a_new_rate_restarts_play(qtbot, session, three_keys):
    track = three_keys.track
    track.set_playhead(0.0)
    three_keys.toggle_play()
    qtbot.mouseClick(track, Qt.MouseButton.LeftButton, pos=QPoint(round(track.x_of(3.0)), RULER_H // 2))
    assert three_keys.playing and three_keys.playback.start == pytest.approx(3.0, abs=1 / 24)
    qtbot.waitUntil(lambda: track.playhead > 3.05, timeout=10000)
    session.edit_timeline("Frame rate", fps=12.0)
    assert three_keys.playing and three_keys.meter.fps == 12.0 and three_keys.player.interval() == 83
    session.set_out_point(3.5)
    assert three_keys.playing and three_keys.playback.high == 3.5
    three_keys.stop()


def test_play_stops_at_the_out_point(qtbot, session, three_keys):
    session.set_out_point(0.25)
    three_keys.track.set_playhead(0.0)
    three_keys.toggle_play()
    qtbot.waitUntil(lambda: not three_keys.playing, timeout=10000)
    assert three_keys.track.playhead == pytest.approx(0.25)


def test_a_model_change_stops_play(qtbot, session, three_keys):
    three_keys.toggle_play()
    assert three_keys.playing
    session.use_model("tiny-plain")
    assert not three_keys.playing


def test_the_waveform_and_mapping_curves_are_sketched_off_the_gui_thread(qtbot, session, three_keys, tmp_path):
    rate = 8000
    wave = (0.5 * np.sin(np.arange(4 * rate) / 8) * (np.arange(4 * rate) % rate < rate // 2)).astype(np.float32)
    sf.write(str(tmp_path / "beat.wav"), wave, rate)
    assert session.set_timeline_audio(tmp_path / "beat.wav")
    session.add_mapping("loudness", "d0")
    track = three_keys.track
    qtbot.waitUntil(lambda: track.sketch is not None and len(track.sketch.curves) == 1, timeout=10000)
    assert track.sketch.seconds == pytest.approx(4.0)
    image = track.grab().toImage()
    assert not image.isNull()
    session.edit_timeline("Remove sound", audio="", mappings=())
    qtbot.waitUntil(lambda: track.sketch is None and track.sound_note == "No sound", timeout=5000)

"""The timeline's track edits in the app core (studio.app.timeline, studio.app.playback), no Qt: a keyframe added
at the playhead splits the segment it falls in, a dragged keyframe changes only its two segments and stays between
its neighbours, in/out points follow the timeline, and playback's clock and meter."""

from __future__ import annotations

import numpy as np
import pytest

from studio.app.document import OpenDocument
from studio.app.models import ModelLibrary
from studio.app.playback import Playback, PlaybackMeter
from studio.app.timeline import MIN_GAP, TimelineEditor, retimed, split_at
from studio.project.timeline import Keyframe, Timeline
from studio.request import RenderRequest


def key(x: float, **kw) -> Keyframe:
    return Keyframe(RenderRequest("m", latent=(x, 0.0)), **kw)


def at_0_1_3(**kw) -> Timeline:
    return Timeline((key(0, duration=1.0, easing="linear"), key(1, duration=2.0, interpolation="lerp"), key(2)),
                    **kw)


@pytest.fixture
def doc(models_dir) -> OpenDocument:
    document = OpenDocument(ModelLibrary([models_dir]))
    document.start("tiny")
    return document


@pytest.fixture
def editor(doc) -> TimelineEditor:
    return TimelineEditor(doc)


@pytest.fixture
def messages(doc) -> list:
    heard: list = []
    doc.message.connect(lambda *args: heard.append(args))
    return heard


def values(k: float) -> np.ndarray:
    return np.arange(8, dtype=np.float32) + k


# --- insert at a time -------------------------------------------------------------------------------------------
def test_a_keyframe_added_inside_a_segment_splits_it_and_the_others_keep_their_times():
    timeline = at_0_1_3()
    index, keys, new = split_at(timeline, 2.5, key(9))
    keys.insert(index, new)
    result = Timeline(tuple(keys))
    assert index == 2 and result.starts == pytest.approx([0, 1, 2.5, 3])
    assert new.duration == pytest.approx(0.5) and new.interpolation == "lerp"  # the split segment's motion
    index, keys, new = split_at(timeline, 0.25, key(9))
    keys.insert(index, new)
    assert index == 1 and Timeline(tuple(keys)).starts == pytest.approx([0, 0.25, 1, 3]) and new.easing == "linear"


def test_at_or_after_the_end_it_is_appended():
    timeline = at_0_1_3()
    index, keys, new = split_at(timeline, 3.0, key(9))
    assert index == 3 and keys == list(timeline.keyframes) and new.duration == 2.0  # at the end: as it was
    index, keys, new = split_at(timeline, 4.5, key(9))
    keys.insert(index, new)
    assert index == 3 and Timeline(tuple(keys)).starts == pytest.approx([0, 1, 3, 4.5])
    looped = at_0_1_3(loop=True)  # looping, the way back to the first (3 … 5 s) is split: the loop keeps 5 s
    index, keys, new = split_at(looped, 4.0, key(9))
    keys.insert(index, new)
    assert index == 3 and Timeline(tuple(keys), loop=True).starts == pytest.approx([0, 1, 3, 4])
    assert Timeline(tuple(keys), loop=True).length == pytest.approx(5.0)


def test_a_keyframe_where_one_is_already_is_refused():
    for t in (0.0, 1.0, 1.0 + MIN_GAP / 2):
        with pytest.raises(ValueError, match="already"):
            split_at(at_0_1_3(), t, key(9))
    assert split_at(Timeline(), 1.0, key(9))[0] == 0


def test_the_editor_adds_at_the_playhead_as_one_step(doc, editor, messages):
    editor.add_keyframe(doc.request, values(0))
    editor.add_keyframe(doc.request.with_(seed=1), values(1))  # at 0 and 2 s
    editor.add_keyframe(doc.request.with_(seed=2), values(2), at=0.5)
    assert editor.timeline.starts == pytest.approx([0, 0.5, 2]) and doc.undo.undo_text == "Add keyframe at 0.50 s"
    assert editor.timeline.keyframes[1].request.latent == tuple(values(2))
    editor.add_keyframe(doc.request.with_(seed=3), values(3), at=0.5)
    assert len(editor.timeline.keyframes) == 3 and messages[-1][:2] == ("warning", "Cannot add a keyframe at 0.50 s")
    doc.undo.undo()
    assert editor.timeline.starts == pytest.approx([0, 2])


# --- retime -------------------------------------------------------------------------------------------------------
def test_dragging_a_keyframe_changes_its_two_segments_only():
    timeline = Timeline((*at_0_1_3().keyframes[:2], key(2, duration=1.0), key(3)))  # 0, 1, 3, 4
    moved = Timeline(retimed(timeline, 2, 2.25))
    assert moved.starts == pytest.approx([0, 1, 2.25, 4])
    assert moved.length == pytest.approx(timeline.length)


def test_a_dragged_keyframe_cannot_pass_its_neighbours():
    timeline = at_0_1_3()
    assert Timeline(retimed(timeline, 1, 5.0)).starts == pytest.approx([0, 3 - MIN_GAP, 3])
    assert Timeline(retimed(timeline, 1, -2.0)).starts == pytest.approx([0, MIN_GAP, 3])
    assert Timeline(retimed(timeline, 2, 7.0)).starts == pytest.approx([0, 1, 7])  # the last one can move later
    looped = at_0_1_3(loop=True)  # looping: not past the loop's end, which stays
    moved = Timeline(retimed(looped, 2, 9.0), loop=True)
    assert moved.starts == pytest.approx([0, 1, 5 - MIN_GAP]) and moved.length == pytest.approx(5.0)
    with pytest.raises(ValueError, match="stays at 0"):
        retimed(timeline, 0, 1.0)


def test_a_drag_is_one_undo_step(doc, editor):
    for k in range(3):
        editor.add_keyframe(doc.request.with_(seed=k), values(k))  # 0, 2, 4 s
    for t in (2.2, 2.6, 3.1):
        editor.retime_keyframe(1, t, merge="retime:1:drag1")
    assert editor.timeline.starts == pytest.approx([0, 3.1, 4])
    doc.undo.undo()
    assert editor.timeline.starts == pytest.approx([0, 2, 4])


# --- in and out points --------------------------------------------------------------------------------------------
def test_points_are_set_cleared_and_follow_the_timeline(doc, editor):
    for k in range(3):
        editor.add_keyframe(doc.request.with_(seed=k), values(k))  # 4 s long
    editor.set_in_point(1.0)
    editor.set_out_point(3.0)
    assert editor.timeline.span == (1.0, 3.0) and doc.undo.undo_text == "Set out point"
    editor.set_in_point(3.5)  # after the out point: the out point goes
    assert editor.timeline.span == (3.5, 4.0)
    editor.set_out_point(2.0)  # before the in point: the in point goes
    assert editor.timeline.span == (0.0, 2.0)
    editor.set_out_point(9.0)  # past the end: at the end
    assert editor.timeline.out_point == 4.0
    editor.set_out_point(3.0)
    editor.remove_keyframe(2)  # 2 s long now: the out point no longer fits and goes
    assert editor.timeline.out_point is None
    doc.undo.undo()
    assert editor.timeline.out_point == 3.0
    editor.set_in_point(1.0)
    editor.edit_timeline(loop=True)  # longer: the points stay
    assert editor.timeline.span == (1.0, 3.0)
    editor.set_in_point(None)
    assert editor.timeline.span == (0.0, 3.0)


def test_the_video_plan_follows_the_points(doc, editor, tmp_path):
    editor.add_keyframe(doc.request, values(0))
    editor.add_keyframe(doc.request.with_(seed=1), values(1))
    editor.edit_timeline(fps=4)
    editor.set_in_point(0.5)
    editor.set_out_point(1.5)
    plan = editor.video_plan(tmp_path / "v.gif")
    assert plan is not None and len(plan.frames) == 4
    assert plan.frames[0] == editor.timeline.request_at(0.5, editor.defaults())


# --- playback -----------------------------------------------------------------------------------------------------
def test_playback_runs_at_real_time_and_stops_or_loops_at_the_out_point():
    play = Playback(start=1.0, low=0.5, high=2.0, began=100.0)
    assert play.at(100.0) == (1.0, False) and play.at(100.5) == (1.5, False)
    assert play.at(101.2) == (2.0, True)
    looping = Playback(start=1.0, low=0.5, high=2.0, loop=True, began=100.0)
    t, ended = looping.at(101.5)  # 2.5 s → 1.0 s after wrapping at 2.0 back to 0.5
    assert t == pytest.approx(1.0) and not ended
    assert Playback(start=2.0, low=0.5, high=2.0).start == 0.5  # at the out point: from the in point again
    assert Playback(start=0.0, low=0.5, high=2.0).start == 0.5
    with pytest.raises(ValueError):
        Playback(start=0.0, low=1.0, high=1.0)


def test_the_meter_counts_frames_shown_against_frames_due():
    meter = PlaybackMeter(24, window=2.0)
    meter.start(10.0)
    assert meter.due(10.0) == 1 and meter.due(11.0) == 25
    for k in range(48):  # every frame shown for 2 s
        meter.shown(10.0 + k / 24)
    assert meter.achieved(12.0) == pytest.approx(24, abs=0.6) and not meter.dropping(12.0)
    assert meter.text(12.0) == "playing 24 fps · showing 24 fps"
    slow = PlaybackMeter(24, window=2.0)
    slow.start(0.0)
    for k in range(1, 19):  # 9 frames a second
        slow.shown(k / 9)
    assert slow.achieved(2.0) == pytest.approx(9.0) and slow.dropping(2.0)
    assert slow.text(2.0) == "playing 24 fps · showing 9 fps (dropping frames)"
    assert slow.shown_total == 18 and slow.due(2.0) == 49
    assert not PlaybackMeter(24).dropping(5.0)  # not started
    with pytest.raises(ValueError):
        PlaybackMeter(0)


# --- the sound's sketch -------------------------------------------------------------------------------------------
def test_the_waveform_columns_are_the_min_and_max_of_their_stretch():
    from studio.app.waveform import SoundSketch, columns, peaks_of

    wave = np.sin(np.arange(8000) / 40.0).astype(np.float32) * np.linspace(0, 1, 8000, dtype=np.float32)
    peaks = peaks_of(wave, buckets=800)  # 10 samples a bucket
    assert peaks.shape == (800, 2) and peaks[5, 0] == wave[50:60].min() and peaks[5, 1] == wave[50:60].max()
    sketch = SoundSketch(peaks, 1.0, 24.0, ())
    mins, maxs = columns(sketch, 0.0, 0.01, 100)  # 8 buckets a column
    for k in (0, 37, 99):
        stretch = wave[k * 80:(k + 1) * 80]
        assert (mins[k], maxs[k]) == (stretch.min(), stretch.max())
    mins, maxs = columns(sketch, -0.5, 0.01, 200)  # before and after the sound: silence
    assert not mins[:50].any() and not maxs[150:].any() and maxs[50 + 99] == wave[7920:].max()
    mins, maxs = columns(sketch, 0.5, 0.0001, 10)  # zoomed in past a bucket: each column shows its bucket
    assert maxs[0] == peaks[400, 1] and maxs[9] == peaks[400, 1]


def test_the_sketch_reads_the_sound_and_shapes_the_mappings_curves(tmp_path):
    import soundfile as sf

    from studio.app.waveform import sketch_sound
    from studio.latent.reactive import envelopes, shape
    from studio.project.timeline import AudioMapping

    rate = 8000
    wave = (0.5 * np.sin(np.arange(2 * rate) / 8) * (np.arange(2 * rate) > rate)).astype(np.float32)
    sf.write(str(tmp_path / "late.wav"), wave, rate)
    mapping = AudioMapping("loudness", "d0", gain=2.0, release=0.2)
    sketch = sketch_sound(tmp_path / "late.wav", 10.0, (mapping,))
    assert sketch.seconds == pytest.approx(2.0) and len(sketch.peaks) == min(16384, 2 * rate)
    expected = shape(envelopes(wave, rate, 10.0)["loudness"], 2.0, 0.0, 0.2, 10.0)
    assert len(sketch.curves) == 1 and np.allclose(sketch.curves[0], expected)
    assert sketch.curves[0][:8].max() < 0.2 and sketch.curves[0][12:].min() > 1.0  # loud in the second second

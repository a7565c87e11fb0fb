"""The Timeline panel driven through a Session on the fake engine (offscreen): keyframes, their editors, the
timeline's settings, the scrubber's preview, the sound and its mappings, and the video export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from studio.export.scale import OutputSize
from studio.ui import dialogs, export_dialogs
from studio.ui.panels.timeline import TimelinePanel
from studio.ui.session import ERROR


@pytest.fixture
def panel(qtbot, session):
    widget = TimelinePanel(session)
    qtbot.addWidget(widget)
    return widget


def add_current(qtbot, session, panel, seed: int) -> None:
    session.change("Seed", seed=seed, latent=None)
    with qtbot.waitSignal(session.timeline_changed, timeout=5000):
        panel.add_current.click()


@pytest.fixture
def two_keys(qtbot, session, panel):
    add_current(qtbot, session, panel, 3)
    add_current(qtbot, session, panel, 5)
    return panel


@pytest.fixture
def sound_file(tmp_path):
    path = tmp_path / "beat.wav"
    rate = 8000
    t = np.arange(rate) / rate
    sf.write(str(path), (0.5 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 4 * t))) / 2)
             .astype(np.float32), rate)
    return path


def rows(panel) -> list[str]:
    return [panel.keyframes.item(i).text() for i in range(panel.keyframes.count())]


# --- keyframes -------------------------------------------------------------------------------------------------------


def test_an_empty_timeline_disables_what_needs_keyframes(panel):
    assert panel.findChild(type(panel.keyframes), "keyframeList") is panel.keyframes
    assert panel.keyframes.count() == 0
    assert panel.add_current.isEnabled()
    for widget in (panel.remove, panel.up, panel.down, panel.duration, panel.interpolation, panel.easing,
                   panel.scrubber, panel.export, panel.add_library, panel.library, panel.add_mapping,
                   panel.remove_mapping, panel.clear_sound):
        assert not widget.isEnabled(), widget.objectName()
    assert not panel.hint.isHidden()
    assert panel.hint.text() == "Add two keyframes to animate"
    assert panel.total.text() == "No animation"


def test_add_current_twice_then_undo_and_redo(qtbot, session, panel):
    add_current(qtbot, session, panel, 3)
    assert rows(panel) == ["1  seed 3  2.0 s  slerp  ease-in-out"]
    assert session.timeline.keyframes[0].request.latent == tuple(float(v) for v in np.arange(8) + 3)
    assert not panel.scrubber.isEnabled() and not panel.export.isEnabled()
    add_current(qtbot, session, panel, 5)
    assert rows(panel) == ["1  seed 3  2.0 s  slerp  ease-in-out", "2  seed 5  2.0 s  slerp  ease-in-out"]
    assert panel.keyframes.currentRow() == 1  # the new keyframe is selected
    assert panel.scrubber.isEnabled() and panel.export.isEnabled()
    assert panel.hint.isHidden()
    assert panel.total.text() == "48 frames, 2.0 s"

    session.undo.undo()
    assert rows(panel) == ["1  seed 3  2.0 s  slerp  ease-in-out"]
    assert not panel.scrubber.isEnabled()
    session.undo.redo()
    assert len(rows(panel)) == 2 and rows(panel)[1].startswith("2  seed 5")


def test_the_editors_show_and_change_the_selected_keyframe(qtbot, session, two_keys):
    panel = two_keys
    panel.keyframes.setCurrentRow(0)
    assert panel.duration.isEnabled() and panel.duration.value() == 2.0
    steps = session.undo.count()
    for value in (2.5, 3.0, 3.5):  # one spin gesture: one undo step
        panel.duration.setValue(value)
    assert session.timeline.keyframes[0].duration == 3.5
    assert session.undo.count() == steps + 1
    assert rows(panel)[0] == "1  seed 3  3.5 s  slerp  ease-in-out"
    assert panel.keyframes.currentRow() == 0  # the selection stays
    assert panel.total.text() == "84 frames, 3.5 s"

    panel.easing.setCurrentText("linear")
    panel.interpolation.setCurrentText("lerp")
    key = session.timeline.keyframes[0]
    assert (key.easing, key.interpolation) == ("linear", "lerp")
    assert rows(panel)[0] == "1  seed 3  3.5 s  lerp  linear"

    panel.keyframes.setCurrentRow(1)  # the editors follow the selection, and that is no edit
    count = session.undo.count()
    assert (panel.duration.value(), panel.easing.currentText(), panel.interpolation.currentText()) == \
        (2.0, "ease-in-out", "slerp")
    assert session.undo.count() == count

    while session.undo.index() > steps:
        session.undo.undo()
    panel.keyframes.setCurrentRow(0)
    assert panel.duration.value() == 2.0 and panel.easing.currentText() == "ease-in-out"


def test_editors_are_disabled_without_a_selection(two_keys):
    panel = two_keys
    panel.keyframes.setCurrentRow(-1)
    for widget in (panel.duration, panel.interpolation, panel.easing, panel.remove, panel.up, panel.down):
        assert not widget.isEnabled(), widget.objectName()


def test_up_down_and_remove(qtbot, session, two_keys):
    panel = two_keys
    panel.keyframes.setCurrentRow(1)
    assert panel.up.isEnabled() and not panel.down.isEnabled()
    panel.up.click()
    assert [k.name for k in session.timeline.keyframes] == ["seed 5", "seed 3"]
    assert rows(panel)[0].startswith("1  seed 5")
    assert panel.keyframes.currentRow() == 0  # the selection follows the moved keyframe
    assert not panel.up.isEnabled() and panel.down.isEnabled()
    panel.down.click()
    assert [k.name for k in session.timeline.keyframes] == ["seed 3", "seed 5"]
    assert panel.keyframes.currentRow() == 1

    panel.remove.click()
    assert [k.name for k in session.timeline.keyframes] == ["seed 3"]
    assert panel.keyframes.currentRow() == 0
    session.undo.undo()
    assert len(session.timeline.keyframes) == 2


def test_add_from_library_uses_a_saved_latent(qtbot, session, panel):
    assert not panel.add_library.isEnabled()
    session.change("Seed", seed=7, latent=None)
    with qtbot.waitSignal(session.latents_changed, timeout=5000):
        session.save_latent("seven")
    assert panel.library.count() == 1 and panel.library.currentText() == "seven"
    assert panel.add_library.isEnabled()
    session.change("Seed", seed=1, latent=None)
    panel.add_library.click()
    key = session.timeline.keyframes[0]
    assert key.name == "seven"
    assert key.request.latent == tuple(float(v) for v in np.arange(8) + 7)
    assert rows(panel) == ["1  seven  2.0 s  slerp  ease-in-out"]


# --- settings and scrubbing ------------------------------------------------------------------------------------------


def test_fps_and_loop_change_the_frames(session, two_keys):
    panel = two_keys
    assert panel.fps.value() == 24.0 and not panel.loop.isChecked()
    steps = session.undo.count()
    panel.fps.setValue(11)
    panel.fps.setValue(12)
    assert session.timeline.fps == 12.0 and session.undo.count() == steps + 1
    assert panel.total.text() == "24 frames, 2.0 s"
    assert panel.scrubber.maximum() == 23
    panel.loop.setChecked(True)
    assert session.timeline.loop
    assert panel.total.text() == "48 frames, 4.0 s"
    assert panel.scrubber.maximum() == 47
    session.undo.undo()
    assert not panel.loop.isChecked() and panel.total.text() == "24 frames, 2.0 s"
    session.undo.undo()
    assert panel.fps.value() == 24.0 and panel.scrubber.maximum() == 47


def test_the_scrubber_previews_a_frame_and_keeps_the_request(qtbot, session, engine, two_keys):
    panel = two_keys
    assert panel.findChild(type(panel.scrubber), "scrubber") is panel.scrubber
    assert (panel.scrubber.minimum(), panel.scrubber.maximum()) == (0, 47)
    request, steps = session.request, session.undo.count()
    panel.scrubber.setValue(12)
    job = engine.submitted[-1]
    assert job.lane == "preview" and job.kind == "render"
    assert job.request == session.timeline.request_at(12 / 24)
    assert job.request.latent != session.timeline.keyframes[0].request.latent
    assert panel.time.text() == "0.50 s / 2.00 s · frame 13"
    assert session.request == request and session.undo.count() == steps
    qtbot.waitUntil(lambda: not session.bridge.busy, timeout=5000)


def test_rebuilding_is_no_edit(session, two_keys):
    rows_before = two_keys.keyframes.count()
    steps = session.undo.count()
    session.timeline_changed.emit()
    session.model_changed.emit(session.entry)
    assert session.undo.count() == steps and two_keys.keyframes.count() == rows_before


# --- audio -----------------------------------------------------------------------------------------------------------


def test_sound_and_mappings(qtbot, session, two_keys, sound_file, monkeypatch):
    panel = two_keys
    monkeypatch.setattr(dialogs, "ask_sound_file", lambda parent: str(sound_file))
    assert not panel.add_mapping.isEnabled()
    assert panel.sound_name.text() == "No sound"
    panel.sound_button.click()
    assert session.timeline.audio == str(sound_file)
    assert panel.sound_name.text() == "beat.wav"
    assert panel.add_mapping.isEnabled()

    panel.add_mapping.click()
    table = panel.mappings
    assert table.objectName() == "mappingTable" and table.rowCount() == 1
    envelope, target, gain, attack, release = (table.cellWidget(0, c) for c in range(5))
    assert (envelope.currentText(), target.currentText(), gain.value()) == ("onsets", "d0", 1.0)
    # the targets offered: the speed, then the model's number params (its directions first)
    offered = [target.itemText(i) for i in range(target.count())]
    assert offered[:5] == ["speed", "d0", "d1", "d2", "d3"] and "truncation" in offered and "z7" in offered
    assert "prompt" not in offered and "mix_seed" not in offered
    assert panel.remove_mapping.isEnabled()

    envelope.setCurrentText("loudness")
    steps = session.undo.count()
    gain.setValue(0.5)
    gain.setValue(0.25)
    assert session.undo.count() == steps + 1
    attack.setValue(0.05)
    release.setValue(0.2)
    target.lineEdit().setText("speed")
    target.lineEdit().editingFinished.emit()
    assert session.timeline.mappings[0].to_dict() == {"envelope": "loudness", "target": "speed", "gain": 0.25,
                                                      "attack": 0.05, "release": 0.2}

    errors = []
    session.message.connect(lambda level, text, detail: errors.append(level))
    target = table.cellWidget(0, 1)
    target.lineEdit().setText("nonsense")
    target.lineEdit().editingFinished.emit()
    assert ERROR in errors  # not a number param of the model
    assert session.timeline.mappings[0].target == "speed"
    assert table.cellWidget(0, 1).currentText() == "speed"  # the refused text goes back

    panel.add_mapping.click()
    assert table.rowCount() == 2
    table.selectRow(0)
    panel.remove_mapping.click()
    assert table.rowCount() == 1 and session.timeline.mappings[0].envelope == "onsets"
    session.undo.undo()
    assert table.rowCount() == 2 and table.cellWidget(0, 1).currentText() == "speed"

    panel.clear_sound.click()
    assert session.timeline.audio == "" and table.rowCount() == 0
    assert not panel.add_mapping.isEnabled() and not panel.clear_sound.isEnabled()


def test_a_mapping_target_shows_a_named_directions_name_and_takes_it_typed(qtbot, session, two_keys, sound_file,
                                                                          monkeypatch):
    panel = two_keys
    monkeypatch.setattr(dialogs, "ask_sound_file", lambda parent: str(sound_file))
    panel.sound_button.click()
    panel.add_mapping.click()  # drives d0
    session.directions.names.rename(0, "Bold")
    session.directions.names.rename(2, "Slant")
    target = panel.mappings.cellWidget(0, 1)
    assert target.currentText() == "d0 · Bold"  # as the Pad names it
    offered = [target.itemText(i) for i in range(target.count())]
    assert offered[:4] == ["speed", "d0 · Bold", "d1", "d2 · Slant"]
    target.setCurrentIndex(3)
    target.activated.emit(3)
    assert session.timeline.mappings[0].target == "d2"  # the param, not the label, is what the timeline keeps
    target = panel.mappings.cellWidget(0, 1)
    target.lineEdit().setText("bold")  # a name typed, any case
    target.lineEdit().editingFinished.emit()
    assert session.timeline.mappings[0].target == "d0"
    assert panel.mappings.cellWidget(0, 1).currentText() == "d0 · Bold"
    session.directions.names.rename(0, "")  # a name cleared: the param alone again
    assert panel.mappings.cellWidget(0, 1).currentText() == "d0"


def test_a_cancelled_sound_question_changes_nothing(session, panel, monkeypatch):
    monkeypatch.setattr(dialogs, "ask_sound_file", lambda parent: "")
    steps = session.undo.count()
    panel.sound_button.click()
    assert session.undo.count() == steps and session.timeline.audio == ""


# --- export ----------------------------------------------------------------------------------------------------------


def test_export_video_asks_for_a_path_and_exports(session, two_keys, tmp_path, monkeypatch):
    panel = two_keys
    assert panel.findChild(type(panel.export), "exportVideo") is panel.export
    asked, calls = [], []
    out = tmp_path / "clip.webm"
    chosen = export_dialogs.VideoExport(str(out), OutputSize(4, "nearest"), 12.0, (2, 5))

    def ask(parent, suggestion, source, fps, count):
        asked.append((suggestion, fps, count(fps), count(2 * fps)))
        return chosen

    monkeypatch.setattr(export_dialogs, "ask_video_export", ask)
    monkeypatch.setattr(session, "export_video", lambda *args: calls.append(args))
    panel.export.click()
    (suggestion, fps, frames, doubled), = asked
    assert Path(suggestion).name == "animation.mp4" and fps == session.timeline.fps
    assert not Path(suggestion).is_relative_to(Path(__file__).resolve().parents[2])  # never the app's own folder
    assert frames == session.timeline.frames and doubled >= 2 * frames - 1  # the count follows the chosen rate
    assert calls[0][0] == str(out) and calls[0][3:] == (OutputSize(4, "nearest"), 12.0, (2, 5))

    monkeypatch.setattr(export_dialogs, "ask_video_export", lambda *args: None)
    panel.export.click()
    assert len(calls) == 1  # cancelled: nothing exported


def test_export_is_disabled_with_one_keyframe(qtbot, session, panel):
    add_current(qtbot, session, panel, 3)
    assert not panel.export.isEnabled() and not panel.scrubber.isEnabled()
    assert not panel.hint.isHidden()


def test_the_video_question_adds_the_chosen_suffix(panel, monkeypatch):
    answers = {}
    monkeypatch.setattr(dialogs.QFileDialog, "getSaveFileName",
                        lambda *args: (answers["path"], answers["filter"]))
    for path, chosen, expected in (("/x/clip", "WebM video (*.webm)", "/x/clip.webm"),
                                   ("/x/clip.gif", "MP4 video (*.mp4)", "/x/clip.gif"),
                                   ("/x/frames", "PNG frames (a folder)", "/x/frames"),
                                   ("/x/frames.png", "PNG frames (a folder)", "/x/frames"),
                                   ("", "MP4 video (*.mp4)", "")):
        answers.update(path=path, filter=chosen)
        assert dialogs.ask_video_path(panel, "animation.mp4") == (expected, None)


def test_another_model_cannot_add_keyframes(qtbot, session, two_keys):
    panel = two_keys
    session.use_model("tiny-plain")
    assert session.request.model_id == "tiny-plain"
    assert not panel.add_current.isEnabled()
    assert "tiny" in panel.add_current.statusTip()
    assert panel.scrubber.isEnabled()  # the timeline itself still plays
    qtbot.waitUntil(lambda: not session.bridge.busy, timeout=5000)

"""The timeline of the app core (studio.app.timeline): keyframes, timing, sound and audio mappings as undoable
steps of the document; frames to scrub and a video's plan; no Qt, no engine."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from studio.app.document import OpenDocument
from studio.app.models import ModelLibrary
from studio.app.timeline import TimelineEditor
from studio.export import read_any_request
from studio.project import SavedLatent
from studio.steps import Output


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


def test_keyframes_hold_their_latent_and_every_edit_is_an_undo_step(doc, editor):
    changes = []
    editor.changed.connect(lambda: changes.append(len(editor.timeline.keyframes)))
    doc.set_param("prompt", "Zz", "Prompt")
    doc.set_param("d0", 1.0, "d0")
    editor.add_keyframe(doc.request, values(0))
    doc.change("Seed", seed=4)
    editor.add_keyframe(doc.request, values(4))
    editor.add_keyframe(doc.request, values(9), index=0)
    keys = editor.timeline.keyframes
    assert [k.name for k in keys] == ["seed 4", "seed 0", "seed 4"] and changes == [1, 2, 3]
    assert keys[1].request.latent == tuple(values(0)) and dict(keys[1].request.params) == {"prompt": "Zz"}
    assert doc.undo.undo_text == "Add keyframe"
    editor.edit_keyframe(0, duration=0.5, text="Duration", merge="dur:0")
    editor.edit_keyframe(0, duration=0.75, text="Duration", merge="dur:0")
    editor.move_keyframe(0, 2)
    editor.remove_keyframe(0)
    editor.edit_timeline(fps=12, loop=True)
    assert editor.timeline.fps == 12 and editor.timeline.loop and len(editor.timeline.keyframes) == 2
    assert editor.timeline.keyframes[1].duration == 0.75
    for _ in range(4):  # fps+loop, remove, move, the duration drag (one step)
        doc.undo.undo()
    assert editor.timeline.keyframes[0].duration == 2.0 and len(editor.timeline.keyframes) == 3
    assert doc.document.timeline is editor.timeline and doc.modified


def test_a_keyframe_of_another_model_is_refused(doc, editor, messages):
    editor.add_keyframe(doc.request, values(0))
    doc.use_model("tiny-plain")
    assert not editor.can_add_keyframe(doc.request)
    editor.add_keyframe(doc.request, values(1))
    assert len(editor.timeline.keyframes) == 1
    assert messages[-1][:2] == ("error", "Cannot add a keyframe of another model")


def test_a_saved_latent_becomes_a_keyframe(doc, editor, messages):
    doc.document.latents.append(SavedLatent("lib", "tiny", "", tuple(values(2))))
    editor.add_keyframe_from_latent(0)
    assert editor.timeline.keyframes[0].name == "lib" and doc.undo.undo_text == "Add keyframe 'lib'"
    doc.document.latents.append(SavedLatent("other", "tiny-plain", "", tuple(values(3))))
    editor.add_keyframe_from_latent(1)
    assert len(editor.timeline.keyframes) == 1 and messages[-1][0] == "warning"


def test_bad_edits_are_reported_and_change_nothing(doc, editor, messages):
    editor.add_keyframe(doc.request, values(0))
    before = editor.timeline
    editor.edit_keyframe(0, duration=-1.0)
    editor.edit_timeline(fps=0)
    assert editor.timeline == before and [m[0] for m in messages] == ["error", "error"]
    assert "duration" in messages[0][2] or "positive" in messages[0][1]


def test_sounds_and_mappings(doc, editor, messages, tmp_path):
    rate = 8000
    sf.write(str(tmp_path / "beat.wav"), (0.5 * np.sin(np.arange(rate) / 8)).astype(np.float32), rate)
    sf.write(str(tmp_path / "silent.wav"), np.zeros(rate, np.float32), rate)
    assert editor.set_audio(tmp_path / "beat.wav") and editor.timeline.audio.endswith("beat.wav")
    assert not editor.set_audio(tmp_path / "silent.wav")
    assert messages[-1][0] == "error" and "silent" in messages[-1][2] and editor.timeline.audio.endswith("beat.wav")
    editor.add_mapping("onsets", "d0")
    editor.edit_mapping(0, gain=2.0)
    assert editor.timeline.mappings[0].gain == 2.0
    editor.remove_mapping(0)
    assert editor.timeline.mappings == ()


def test_a_sound_a_model_made_is_kept_for_the_timeline(doc, editor, messages):
    assert not editor.keep_sound(None) and messages[-1][:2] == ("warning", "No sound made yet")
    request = doc.request.with_(model_hash="f" * 64)
    wave = (0.3 * np.sin(np.arange(4000) / 5)).astype(np.float32)[:, None]
    assert editor.keep_sound((request, Output("audio", wave, {"sample_rate": 8000})))
    kept = editor.timeline.audio
    assert kept.endswith(f"tiny-sound-{request.seed}.wav") and read_any_request(kept) == request


def test_frames_to_scrub_and_the_video_plan(doc, editor, messages, tmp_path):
    assert editor.frame_at(0.5) is None and messages[-1][:2] == ("warning", "Nothing to scrub")
    assert editor.video_plan(tmp_path / "v.mp4") is None
    assert messages[-1][:2] == ("error", "Cannot export v.mp4") and "two keyframes" in messages[-1][2]
    editor.add_keyframe(doc.request, values(0))
    editor.add_keyframe(doc.request.with_(seed=1), values(1))
    frame = editor.frame_at(1.0)
    assert frame is not None and frame.latent == pytest.approx(values(0.5), abs=0.2)
    editor.edit_timeline(fps=4)
    plan = editor.video_plan(tmp_path / "v.gif")
    assert len(plan.frames) == 8 and plan.audio is None and plan.fps == 4.0
    assert editor.defaults()("d0") == 0.0


def test_a_new_document_has_a_new_timeline(doc, editor):
    editor.add_keyframe(doc.request, values(0))
    heard = []
    editor.changed.connect(lambda: heard.append(True))
    doc.new()
    assert editor.timeline.keyframes == () and heard == [True]

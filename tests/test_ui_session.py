"""The session, the Qt bridge and the undo stack, driven through the fake engine on the offscreen platform."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import QThread

from studio.export.image import read_request
from studio.project import load_document
from studio.request import RenderRequest
from studio.ui.session import Session

from fake_engine import FakeEngine, fake_image, request_value


def settle(qtbot, session):
    qtbot.waitUntil(lambda: not session.bridge.busy, timeout=5000)
    session.flush_history()  # (history entries are otherwise made once renders settle)


# --- the bridge ------------------------------------------------------------------------------------------------------


def test_results_arrive_on_the_gui_thread(qtbot, session, engine):
    seen = []
    session.bridge.rendered.connect(lambda *args: seen.append(("rendered", threading.current_thread())))
    session.image_changed.connect(lambda image: seen.append(("image", threading.current_thread())))
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.edit("d0", 1.0, "d0")
    assert {kind for kind, _ in seen} == {"rendered", "image"}
    assert all(thread is threading.main_thread() for _, thread in seen)
    assert session.thread() is QThread.currentThread() or session.thread() == QThread.currentThread()
    assert engine.worker_thread is not threading.main_thread()
    assert engine.submitted[-1].state == "finished"  # it was rendered (on the worker)


def test_stale_preview_stamps_are_dropped(qtbot, models_dir):
    slow = FakeEngine(delay=0.05)
    try:
        s = Session(slow, roots=[models_dir])
        s.refresh_models()
        s.start("tiny")
        shown: list[RenderRequest] = []
        s.rendered.connect(lambda request, seconds, info: shown.append(request))
        for k in range(20):  # a burst: 20 moves while one render takes 50 ms
            s.edit("d0", k / 10, "d0", merge="drag")
        settle(qtbot, s)
        final = s.request
        assert shown[-1] == final  # the newest request is what ends on screen
        assert all(r == final for r in shown[1:])  # nothing stale shown after the first
        assert len(slow.rendered) <= 3  # the one in flight, the first newest, the final one: no backlog
        assert s.bridge.dropped_frames >= 1 or len(slow.rendered) < 21
        assert request_value(final) == int(s.last_output.data[0, 0])
    finally:
        slow.shutdown()


def test_per_step_frames_reach_the_canvas_signal(qtbot, models_dir):
    stepping = FakeEngine(delay=0.03, steps=3)
    try:
        s = Session(stepping, roots=[models_dir])
        s.refresh_models()
        frames = []
        s.image_changed.connect(lambda image: frames.append(int(image[0, 0])))
        progress = []
        s.bridge.progress.connect(lambda step, total, message: progress.append((step, total)))
        with qtbot.waitSignal(s.rendered, timeout=5000):
            s.start("tiny")
        final = request_value(s.request)
        assert frames[-1] == final and final // 2 in frames[:-1]
        assert (1, 3) in progress and (2, 3) in progress
    finally:
        stepping.shutdown()


def test_a_failing_render_reports_and_the_session_stays_usable(qtbot, models_dir):
    failing = FakeEngine(fail_prompts=("Boom",))
    try:
        s = Session(failing, roots=[models_dir])
        s.refresh_models()
        s.start("tiny")
        settle(qtbot, s)
        with qtbot.waitSignal(s.message, timeout=5000) as blocker:
            s.change("Prompt", prompt="Boom")
        level, text, detail = blocker.args
        assert level == "error" and "Boom" in text and "Traceback" in detail
        with qtbot.waitSignal(s.rendered, timeout=5000):
            s.change("Prompt", prompt="Ok")
    finally:
        failing.shutdown()


# --- undo ------------------------------------------------------------------------------------------------------------


def test_every_edit_is_undoable_and_redoable(qtbot, session):
    start = session.request
    session.edit("d0", 1.5, "d0")
    session.change("Seed", seed=42)
    assert session.request.seed == 42 and dict(session.request.edits) == {"d0": 1.5}
    session.undo.undo()
    assert session.request.seed == start.seed and dict(session.request.edits) == {"d0": 1.5}
    session.undo.undo()
    assert session.request == start
    session.undo.redo()
    session.undo.redo()
    assert session.request.seed == 42
    settle(qtbot, session)
    assert session.last_request == session.request  # the redone request was rendered


def test_a_drag_is_one_undo_step(qtbot, session):
    start = session.request
    for value in (0.1, 0.2, 0.5, 0.9):
        session.edit("d1", value, "drag", merge="d1:7")
    session.edit("d1", 1.2, "next drag", merge="d1:8")
    assert session.undo.count() == 2
    session.undo.undo()
    assert dict(session.request.edits) == {"d1": 0.9}
    session.undo.undo()
    assert session.request == start


def test_switching_models_is_undoable(qtbot, session):
    assert session.use_model("tiny-plain")
    assert session.request.model_id == "tiny-plain" and session.entry.id == "tiny-plain"
    assert session.request.prompt == ""  # the unconditional model takes no prompt
    session.undo.undo()
    assert session.request.model_id == "tiny" and session.entry.id == "tiny"


def test_using_an_unknown_model_says_so(qtbot, session):
    with qtbot.waitSignal(session.message) as blocker:
        assert not session.use_model("nope")
    assert blocker.args[0] == "error" and "nope" in blocker.args[1]


def test_seed_modes(qtbot, session):
    session.change("Seed", seed=10)
    session.next_seed()
    assert session.request.seed == 10  # fixed
    session.set_seed_mode("increment")
    session.next_seed()
    assert session.request.seed == 11
    session.set_seed_mode("random")
    session.next_seed()
    assert session.request.seed != 11
    with pytest.raises(ValueError):
        session.set_seed_mode("sideways")


# --- history ---------------------------------------------------------------------------------------------------------


def test_history_waits_for_renders_to_settle(qtbot, session):
    session.edit("d0", 0.5, "d0")
    qtbot.waitUntil(lambda: not session.bridge.busy, timeout=5000)
    assert session.document.history[-1].request != session.request  # not yet: a drag may still be going on
    qtbot.waitUntil(lambda: session.document.history[-1].request == session.request, timeout=5000)


def test_history_has_one_entry_per_step_and_restores(qtbot, session):
    first = session.request
    for value in (0.3, 0.6):
        session.edit("d0", value, "drag", merge="d0:1")
        settle(qtbot, session)
    session.change("Seed", seed=5)
    settle(qtbot, session)
    history = session.document.history
    assert [h.request for h in history] == [first, first.edit("d0", 0.6), first.edit("d0", 0.6).with_(seed=5)]
    assert all(h.thumbnail_png.startswith(b"\x89PNG") for h in history)
    session.restore_history(0)
    assert session.request == first
    session.undo.undo()
    assert session.request.seed == 5


# --- the latent library ------------------------------------------------------------------------------------------------


def test_save_use_and_interpolate_latents(qtbot, session):
    session.change("Seed", seed=1)
    settle(qtbot, session)
    with qtbot.waitSignal(session.latents_changed, timeout=5000):
        session.save_latent("one")
    session.change("Seed", seed=3)
    with qtbot.waitSignal(session.latents_changed, timeout=5000):
        session.save_latent("")
    names = [e.name for e in session.document.latents]
    assert names == ["one", "seed 3"]
    one, three = session.document.latents
    assert one.latent == tuple(float(v) for v in np.arange(8) + 1)  # the fake engine's latent of seed 1
    assert one.thumbnail_png.startswith(b"\x89PNG") and one.model_id == "tiny"
    session.use_latent(0)
    assert session.request.latent == one.latent and session.request.edits == ()
    session.interpolate_latents(0, 1, 0.5, "lerp", merge="t:1")
    assert session.request.latent == pytest.approx([(a + b) / 2 for a, b in zip(one.latent, three.latent)])
    session.interpolate_latents(0, 1, 1.0, "slerp", merge="t:1")
    assert session.request.latent == pytest.approx(three.latent)
    session.undo.undo()  # the interpolation drag
    session.undo.undo()  # use latent
    session.undo.undo()  # second save
    assert [e.name for e in session.document.latents] == ["one"]


def test_a_latent_of_another_model_is_refused(qtbot, session):
    with qtbot.waitSignal(session.latents_changed, timeout=5000):
        session.save_latent("tiny one")
    session.use_model("tiny-plain")
    with qtbot.waitSignal(session.message) as blocker:
        session.use_latent(0)
    assert blocker.args[0] == "warning" and "tiny" in blocker.args[1]
    assert session.request.latent is None


# --- encoding --------------------------------------------------------------------------------------------------------


def test_encode_an_image_strip(qtbot, session, tmp_path):
    from PIL import Image

    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((16, 32), 255, dtype=np.uint8)).save(strip)
    with qtbot.waitSignal(session.request_changed, timeout=5000, check_params_cb=lambda r: r.latent is not None):
        session.encode_image(strip, "Ab")
    images, labels = [j.payload for j in session.bridge.engine.submitted if j.kind == "encode"][0]
    assert images.shape == (2, 16, 16) and labels == ["A", "b"]
    assert session.request.latent == pytest.approx([1.0] * 8)  # white cells: the fake's mean/255


def test_encode_errors_are_reported(qtbot, session, tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    with qtbot.waitSignal(session.message) as blocker:
        session.encode_image(bad, "Ab")
    assert blocker.args[0] == "error" and "not-an-image.png" in blocker.args[2]


# --- export and restore ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_export_writes_the_request_and_dropping_it_restores(qtbot, session, tmp_path, suffix):
    session.edit("d2", -1.25, "d2")
    session.change("Prompt", prompt="Ab b")
    wanted = session.request
    out = tmp_path / "exports" / f"out{suffix}"
    out.parent.mkdir()
    with qtbot.waitSignal(session.message, timeout=5000, check_params_cb=lambda level, text, d: "Exported" in text):
        session.export(out)
    stored = read_request(out)
    assert stored == wanted.with_(model_hash="f" * 64)  # the hash of the weights that rendered it
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left
    session.change("Seed", seed=99)
    assert session.restore_from_file(out)
    assert session.request == stored


def test_export_to_an_unwritable_place_reports_and_keeps_nothing(qtbot, session, tmp_path):
    (tmp_path / "exports").mkdir()
    blocker_file = tmp_path / "exports" / "file"
    blocker_file.write_text("x")
    with qtbot.waitSignal(session.message, timeout=5000, check_params_cb=lambda level, *_: level == "error") as b:
        session.export(blocker_file / "out.png")
    assert "Export failed" in b.args[1]
    assert sorted(p.name for p in blocker_file.parent.iterdir()) == ["file"]


def test_restoring_from_an_image_without_metadata_says_so(qtbot, session, tmp_path):
    from PIL import Image

    plain = tmp_path / "plain.png"
    Image.fromarray(fake_image(session.request)).save(plain)
    before = session.request
    with qtbot.waitSignal(session.message) as blocker:
        assert not session.restore_from_file(plain)
    assert blocker.args[0] == "error" and "no Latent Studio request" in blocker.args[2]
    assert session.request == before


# --- documents -------------------------------------------------------------------------------------------------------


def test_save_and_open_round_trip(qtbot, session, tmp_path, engine, models_dir):
    session.edit("d0", 0.75, "d0")
    settle(qtbot, session)
    with qtbot.waitSignal(session.latents_changed, timeout=5000):
        session.save_latent("kept")
    assert session.modified
    assert session.save(tmp_path / "poster")
    assert session.path == tmp_path / "poster.lstudio" and not session.modified
    on_disk = load_document(session.path)
    assert on_disk.request == session.request and [e.name for e in on_disk.latents] == ["kept"]
    assert on_disk.history and on_disk.models[0].id == "tiny" and on_disk.models[0].sha256 == "f" * 64

    other = Session(engine, roots=[models_dir])
    other.refresh_models()
    with qtbot.waitSignal(other.rendered, timeout=5000):
        assert other.open_document(session.path)
    assert other.request == session.request and not other.modified
    assert [e.latent for e in other.document.latents] == [e.latent for e in session.document.latents]
    assert other.display_name == "poster.lstudio"


def test_opening_a_broken_project_reports_and_keeps_the_document(qtbot, session, tmp_path):
    broken = tmp_path / "broken.lstudio"
    broken.write_text("{not json")
    before = session.request
    with qtbot.waitSignal(session.message) as blocker:
        assert not session.open_document(broken)
    assert blocker.args[0] == "error" and "broken.lstudio" in blocker.args[2]
    assert session.request == before


def test_new_document_starts_clean(qtbot, session):
    session.edit("d0", 1.0, "d0")
    session.new_document()
    assert not session.modified and session.path is None and session.request.edits == ()
    assert session.document.history == [] and session.undo.count() == 0

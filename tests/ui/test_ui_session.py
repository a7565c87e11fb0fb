"""The session (the Qt adapters over the app core), the Qt bridge and the undo stack, driven through the fake engine
on the offscreen platform; work functions run on the fake engine's model of the package (tests/fake_engine.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import QThread

from studio.export.image import read_request
from studio.project import load_document
from studio.request import RenderRequest
from studio.settings import load_settings
from studio.ui.session import Session, UndoActions

from conftest import make_tiny_package
from fake_engine import FAKE_SHA256, FakeEngine, FakeFamily, fake_image, request_value


@pytest.fixture
def engine():
    """The fake engine, running work functions (export, grid, encode …) on a stub model."""
    fake = FakeEngine()
    yield fake
    fake.shutdown()


def edits(request: RenderRequest) -> dict:
    """The request's params but its condition (what the sliders set)."""
    return {k: v for k, v in request.params.items() if k != "prompt"}


def settle(qtbot, session):
    qtbot.waitUntil(lambda: not session.bridge.busy, timeout=5000)
    session.flush_history()  # (history entries are otherwise made once renders settle)


# --- the bridge ------------------------------------------------------------------------------------------------------


def test_results_arrive_on_the_gui_thread(qtbot, session, engine):
    seen = []
    session.bridge.rendered.connect(lambda *args: seen.append(("rendered", threading.current_thread())))
    session.image_changed.connect(lambda image: seen.append(("image", threading.current_thread())))
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.set_param("d0", 1.0, "d0")
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
            s.set_param("d0", k / 10, "d0", merge="drag")
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
            s.set_param("prompt", "Boom", "Prompt")
        level, text, detail = blocker.args
        assert level == "error" and "Boom" in text and "Traceback" in detail
        with qtbot.waitSignal(s.rendered, timeout=5000):
            s.set_param("prompt", "Ok", "Prompt")
    finally:
        failing.shutdown()


# --- undo ------------------------------------------------------------------------------------------------------------


def test_every_edit_is_undoable_and_redoable(qtbot, session):
    start = session.request
    session.set_param("d0", 1.5, "d0")
    session.change("Seed", seed=42)
    assert session.request.seed == 42 and edits(session.request) == {"d0": 1.5}
    session.undo.undo()
    assert session.request.seed == start.seed and edits(session.request) == {"d0": 1.5}
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
        session.set_param("d1", value, "drag", merge="d1:7")
    session.set_param("d1", 1.2, "next drag", merge="d1:8")
    assert session.undo.count() == 2
    session.undo.undo()
    assert edits(session.request) == {"d1": 0.9}
    session.undo.undo()
    assert session.request == start


def test_switching_models_is_undoable(qtbot, session):
    assert session.use_model("tiny-plain")
    assert session.request.model_id == "tiny-plain" and session.entry.id == "tiny-plain"
    assert "prompt" not in session.request.params  # the unconditional model takes no prompt
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
    session.set_param("d0", 0.5, "d0")
    qtbot.waitUntil(lambda: not session.bridge.busy, timeout=5000)
    assert session.document.history[-1].request != session.request  # not yet: a drag may still be going on
    qtbot.waitUntil(lambda: session.document.history[-1].request == session.request, timeout=5000)


def test_history_has_one_entry_per_step_and_restores(qtbot, session):
    first = session.request
    for value in (0.3, 0.6):
        session.set_param("d0", value, "drag", merge="d0:1")
        settle(qtbot, session)
    session.change("Seed", seed=5)
    settle(qtbot, session)
    history = session.document.history
    assert [h.request for h in history] == [first, first.with_param("d0", 0.6),
                                            first.with_param("d0", 0.6).with_(seed=5)]
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
    assert session.request.latent == one.latent and edits(session.request) == {}
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
    images, labels = session.bridge.engine.family.encoded[0]  # on the worker, by the work function
    assert images.shape == (2, 16, 16) and labels == ["A", "b"]
    assert [j.kind for j in session.bridge.engine.submitted if j.lane == "export"] == ["work"]
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
    session.set_param("d2", -1.25, "d2")
    session.set_param("prompt", "Ab b", "Prompt")
    wanted = session.request
    out = tmp_path / "exports" / f"out{suffix}"
    out.parent.mkdir()
    with qtbot.waitSignal(session.message, timeout=5000, check_params_cb=lambda level, text, d: "Exported" in text):
        session.export(out)
    stored = read_request(out)
    assert stored == wanted.with_(model_hash=FAKE_SHA256)  # the hash of the weights that rendered it
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
    session.set_param("d0", 0.75, "d0")
    settle(qtbot, session)
    with qtbot.waitSignal(session.latents_changed, timeout=5000):
        session.save_latent("kept")
    assert session.modified
    assert session.save(tmp_path / "poster")
    assert session.path == tmp_path / "poster.lstudio" and not session.modified
    on_disk = load_document(session.path)
    assert on_disk.request == session.request and [e.name for e in on_disk.latents] == ["kept"]
    assert on_disk.history and on_disk.models[0].id == "tiny" and on_disk.models[0].sha256 == FAKE_SHA256

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
    session.set_param("d0", 1.0, "d0")
    session.new_document()
    assert not session.modified and session.path is None and edits(session.request) == {}
    assert session.document.history == [] and session.undo.count() == 0


# --- the Edit menu's actions over the core's undo stack ----------------------------------------------------------


def test_undo_actions_name_the_step_and_follow_the_stack(qtbot, session):
    from PySide6.QtWidgets import QWidget

    host = QWidget()
    qtbot.addWidget(host)
    actions = UndoActions(session.undo, host)
    undo, redo = actions.undo, actions.redo
    assert not undo.isEnabled() and undo.text() == "&Undo" and not redo.isEnabled()
    indexes, cleans = [], []
    session.undo.indexChanged.connect(indexes.append)
    session.undo.cleanChanged.connect(cleans.append)
    session.change("Seed 5", seed=5)
    assert undo.isEnabled() and undo.text() == "&Undo Seed 5" and undo.toolTip() == "Undo Seed 5"
    assert indexes == [1] and cleans == [False] and session.modified
    undo.trigger()
    assert session.request.seed == 0 and not undo.isEnabled()
    assert redo.isEnabled() and redo.text() == "&Redo Seed 5" and cleans == [False, True]
    redo.trigger()
    assert session.request.seed == 5 and indexes == [1, 0, 1]
    session.change("Rock & roll", seed=6)
    assert undo.text() == "&Undo Rock && roll"  # a literal ampersand, not a mnemonic
    session.undo.setClean()
    assert not session.modified and session.undo.isClean() and session.undo.text(0) == "Seed 5"


def test_the_window_title_follows_the_undo_index(qtbot, session):
    changes = []
    session.document_changed.connect(lambda: changes.append(session.modified))
    session.set_param("d0", 1.0, "d0")
    session.undo.undo()
    assert changes == [True, False]


# --- work functions on the export lane --------------------------------------------------------------------------------


def test_variations_land_as_tiles_and_one_becomes_the_latent(qtbot, session):
    counts = []
    session.variations_changed.connect(lambda: counts.append(len(session.variations)))
    session.render_variations(count=3, strength=0.5)
    qtbot.waitUntil(lambda: len(session.variations) == 3, timeout=5000)
    assert counts == [0, 1, 2, 3]
    varied, output = session.variations[0]
    assert 0 <= varied.param("variation_seed") <= 2**64 - 1 and varied.param("variation_strength") == 0.5
    assert int(output.data[0, 0]) == request_value(varied)
    with qtbot.waitSignal(session.request_changed, timeout=5000, check_params_cb=lambda r: r.latent is not None):
        session.use_variation(0)
    assert session.request.latent == tuple(float(v) for v in np.arange(8) + varied.seed)
    assert session.undo.undoText() == "Use variation"


def test_the_grid_is_written_on_the_worker(qtbot, session, tmp_path):
    out = tmp_path / "plot.png"
    with qtbot.waitSignal(session.message, timeout=5000,
                          check_params_cb=lambda level, text, d: "Exported the grid plot.png (2 × 3)" in text):
        session.export_grid(out, "seed=1,2", "d0=-1,0,1")
    assert read_request(out).model_id == "tiny"
    with qtbot.waitSignal(session.message, timeout=5000) as blocker:
        session.export_grid(tmp_path / "bad.png", "seed=1,2", "wobble=1")
    assert blocker.args[0] == "error" and "wobble" in blocker.args[2] and not (tmp_path / "bad.png").exists()


def test_a_projection_reports_progress_and_cancel_leaves_the_latent(qtbot, models_dir, tmp_path):
    from PIL import Image


    slow = FakeEngine(delay=1.0, steps=100, family=FakeFamily(project_steps=3))
    try:
        s = Session(slow, roots=[models_dir])
        s.refresh_models()
        s.start("tiny")
        settle(qtbot, s)
        strip = tmp_path / "strip.png"
        Image.fromarray(np.full((16, 32), 255, dtype=np.uint8)).save(strip)
        before = s.request
        progress = []
        s.bridge.task_progress.connect(lambda label, step, total: progress.append(label))
        s.encode_image(strip, "Ab")
        qtbot.waitUntil(lambda: bool(progress), timeout=5000)
        assert progress[0] == "Encode strip.png"
        with qtbot.waitSignal(s.message, timeout=5000, check_params_cb=lambda lv, text, d: "cancelled" in text) as got:
            s.bridge.cancel_tasks()
        assert got.args[0] == "info" and s.request == before
    finally:
        slow.shutdown()


# --- models ---------------------------------------------------------------------------------------------------------


def test_a_model_folder_added_in_the_window_is_kept_in_settings_toml(qtbot, session, engine, tmp_path):
    extra = tmp_path / "more"
    make_tiny_package(extra / "extra-model", "extra-model", seed=3)
    with qtbot.waitSignal(session.models_changed, timeout=5000):
        added = session.add_model_folder(extra)
    assert [e.id for e in added] == ["extra-model"] and session.entry_for("extra-model").ok
    assert load_settings().model_folders == [extra.absolute()]  # where the CLI and the next start find it
    assert any(e.id == "extra-model" for e in engine.packages)  # the engine renders it by id
    assert session.use_model("extra-model")


def test_no_import_cycle_in_the_ui():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "architecture" / "figures.py"
    spec = importlib.util.spec_from_file_location("figures", path)
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    assert [group for group in figures.cycles(figures.graph()) if any(m.startswith("studio.ui") for m in group)] == []
    assert [group for group in figures.cycles(figures.graph()) if any(m.startswith("studio.app") for m in group)] == []

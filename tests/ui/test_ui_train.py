"""The Train on Your Own Data dialog on the offscreen platform: a dozen tiny pictures, a real (tiny, CPU) training run
on its own thread, the fake engine for the studio around it. The user folders are isolated by conftest."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from studio.paths import user_data_dir, user_models_dir  # noqa: E402
from studio.ui import dialogs  # noqa: E402
from studio.ui.main_window import MainWindow  # noqa: E402
from studio.ui.session import Session  # noqa: E402
from studio.ui.training import dialog as td  # noqa: E402
from studio.ui.training.controller import DialogMonitor  # noqa: E402
from studio.ui.training.curve import MAX_CURVE_POINTS, LossCurve  # noqa: E402
from studio.ui.training.dialog import TrainDialog  # noqa: E402
from studio.ui.training.form import ERROR_COLOUR  # noqa: E402
from studio.ui.training.runs import read_checkpoint_info, slugify  # noqa: E402

RUN = 60_000  # ms: a tiny run takes a second or two; generous for a loaded machine


@pytest.fixture(autouse=True)
def _no_blocking_questions(monkeypatch):
    """A modal question would wait forever offscreen: every test answers the ones it expects."""
    monkeypatch.setattr(td, "confirm", lambda *args: pytest.fail(f"unexpected question {args[1]!r}"))
    monkeypatch.setattr(td, "ask_folder", lambda *args: pytest.fail("unexpected folder dialog"))


@pytest.fixture
def pictures(tmp_path):
    """A dozen small pictures of mixed sizes and formats (colour and grey PNGs, JPEGs), in a folder with a name that
    needs slugifying."""
    folder = tmp_path / "My Sketches!"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        h, w = int(rng.integers(12, 40)), int(rng.integers(12, 40))
        if i % 3 == 0:
            Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(folder / f"grey{i}.png")
        else:
            suffix = "png" if i % 2 else "jpg"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(folder / f"pic{i}.{suffix}")
    (folder / "notes.txt").write_text("not a picture")
    return folder


@pytest.fixture
def session(qtbot, engine, models_dir):
    s = Session(engine, roots=[models_dir, user_models_dir()])
    s.refresh_models()
    return s


@pytest.fixture
def dialog(qtbot, session):
    d = TrainDialog(session)
    qtbot.addWidget(d)
    d.show()
    yield d
    assert d.stop_and_wait(), "the training thread is still running"


def ready(qtbot, dialog, folder, steps=8, size=16):
    """Pick the folder and a tiny run (VAE, `size` px, `steps` steps); wait for the folder's summary."""
    dialog.form.family_combo.setCurrentIndex(dialog.form.family_combo.findData("vae"))
    dialog.form.size_combo.setCurrentIndex(dialog.form.size_combo.findData(size))
    dialog.form.steps_spin.setValue(steps)
    dialog.form.set_folder(folder)
    qtbot.waitUntil(lambda: dialog.form.folder_ok or dialog.form.summary_label.text().startswith("<span"),
                    timeout=10_000)


def checkpoint(model_id):
    return user_data_dir() / "runs" / model_id / "checkpoint.safetensors"


class PauseAtThree(DialogMonitor):
    """Pauses the run at step 3 exactly, through the same flag the Pause button sets."""

    def step(self, step, items, **figures):
        super().step(step, items, **figures)
        if step == 3:
            self.request_stop("pause")


def test_the_dialog_says_what_the_folder_holds(qtbot, dialog, pictures, tmp_path):
    assert not dialog.start_button.isEnabled()
    ready(qtbot, dialog, pictures)
    assert dialog.form.folder_ok
    assert "12" in dialog.form.summary_label.text() and "color:" not in dialog.form.summary_label.text()
    assert dialog.form.model_id() == "my-sketches" and dialog.form.name_edit.text() == "My Sketches!"
    assert dialog.start_button.isEnabled() and dialog.start_button.text() == "Start"

    empty = tmp_path / "empty"
    empty.mkdir()
    dialog.form.set_folder(empty)
    qtbot.waitUntil(lambda: ERROR_COLOUR in dialog.form.summary_label.text(), timeout=10_000)
    assert "no usable images" in dialog.form.summary_label.text() and str(empty) in dialog.form.summary_label.text()
    assert not dialog.start_button.isEnabled()

    dialog.form.set_folder(tmp_path / "nowhere")
    qtbot.waitUntil(lambda: ERROR_COLOUR in dialog.form.summary_label.text()
                    and "nowhere" in dialog.form.summary_label.text(), timeout=10_000)
    assert not dialog.start_button.isEnabled()


def test_a_bad_id_is_named_and_blocks_start(qtbot, dialog, pictures):
    ready(qtbot, dialog, pictures)
    dialog.form.id_edit.setText("Bad Id")
    assert "Id:" in dialog.form.model_hint.text() and ERROR_COLOUR in dialog.form.model_hint.text()
    assert not dialog.start_button.isEnabled()
    dialog.form.id_edit.setText("good-id")
    assert dialog.start_button.isEnabled()
    dialog.form.set_folder(pictures.parent / "My Sketches!")  # a typed id is kept when the folder changes
    assert dialog.form.model_id() == "good-id"


def test_start_trains_to_a_package_the_studio_can_use(qtbot, dialog, session, pictures):
    ready(qtbot, dialog, pictures)
    with qtbot.waitSignal(dialog.run_finished, timeout=RUN) as done:
        dialog.start_button.click()
        assert dialog.controller.running and not dialog.start_button.isEnabled() and dialog.pause_button.isEnabled()
    package = user_models_dir() / "my-sketches"
    assert done.args == [str(package)]
    assert (package / "model.toml").is_file() and (package / "weights.safetensors").is_file()
    # the curve got every figure the trainer reports, the previews arrived, the progress reached the end
    assert set(dialog.curve.series) == {"loss", "kl"} and dialog.curve.point_count("loss") == 8
    assert dialog.samples.shown == (8, "image") and dialog.samples.strip.count() >= 2
    assert dialog.samples.view.image() is not None and not dialog.samples.view.image().isNull()
    assert dialog.progress.value() == dialog.progress.maximum() == 8
    assert "my-sketches" in dialog.status_label.text() and str(package) in dialog.status_label.text()
    assert "12 images" in dialog.log_view.toPlainText()
    # torch trained on the training thread, never on the GUI thread
    monitor = dialog.controller.monitor
    assert monitor.step_threads and threading.get_ident() not in monitor.step_threads
    assert not dialog.controller.training_thread.is_alive()
    # the model browser lists it without a restart; "Use This Model" switches to it
    entry = session.entry_for("my-sketches")
    assert entry is not None and entry.ok
    assert dialog.use_button.isVisible() and dialog.use_button.isEnabled()
    dialog.use_button.click()
    assert session.request.model_id == "my-sketches"
    # a finished run is not offered for resuming; Start is available again
    assert dialog.start_button.text() == "Start" and dialog.start_button.isEnabled()
    assert not dialog.start_over_button.isVisible()


def test_each_family_brings_its_defaults_and_a_gan_trains_in_the_dialog(qtbot, dialog, session, pictures):
    from studio.train.folder import family_defaults

    for family in ("gan", "diffusion", "vae", "audio"):
        dialog.form.family_combo.setCurrentIndex(dialog.form.family_combo.findData(family))
        defaults = family_defaults(family)
        assert dialog.form.steps_spin.value() == defaults["steps"]
        if family == "audio":
            assert not dialog.form.size_combo.isEnabled()
        else:
            assert dialog.form.size_combo.currentData() == defaults["size"] and dialog.form.size_combo.isEnabled()
    assert family_defaults("gan")["size"] == 32  # not the VAE's 64: a 64-px GAN takes half an hour on a CPU
    dialog.form.family_combo.setCurrentIndex(dialog.form.family_combo.findData("gan"))
    dialog.form.size_combo.setCurrentIndex(dialog.form.size_combo.findData(16))
    dialog.form.steps_spin.setValue(4)
    dialog.form.set_folder(pictures)
    qtbot.waitUntil(lambda: dialog.form.folder_ok, timeout=10_000)
    with qtbot.waitSignal(dialog.run_finished, timeout=RUN):
        dialog.start_button.click()
    entry = session.entry_for("my-sketches")
    assert entry is not None and entry.ok and entry.manifest.family == "gan"
    assert dialog.samples.shown == (4, "image")


def test_pause_keeps_a_checkpoint_and_resume_finishes(qtbot, dialog, pictures):
    ready(qtbot, dialog, pictures)
    dialog.controller.monitor_factory = PauseAtThree
    with qtbot.waitSignal(dialog.run_stopped, timeout=RUN) as stopped:
        dialog.start_button.click()
    assert stopped.args == ["pause", 3]
    assert checkpoint("my-sketches").is_file()
    assert read_checkpoint_info(checkpoint("my-sketches")).step == 3
    assert dialog.pause_button.text() == "Resume" and dialog.pause_button.isEnabled()
    assert not dialog.start_button.isVisible() and not dialog.cancel_button.isEnabled()
    assert "Paused at step 3" in dialog.status_label.text()
    points = dialog.curve.point_count("loss")

    dialog.controller.monitor_factory = DialogMonitor
    with qtbot.waitSignal(dialog.run_finished, timeout=RUN):
        dialog.pause_button.click()
    assert "resumed from" in dialog.log_view.toPlainText()
    assert dialog.curve.point_count("loss") == points + 5  # the curve goes on from step 3
    assert (user_models_dir() / "my-sketches" / "model.toml").is_file()
    assert dialog.pause_button.text() == "Pause" and not dialog.pause_button.isEnabled()


def test_the_pause_button_pauses_a_long_run(qtbot, dialog, pictures):
    ready(qtbot, dialog, pictures, steps=100_000)
    with qtbot.waitSignal(dialog.progressed, timeout=RUN):
        dialog.start_button.click()
    with qtbot.waitSignal(dialog.run_stopped, timeout=RUN) as stopped:
        dialog.pause_button.click()
        assert not dialog.pause_button.isEnabled()  # asked once; the run finishes its step
    assert stopped.args[0] == "pause" and 1 <= stopped.args[1] < 100_000
    assert checkpoint("my-sketches").is_file() and dialog.pause_button.text() == "Resume"


def test_cancel_asks_after_a_few_steps_and_keeps_the_checkpoint(qtbot, dialog, pictures, monkeypatch):
    ready(qtbot, dialog, pictures, steps=100_000)
    answers = []
    monkeypatch.setattr(td, "confirm", lambda parent, title, text: answers.append(title) or len(answers) > 1)
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.progress.value() > td.CONFIRM_AFTER_STEPS, timeout=RUN)
    dialog.cancel_button.click()  # "No": training goes on
    assert answers == ["Cancel Training"] and dialog.controller.running and dialog.cancel_button.isEnabled()
    with qtbot.waitSignal(dialog.run_stopped, timeout=RUN) as stopped:
        dialog.cancel_button.click()  # "Yes"
    assert stopped.args[0] == "cancel" and len(answers) == 2
    assert checkpoint("my-sketches").is_file()
    status = dialog.status_label.text()
    assert "Cancelled" in status and "kept" in status and "resume" in status
    # the same id later: Resume (from the checkpoint) or Start Over
    assert dialog.start_button.text() == "Resume" and dialog.start_button.isEnabled()
    assert dialog.start_over_button.isVisible() and "stopped run" in dialog.form.resume_label.text()


def test_a_kept_checkpoint_is_offered_when_the_dialog_opens_again(qtbot, session, pictures, monkeypatch):
    first = TrainDialog(session)
    qtbot.addWidget(first)
    ready(qtbot, first, pictures, steps=12)
    first.controller.monitor_factory = PauseAtThree
    with qtbot.waitSignal(first.run_stopped, timeout=RUN):
        first.start()
    first.close()

    again = TrainDialog(session)
    qtbot.addWidget(again)
    again.show()
    ready(qtbot, again, pictures, steps=12)
    assert again.start_button.text() == "Resume" and again.start_over_button.isVisible()
    assert "step 3 of 12" in again.form.resume_label.text()
    # Start Over asks, deletes the checkpoint and trains from the beginning
    monkeypatch.setattr(td, "confirm", lambda parent, title, text: False)
    again.start_over_button.click()
    assert checkpoint("my-sketches").is_file() and not again.controller.running
    monkeypatch.setattr(td, "confirm", lambda parent, title, text: title == "Start Over")
    with qtbot.waitSignal(again.run_finished, timeout=RUN):
        again.start_over_button.click()
        assert again.controller.running
    assert "resumed from" not in again.log_view.toPlainText()
    assert again.curve.point_count("loss") == 12


def test_resume_later_continues_the_kept_run(qtbot, session, pictures):
    first = TrainDialog(session)
    qtbot.addWidget(first)
    ready(qtbot, first, pictures, steps=8)
    first.controller.monitor_factory = PauseAtThree
    with qtbot.waitSignal(first.run_stopped, timeout=RUN):
        first.start()

    again = TrainDialog(session)
    qtbot.addWidget(again)
    ready(qtbot, again, pictures, steps=8)
    with qtbot.waitSignal(again.run_finished, timeout=RUN):
        again.start_button.click()
    assert "resumed from" in again.log_view.toPlainText()
    assert again.curve.point_count("loss") == 5


def test_a_folder_that_disappears_is_reported_and_the_app_stays_usable(qtbot, dialog, pictures):
    ready(qtbot, dialog, pictures)
    shutil.rmtree(pictures)
    with qtbot.waitSignal(dialog.run_failed, timeout=RUN) as failed:
        dialog.start_button.click()
    assert str(pictures) in failed.args[0]
    assert "Training failed" in dialog.status_label.text() and ERROR_COLOUR in dialog.status_label.text()
    assert not dialog.controller.running and not dialog.controller.training_thread.is_alive()
    # the form says what is wrong; once the folder is back, Start is available again
    qtbot.waitUntil(lambda: ERROR_COLOUR in dialog.form.summary_label.text(), timeout=10_000)
    assert not dialog.start_button.isEnabled()
    pictures.mkdir()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(pictures / "one.png")
    dialog.form.rescan()
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled(), timeout=10_000)


def test_an_unexpected_error_is_shown_and_start_comes_back(qtbot, dialog, pictures):
    class Broken(DialogMonitor):
        def step(self, step, items, **figures):
            raise ValueError("the monitor broke")

    ready(qtbot, dialog, pictures)
    dialog.controller.monitor_factory = Broken
    with qtbot.waitSignal(dialog.run_failed, timeout=RUN) as failed:
        dialog.start_button.click()
    assert failed.args == ["ValueError: the monitor broke"]
    assert "the monitor broke" in dialog.status_label.text() and "Traceback" in dialog.log_view.toPlainText()
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled(), timeout=10_000)
    assert not dialog.controller.running


def test_closing_the_dialog_while_training_asks_and_cancels(qtbot, dialog, pictures, monkeypatch):
    ready(qtbot, dialog, pictures, steps=100_000)
    with qtbot.waitSignal(dialog.progressed, timeout=RUN):
        dialog.start_button.click()
    monkeypatch.setattr(td, "confirm", lambda parent, title, text: False)
    dialog.close_button.click()
    assert dialog.isVisible() and dialog.controller.training_thread.is_alive()
    monkeypatch.setattr(td, "confirm", lambda parent, title, text: True)
    dialog.close_button.click()
    assert not dialog.isVisible() and not dialog.controller.training_thread.is_alive()
    assert checkpoint("my-sketches").is_file()
    qtbot.waitUntil(lambda: not dialog.controller.running, timeout=10_000)  # the queued end arrives


def test_closing_the_main_window_stops_training(qtbot, session, pictures, tmp_path, monkeypatch):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    window = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    assert window.act_train in window.menuBar().actions()[0].menu().actions()
    window.act_train.trigger()
    dialog = window.train_dialog
    assert isinstance(dialog, TrainDialog) and dialog.isVisible()
    window.act_train.trigger()
    assert window.train_dialog is dialog  # one dialog
    ready(qtbot, dialog, pictures, steps=100_000)
    with qtbot.waitSignal(dialog.progressed, timeout=RUN):
        dialog.start_button.click()
    thread = dialog.controller.training_thread
    monkeypatch.setattr(td, "confirm", lambda parent, title, text: False)
    assert not window.close() and thread.is_alive()  # "keep training": the app stays open
    monkeypatch.setattr(td, "confirm", lambda parent, title, text: True)
    assert window.close()
    assert not thread.is_alive() and checkpoint("my-sketches").is_file()


def test_the_loss_curve_keeps_a_bounded_number_of_points(qtbot):
    curve = LossCurve()
    qtbot.addWidget(curve)
    curve.resize(400, 240)
    curve.grab()  # empty: the placeholder
    for step in range(1, 20_001):
        curve.add(step, {"loss": 100.0 / step + 1.0, "kl": 0.01 * step, "bad": float("nan")})
    assert 0 < curve.point_count("loss") <= MAX_CURVE_POINTS + 1
    assert curve.series["loss"].steps[0] == 1 and curve.series["loss"].steps[-1] > 19_000
    assert curve.log_scale and curve.series["bad"].values == []
    assert not curve.grab().isNull()
    curve.add(20_001, {"loss": -1.0})  # a negative figure: a linear axis
    assert not curve.log_scale
    assert not curve.grab().isNull()


def test_grey_colour_and_sound_samples_are_shown(qtbot, dialog):
    relay = dialog.controller.relay
    with qtbot.waitSignal(dialog.sample_shown, timeout=5000):
        relay.sample.emit(5, np.zeros((8, 8), np.uint8), "image", 0)
    with qtbot.waitSignal(dialog.sample_shown, timeout=5000):
        relay.sample.emit(10, np.full((8, 12, 3), 200, np.uint8), "image", 0)
    assert dialog.samples.view.image().width() == 12 and dialog.samples.shown == (10, "image")
    with qtbot.waitSignal(dialog.sample_shown, timeout=5000):
        relay.sample.emit(15, np.sin(np.linspace(0, 60, 4000)).astype(np.float32), "audio", 8000)
    assert dialog.samples.shown == (15, "audio") and dialog.samples.stack.currentWidget() is dialog.samples.audio_view
    assert dialog.samples.strip.count() == 3
    dialog.samples.strip.setCurrentRow(0)  # an earlier one, large
    assert dialog.samples.stack.currentWidget() is dialog.samples.view and "step 5" in dialog.samples.caption.text()


def test_slugify_and_the_checkpoint_reader(tmp_path):
    assert slugify("My Sketches!") == "my-sketches"
    assert slugify("..Été 2024..") == "t-2024"
    assert slugify("!!!") == "mine"
    assert read_checkpoint_info(tmp_path / "missing.safetensors") is None
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 20)
    assert read_checkpoint_info(tmp_path / "junk.safetensors") is None

"""Train on Your Own Data: a non-modal dialog that trains a model package on a folder of pictures or sounds.

The artist picks a folder, a family, a size, the steps and a name (the form, studio.ui.training.form, says what the
folder holds); Start runs the family's folder trainer on the training thread (studio.ui.training.controller), and the
dialog shows the loss curve (curve), the samples (samples), the progress and the log as they arrive. Pause and Cancel
make the trainer save a checkpoint and stop, so Resume (now, or later with the same id) continues where it stopped.
When the run finishes the package is in the user models folder, the model browser lists it, and "Use This Model"
switches to it.

Torch runs only on the training thread; the widgets are touched only on the GUI thread, by the controller's signals.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QFontDatabase
from PySide6.QtWidgets import (QDialog, QFileDialog, QHBoxLayout, QLabel, QMessageBox, QPlainTextEdit, QProgressBar,
                               QPushButton, QSplitter, QVBoxLayout, QWidget)

from studio.paths import user_models_dir
from studio.ui.session import INFO
from studio.ui.training.controller import TrainingController
from studio.ui.training.curve import LossCurve
from studio.ui.training.form import ERROR_COLOUR, NOTE_COLOUR, OK_COLOUR, MessageLabel, TrainForm
from studio.ui.training.runs import CHECKPOINT_NAME, FAMILY_LABELS, clock, recipe_settings, runs_dir
from studio.ui.training.samples import SamplePanel

CONFIRM_AFTER_STEPS = 10  # Cancel asks first once more steps than this are done
LOG_LINES = 2000


# --- questions (tests monkeypatch these, as they do studio.ui.dialogs) ------------------------------------------------

def ask_folder(parent: QWidget, start: str = "") -> str:
    """The folder to train on ("" when cancelled)."""
    return QFileDialog.getExistingDirectory(parent, "Train on the Pictures or Sounds in…", start)


def confirm(parent: QWidget, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


class TrainDialog(QDialog):
    """File → Train on Your Own Data…: pick a folder, train a model on it, watch it learn, use it."""

    progressed = Signal(int)  # the newest step shown (GUI thread)
    sample_shown = Signal(int)  # the step of a sample just shown
    run_finished = Signal(str)  # the package folder
    run_stopped = Signal(str, int)  # reason, step
    run_failed = Signal(str)  # the message shown

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("trainDialog")
        self.setWindowTitle("Train on Your Own Data")
        self.setModal(False)
        self.setAcceptDrops(True)
        self.setSizeGripEnabled(True)
        self.resize(980, 800)
        self.controller = TrainingController(self)
        self._run_id = ""  # the id of the run in flight (or the last one)
        self._paused_id = ""  # the id this dialog paused: its Pause button offers Resume
        self._total = self._start_step = self._step = self._items = 0
        self._t0 = 0.0
        self._unit = "img"
        self.package: Path | None = None  # the newest package a run wrote
        self._build()
        self._connect()
        self._update_buttons()

    # --- construction ---------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.form = TrainForm(self.session)
        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setToolTip("Training steps done")
        self.progress.setFormat("Not started")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.stats_label = QLabel()
        self.stats_label.setObjectName("trainStats")
        self.stats_label.setToolTip("Time so far, time left at the pace so far, and examples learnt per second")
        self.stats_label.setMinimumWidth(1)
        self.curve = LossCurve()
        self.samples = SamplePanel()
        self.log_view = QPlainTextEdit()
        self.log_view.setObjectName("trainLog")
        self.log_view.setToolTip("What the trainer reports")
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.log_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log_view.setPlaceholderText("The trainer's messages appear here")
        self.status_label = MessageLabel("trainStatus")

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("trainStart")
        self.start_button.setDefault(True)
        self.start_over_button = QPushButton("Start Over")
        self.start_over_button.setObjectName("trainStartOver")
        self.start_over_button.setToolTip("Delete the stopped run's checkpoint and train from the beginning")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("trainPause")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("trainCancel")
        self.cancel_button.setToolTip("Stop training (a checkpoint is kept: pick the same id later to resume)")
        self.use_button = QPushButton("Use This Model")
        self.use_button.setObjectName("trainUse")
        self.use_button.setToolTip("Switch the studio to the model just trained")
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("trainClose")
        self.close_button.setToolTip("Close this window (training running is cancelled first, after asking)")
        self.close_button.setAutoDefault(False)

        # layout: the settings on top, then progress, the curve beside the newest sample, the strip, the log
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 3)
        progress_row.addWidget(self.stats_label, 2)
        watch = QSplitter(Qt.Orientation.Horizontal)
        watch.setObjectName("trainWatch")
        watch.addWidget(self.curve)
        watch.addWidget(self.samples)
        watch.setStretchFactor(0, 3)
        watch.setStretchFactor(1, 2)
        watch.setChildrenCollapsible(False)
        lower = QSplitter(Qt.Orientation.Vertical)
        lower.setObjectName("trainLower")
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(watch, 1)
        top_layout.addWidget(self.samples.strip)
        lower.addWidget(top)
        lower.addWidget(self.log_view)
        lower.setStretchFactor(0, 4)
        lower.setStretchFactor(1, 1)
        lower.setChildrenCollapsible(False)
        lower.setSizes([460, 110])
        buttons = QHBoxLayout()
        for button in (self.start_button, self.start_over_button, self.pause_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addLayout(progress_row)
        layout.addWidget(lower, 1)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)

    def _connect(self) -> None:
        c = self.controller
        c.started.connect(self._on_started)
        c.stepped.connect(self._on_steps)
        c.sampled.connect(self._on_sample)
        c.logged.connect(self._on_log)
        c.finished.connect(self._on_done)
        c.stopped.connect(self._on_stopped)
        c.failed.connect(self._on_failed)
        self._clock_timer = QTimer(self)  # the elapsed time moves on between steps (a slow step, loading)
        self._clock_timer.setInterval(1000)
        self._clock_timer.timeout.connect(self._update_stats)
        self.form.changed.connect(self._update_buttons)
        self.form.browse_button.clicked.connect(self.browse)
        self.start_button.clicked.connect(self._on_start_clicked)
        self.start_over_button.clicked.connect(self.start_over)
        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_model)
        self.close_button.clicked.connect(self.close)

    def browse(self) -> None:
        chosen = ask_folder(self, self.form.folder())
        if chosen:
            self.form.set_folder(chosen)

    def _say(self, text: str, colour: str | None = None) -> None:
        """The status line under the log (hidden when there is nothing to say)."""
        self.status_label.setVisible(bool(text))
        self.status_label.say(text, colour)

    @Slot()
    def _update_buttons(self) -> None:
        form, running = self.form, self.controller.running
        model_id = form.model_id()
        resumable = form.resume_info is not None
        paused_here = not running and resumable and self._paused_id == model_id
        form.set_running(running)
        self.start_button.setVisible(not paused_here)
        self.start_button.setText("Resume" if resumable and not running else "Start")
        self.start_button.setToolTip("Continue the stopped run from its checkpoint" if resumable else
                                     "Train a new model on the folder")
        self.start_button.setEnabled(not running and form.id_ok and (resumable or form.folder_ok)
                                     and form.family() in form.families)
        self.start_over_button.setVisible(resumable and not running)
        self.start_over_button.setEnabled(not running and form.id_ok and form.folder_ok)
        self.pause_button.setText("Resume" if paused_here else "Pause")
        self.pause_button.setToolTip("Continue training from the checkpoint" if paused_here else
                                     "Save a checkpoint and stop; Resume continues where it stopped")
        self.pause_button.setEnabled(paused_here or (running and not self.controller.stopping))
        self.cancel_button.setEnabled(running and not self.controller.stopping)
        self.use_button.setVisible(self.package is not None)
        self.use_button.setEnabled(self.package is not None and not running)

    # --- running --------------------------------------------------------------------------------------------------
    def _on_start_clicked(self) -> None:
        self.start(resume=self.form.resume_info is not None)

    def start(self, resume: bool = False) -> bool:
        """Start training (or resume the id's stopped run) on the training thread; False when it cannot start."""
        form = self.form
        if self.controller.running:
            return False
        model_id = form.model_id()
        if not form.id_ok:
            form.update_model_hint()
            return False
        family = form.family()
        info = form.resume_info if resume else None
        if info is not None and info.family in FAMILY_LABELS:
            family = info.family  # the run continues as the family that started it
        wanted = form.settings(family)
        try:
            settings = recipe_settings(family, wanted)
        except (ImportError, AttributeError, ValueError) as exc:
            self._report_failure(f"the {FAMILY_LABELS[family]} trainer cannot be loaded ({exc})", "")
            return False
        folder = Path(info.folder if info is not None and info.folder else form.folder())
        kwargs: dict = dict(folder=folder, out=user_models_dir() / model_id, run_dir=runs_dir() / model_id,
                            model_id=model_id, resume=resume, **settings)
        kwargs["family"] = family
        continuing = resume and self._paused_id == model_id and self._run_id == model_id
        if not continuing:
            self.curve.clear()
            self.samples.clear()
            self.log_view.clear()
        self.package = None
        self._paused_id, self._run_id = "", model_id
        form.forget_resume()
        self._total = self._start_step = self._step = self._items = 0
        self._t0 = time.monotonic()
        self.controller.start(kwargs)
        verb = "Resuming" if resume else "Starting"
        self._say(f"{verb} “{wanted['name']}”…")
        self.stats_label.setText("")
        self._on_log(f"{verb.lower()} {model_id}: {FAMILY_LABELS[family]} on {folder}")
        self._clock_timer.start()
        self._update_buttons()
        return True

    def start_over(self) -> None:
        """Delete the id's stopped run (after asking) and train from the beginning with the settings shown."""
        info, model_id = self.form.resume_info, self.form.model_id()
        if info is None or self.controller.running:
            return
        if not confirm(self, "Start Over", f"Delete the checkpoint of “{model_id}” at step {info.step:,} and train "
                                           "from the beginning?"):
            return
        run_dir = runs_dir() / model_id
        try:
            for name in (CHECKPOINT_NAME, "checkpoint.tmp"):
                (run_dir / name).unlink(missing_ok=True)
        except OSError as exc:
            self._report_failure(f"{run_dir / CHECKPOINT_NAME}: cannot be deleted ({exc.strerror or exc})", "")
            return
        self._paused_id = ""
        self.form.update_resume()
        self.start(resume=False)

    def _on_pause_clicked(self) -> None:
        if self.controller.running:
            self.request_stop("pause")
        elif self.form.resume_info is not None:
            self.start(resume=True)

    def cancel(self) -> None:
        """Stop the run (asking first once more than a few steps are done); its checkpoint is kept."""
        if not self.controller.running or self.controller.stopping == "cancel":
            return
        if self._step > CONFIRM_AFTER_STEPS and not confirm(
                self, "Cancel Training", f"Stop training “{self._run_id}” at step {self._step:,}?\n\n"
                                         "A checkpoint is kept: pick the same id later to resume it."):
            return
        self.request_stop("cancel")

    def request_stop(self, reason: str) -> None:
        """Ask the run to save a checkpoint and stop after its step ("pause" or "cancel")."""
        if not self.controller.running:
            return
        self.controller.request_stop(reason)
        what = "Pausing" if reason == "pause" else "Cancelling"
        self._say(f"{what}: saving a checkpoint after this step…")
        self._update_buttons()

    def stop_and_wait(self, timeout: float | None = 120.0) -> bool:
        """Cancel the run (checkpoint kept) and wait for its thread, and for any folder scan; True when none is left
        running. Blocks the GUI thread until the trainer reaches its next step."""
        stopped = self.controller.stop_and_wait(timeout)
        self.form.wait_for_scans()
        return stopped

    def stop_for_quit(self) -> bool:
        """Before the app quits: when training runs, ask; then cancel it (checkpoint kept) and wait. False when the
        user wants to keep training (the app stays open)."""
        if self.controller.training:
            if not confirm(self, "Training Is Running", f"Stop training “{self._run_id}” and quit?\n\n"
                                                        "A checkpoint is kept: train the same id later to resume."):
                return False
        self.stop_and_wait()
        return True

    # --- results (GUI thread, from the controller) ------------------------------------------------------------------
    @Slot(int, int, str)
    def _on_started(self, total: int, start: int, unit: str) -> None:
        self._total, self._start_step, self._step, self._unit = total, start, start, unit or "img"
        self._items = 0
        self._t0 = time.monotonic()
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(start)
        self.progress.setFormat("%v / %m steps")
        since = f" from step {start:,}" if start else ""
        self._say(f"Training “{self._run_id}”{since}…")
        self._update_stats()

    @Slot(object)
    def _on_steps(self, batch: list) -> None:
        for step, items, figures in batch:
            self.curve.add(step, figures)
            self._items += items
        self._step = batch[-1][0]
        self.progress.setValue(min(self._step, self.progress.maximum()))
        self.curve.update()
        self._update_stats()
        self.progressed.emit(self._step)

    def _update_stats(self) -> None:
        if not self.controller.running or not self._total:
            return
        elapsed = time.monotonic() - self._t0
        done = self._step - self._start_step
        parts = [f"{clock(elapsed)} elapsed"]
        if done > 0:
            parts.append(f"{clock((self._total - self._step) * elapsed / done)} left")
        if elapsed > 0 and self._items:
            parts.append(f"{self._items / elapsed:,.0f} {self._unit}/s")
        self.stats_label.setText(" · ".join(parts))

    @Slot(int, object, str, int)
    def _on_sample(self, step: int, data: np.ndarray, kind: str, sample_rate: int) -> None:
        try:
            self.samples.add(step, data, kind, sample_rate)
        except ValueError as exc:
            self._on_log(f"sample at step {step} cannot be shown: {exc}")
            return
        self.sample_shown.emit(step)

    @Slot(str)
    def _on_log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _finish_run(self) -> None:
        self._update_buttons()  # the controller says the run has ended: the settings can change again
        self._clock_timer.stop()
        elapsed = time.monotonic() - self._t0
        if self._total:
            rate = f" · {self._items / elapsed:,.0f} {self._unit}/s" if elapsed > 0 and self._items else ""
            self.stats_label.setText(f"{clock(elapsed)} this session{rate}")

    @Slot(str)
    def _on_done(self, path: str) -> None:
        self._finish_run()
        self.package = Path(path)
        self.progress.setValue(self.progress.maximum())
        name = self.form.name_edit.text().strip() or self._run_id
        self._say(f"Finished: the model “{name}” was written to {path}. It is in the model browser now.", OK_COLOUR)
        self._add_to_models(self.package)
        self.form.update_model_hint()
        self.form.update_resume()
        self.run_finished.emit(path)

    def _add_to_models(self, package: Path) -> None:
        """Make the new package appear in the model browser (on the GUI thread, where the session lives)."""
        session = self.session
        session.refresh_models()
        key = package.resolve()
        mine = [e for e in session.entries if e.folder.resolve() == key]
        if not mine:  # the session does not look in the user models folder: add the package itself
            session.add_model_folder(package)
            mine = [e for e in session.entries if e.folder.resolve() == key]
        if not mine or not mine[0].ok:
            why = str(mine[0].error) if mine else "the model browser does not list it"
            self._say(f"The model was written to {package}, but it cannot be used: {why}", ERROR_COLOUR)
            self.package = None
        else:
            session.message.emit(INFO, f"Trained {self._run_id}", str(package))
        self._update_buttons()

    @Slot(int, str)
    def _on_stopped(self, step: int, reason: str) -> None:
        self._finish_run()
        run_dir = runs_dir() / self._run_id
        if reason == "pause":
            self._paused_id = self._run_id
            self._say(f"Paused at step {step:,}. The checkpoint is in {run_dir}; Resume continues from it.")
        else:
            self._say(f"Cancelled at step {step:,}. The checkpoint is kept in {run_dir}: pick the id "
                      f"“{self._run_id}” again to resume it later.", NOTE_COLOUR)
        self._on_log(f"{'paused' if reason == 'pause' else 'cancelled'} at step {step}")
        self.form.update_resume()
        self.run_stopped.emit(reason, step)

    @Slot(str, str)
    def _on_failed(self, message: str, detail: str) -> None:
        self._finish_run()
        self._report_failure(message, detail)
        self.form.update_resume()
        self.form.rescan()  # the folder may be what went wrong: the form says so, and Start waits for a good one

    def _report_failure(self, message: str, detail: str) -> None:
        self._say(f"Training failed: {message}", ERROR_COLOUR)
        self._on_log(f"error: {message}")
        if detail:
            self._on_log(detail.rstrip())
        self._update_buttons()
        self.run_failed.emit(message)

    def use_model(self) -> None:
        """Switch the studio to the model just trained (one undoable step, as the model browser does)."""
        if self.package is not None and self.session.use_model(self._run_id):
            self._say(f"The studio now uses “{self._run_id}”.", OK_COLOUR)

    # --- closing and dropping -------------------------------------------------------------------------------------
    def reject(self) -> None:
        """Close (Esc, the Close button, the title bar): while training runs, ask, then cancel it and wait."""
        if self.controller.training:
            if not confirm(self, "Training Is Running", f"Cancel training “{self._run_id}” and close?\n\n"
                                                        "A checkpoint is kept: pick the same id later to resume."):
                return
        self.stop_and_wait()
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.reject()
        if self.isVisible():
            event.ignore()
        else:
            event.accept()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if not self.controller.running and any(u.isLocalFile() and Path(u.toLocalFile()).is_dir() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        folders = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        folders = [p for p in folders if p.is_dir()]
        if folders and not self.controller.running:
            event.acceptProposedAction()
            self.form.set_folder(folders[0])

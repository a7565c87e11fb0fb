"""The training thread of the dialog and its bridge to the GUI thread.

`TrainingController.start` runs `studio.train.folder.train_folder` on a thread of its own with a `DialogMonitor`: the
monitor forwards the steps with their loss figures, the samples and the log lines through queued signals of a relay,
and answers `stop_requested` from a flag that `request_stop` (Pause, Cancel) sets; the trainer then saves a checkpoint
and stops. The controller lives on the GUI thread: its slots receive the relay's signals there, keep the run's state
(running, stopping) and pass the news on as its own signals. Torch runs only on the training thread; nothing here
touches a widget.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot

from studio.errors import StudioError
from studio.train.monitor import Monitor, TrainingStopped
from studio.ui.training.runs import train_folder

log = logging.getLogger(__name__)

EMIT_INTERVAL = 0.05  # seconds: the monitor sends steps to the GUI at most this often (samples and logs at once)


class _Relay(QObject):
    """Signals the training thread emits; the controller's slots receive them, queued, on the GUI thread."""

    started = Signal(int, int, str)  # total, start step, unit
    steps = Signal(object)  # [(step, items, {figure: value}), …] since the last batch
    sample = Signal(int, object, str, int)  # step, array, kind, sample rate
    log = Signal(str)
    done = Signal(str)  # the package folder
    stopped = Signal(int, str)  # step, reason ("pause" | "cancel")
    failed = Signal(str, str)  # message, detail (a traceback for unexpected errors)


def _emit(signal, *args) -> None:
    try:
        signal.emit(*args)
    except RuntimeError:  # the dialog (and its relay) is gone: nobody is listening
        pass


class DialogMonitor(Monitor):
    """The trainer's monitor for the dialog. Runs on the training thread: it only emits queued signals (steps in
    batches at most every EMIT_INTERVAL) and reads the stop flag that the GUI sets with `request_stop`."""

    wants_samples = True

    def __init__(self, relay: _Relay):
        super().__init__(log=lambda text: _emit(relay.log, str(text)))
        self._relay = relay
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._pending: list[tuple[int, int, dict[str, float]]] = []
        self._last_emit = 0.0
        self.step_threads: set[int] = set()  # the threads that reported steps (tests check it is not the GUI's)

    # GUI thread
    def request_stop(self, reason: str) -> None:
        """Ask the run to save a checkpoint and stop after its current step ("pause" or "cancel"; cancel wins)."""
        with self._lock:
            if self._reason != "cancel":
                self._reason = reason

    # training thread
    def stop_requested(self) -> str | None:
        with self._lock:
            return self._reason

    def start(self, total: int, start: int, unit: str = "img") -> None:
        _emit(self._relay.started, int(total), int(start), unit)

    def step(self, step: int, items: int, **figures: float) -> None:
        self.step_threads.add(threading.get_ident())
        self._pending.append((int(step), int(items), {k: float(v) for k, v in figures.items()}))
        if time.monotonic() - self._last_emit >= EMIT_INTERVAL:
            self.flush()

    def sample(self, step: int, output: np.ndarray, kind: str = "image", sample_rate: int = 0) -> None:
        self.flush()
        _emit(self._relay.sample, int(step), np.array(output, copy=True), kind, int(sample_rate))

    def log(self, text: str) -> None:
        _emit(self._relay.log, str(text))

    def finish(self) -> None:
        self.flush()

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._last_emit = time.monotonic()
            _emit(self._relay.steps, batch)


def _train(monitor: DialogMonitor, relay: _Relay, kwargs: dict) -> None:
    """The training thread: run `train_folder` and report how it ended (always exactly one of done/stopped/failed)."""
    outcome: tuple = (relay.failed, "training stopped unexpectedly", "")
    try:
        import torch

        from studio.engine.device import default_threads

        torch.set_num_threads(default_threads())  # every core but one: the GUI stays responsive
        path = train_folder(log=monitor.log, monitor=monitor, **kwargs)
        outcome = (relay.done, str(path))
    except TrainingStopped as stop:
        outcome = (relay.stopped, stop.step, stop.reason)
    except StudioError as exc:
        outcome = (relay.failed, str(exc), "")
    except Exception as exc:  # noqa: BLE001 — every failure reaches the dialog, none kills the thread silently
        log.exception("training failed")
        outcome = (relay.failed, f"{type(exc).__name__}: {exc}", traceback.format_exc())
    finally:
        monitor.flush()
        _emit(*outcome)


class TrainingController(QObject):
    """One training run at a time on its own thread: start it, ask it to pause or cancel (it saves a checkpoint and
    stops after its step), wait for it. Its signals arrive on the GUI thread, in the order the run sent them; exactly
    one of finished, stopped or failed ends a run."""

    started = Signal(int, int, str)  # total, start step, unit
    stepped = Signal(object)  # [(step, items, {figure: value}), …]
    sampled = Signal(int, object, str, int)  # step, array, kind, sample rate
    logged = Signal(str)
    finished = Signal(str)  # the package folder
    stopped = Signal(int, str)  # step, reason
    failed = Signal(str, str)  # message, detail

    monitor_factory = DialogMonitor  # the monitor class a run gets (tests put a subclass here)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.relay = _Relay(self)
        self._thread: threading.Thread | None = None
        self._monitor: DialogMonitor | None = None
        self._running = False
        self.stopping = ""  # the stop reason asked for while the run finishes its step
        queued = Qt.ConnectionType.QueuedConnection
        self.relay.started.connect(self._on_started, queued)
        self.relay.steps.connect(self._on_steps, queued)
        self.relay.sample.connect(self._on_sample, queued)
        self.relay.log.connect(self._on_log, queued)
        self.relay.done.connect(self._on_done, queued)
        self.relay.stopped.connect(self._on_stopped, queued)
        self.relay.failed.connect(self._on_failed, queued)

    @property
    def running(self) -> bool:
        """A run was started and its end has not reached the GUI thread yet."""
        return self._running

    @property
    def training(self) -> bool:
        """The training thread is still at work (its end has not reached the GUI thread yet)."""
        return self._running and self._thread is not None and self._thread.is_alive()

    @property
    def monitor(self) -> DialogMonitor | None:
        return self._monitor

    @property
    def training_thread(self) -> threading.Thread | None:
        """The Python thread the run trains on (None before the first start)."""
        return self._thread

    def start(self, settings: dict) -> bool:
        """Run `train_folder(**settings)` on the training thread; False when a run is in flight already."""
        if self._running:
            return False
        self.stopping = ""
        self._monitor = self.monitor_factory(self.relay)
        self._thread = threading.Thread(target=_train, args=(self._monitor, self.relay, settings),
                                        name="latent-studio-train", daemon=True)
        self._running = True
        self._thread.start()
        return True

    def request_stop(self, reason: str) -> None:
        """Ask the run to save a checkpoint and stop after its step ("pause" or "cancel")."""
        if self._monitor is None or not self._running:
            return
        self._monitor.request_stop(reason)
        self.stopping = reason

    def stop_and_wait(self, timeout: float | None = 120.0) -> bool:
        """Cancel the run (checkpoint kept) and wait for its thread; True when it is not running any more. Blocks the
        GUI thread until the trainer reaches its next step."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            if self._monitor is not None:
                self._monitor.request_stop("cancel")
            thread.join(timeout)
        return not (thread is not None and thread.is_alive())

    def _end(self) -> None:
        self._running = False
        self.stopping = ""

    # --- from the training thread, queued -------------------------------------------------------------------------
    @Slot(int, int, str)
    def _on_started(self, total: int, start: int, unit: str) -> None:
        self.started.emit(total, start, unit)

    @Slot(object)
    def _on_steps(self, batch: list) -> None:
        self.stepped.emit(batch)

    @Slot(int, object, str, int)
    def _on_sample(self, step: int, data: np.ndarray, kind: str, sample_rate: int) -> None:
        self.sampled.emit(step, data, kind, sample_rate)

    @Slot(str)
    def _on_log(self, text: str) -> None:
        self.logged.emit(text)

    @Slot(str)
    def _on_done(self, path: str) -> None:
        self._end()
        self.finished.emit(path)

    @Slot(int, str)
    def _on_stopped(self, step: int, reason: str) -> None:
        self._end()
        self.stopped.emit(step, reason)

    @Slot(str, str)
    def _on_failed(self, message: str, detail: str) -> None:
        self._end()
        self.failed.emit(message, detail)

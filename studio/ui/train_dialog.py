"""Train on Your Own Data: a non-modal dialog that trains a model package on a folder of pictures or sounds.

The artist picks a folder, a family, a size, the steps and a name; the dialog says what the folder holds (scanned on
a worker thread, newest wins) and starts `studio.train.folder.train_folder` on a training thread. A `DialogMonitor`
forwards the steps with their loss figures, the samples and the log lines to the GUI thread through queued signals,
and answers `stop_requested` from a flag that Pause and Cancel set: the trainer then saves a checkpoint and stops, so
Resume (now, or later with the same id) continues where it stopped. When the run finishes the package is in the
user models folder, the model browser lists it, and "Use This Model" switches to it.

Torch runs only on the training thread; the widgets are touched only by slots on the GUI thread.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import struct
import threading
import time
import tomllib
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (QCloseEvent, QColor, QDragEnterEvent, QDropEvent, QFontDatabase, QIcon, QImage, QPainter,
                           QPaintEvent, QPen, QPixmap, QPolygonF)
from PySide6.QtWidgets import (QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QListView, QListWidget, QListWidgetItem, QMessageBox, QPlainTextEdit, QProgressBar,
                               QPushButton, QSizePolicy, QSpinBox, QSplitter, QStackedWidget, QVBoxLayout, QWidget)

from studio.errors import StudioError
from studio.manifest import package_id_from
from studio.paths import user_data_dir, user_models_dir
from studio.train.monitor import Monitor, TrainingStopped
from studio.ui.canvas import qimage_from_array
from studio.ui.session import INFO

log = logging.getLogger(__name__)

FAMILY_LABELS = {"vae": "VAE", "gan": "GAN", "diffusion": "Diffusion", "audio": "Sound"}
FAMILY_TIPS = {"vae": "A variational autoencoder: quick to train, smooth latent space, somewhat soft pictures",
               "gan": "A generative adversarial network: sharper pictures, longer and less steady training",
               "diffusion": "A diffusion model: the best pictures, the longest training and rendering",
               "audio": "A sound VAE: trains on a folder of short sounds"}
IMAGE_FAMILIES = ("vae", "gan", "diffusion")
SIZES = (16, 32, 64, 128)
DEFAULT_SIZE = 64
DEFAULT_STEPS = 2000
FITS = {"crop": "Crop", "pad": "Pad", "stretch": "Stretch"}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # as model.toml's id
CHECKPOINT_NAME = "checkpoint.safetensors"
CONFIRM_AFTER_STEPS = 10  # Cancel asks first once more steps than this are done
EMIT_INTERVAL = 0.05  # seconds: the monitor sends steps to the GUI at most this often (samples and logs at once)
SCAN_DELAY_MS = 250  # typing in the folder field rescans once it pauses this long
MAX_CURVE_POINTS = 2000  # per figure: older points are averaged in pairs beyond this
MAX_STRIP = 48  # earlier samples kept in the strip
LOG_LINES = 2000
ERROR_COLOUR = "#e5534b"
NOTE_COLOUR = "#d29922"
OK_COLOUR = "#7bd88f"
CURVE_COLOURS = ("#6cb4ff", "#ffb454", "#7bd88f", "#ff6b81", "#c792ea", "#4dd0e1")


# --- questions (tests monkeypatch these, as they do studio.ui.dialogs) ------------------------------------------------

def ask_folder(parent: QWidget, start: str = "") -> str:
    """The folder to train on ("" when cancelled)."""
    return QFileDialog.getExistingDirectory(parent, "Train on the Pictures or Sounds in…", start)


def confirm(parent: QWidget, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


# --- plain helpers ----------------------------------------------------------------------------------------------------

def slugify(name: str) -> str:
    """A package id from a folder name: lower-case [a-z0-9._-], at most 64 characters (as the CLI makes it)."""
    return package_id_from(name, "mine")


def clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def runs_dir() -> Path:
    return user_data_dir() / "runs"


@dataclass(frozen=True)
class RunInfo:
    """What a run's checkpoint says about the run: where it stopped and the recipe it follows."""

    step: int
    total: int  # 0 when the recipe does not say
    folder: str
    trainer: str
    size: int
    fit: str

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.step >= self.total


def read_checkpoint_info(path: Path) -> RunInfo | None:
    """The step and recipe of a checkpoint, from its safetensors header alone (cheap; no torch); None when there is
    no readable checkpoint."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if not 0 < length <= 100_000_000:
                return None
            meta = json.loads(f.read(length)).get("__metadata__") or {}
        recipe = tomllib.loads(meta.get("recipe", ""))
        data, train = recipe.get("data", {}), recipe.get("train", {})
        return RunInfo(int(meta["step"]), int(train.get("steps", 0)), str(data.get("folder", "")),
                       str(recipe.get("trainer", "")), int(data.get("size", 0)), str(data.get("fit", "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error, tomllib.TOMLDecodeError):
        return None


def _trainer_module():
    from studio.train import folder  # imports torch: only once the dialog is opened

    return folder


def available_families() -> tuple[str, ...]:
    """The families `train_folder` can train, in the dialog's order."""
    return tuple(f for f in FAMILY_LABELS if f in _trainer_module().FOLDER_FAMILIES)


def scan_summary(folder: Path, family: str) -> tuple[bool, str]:
    """(Worker thread) what `folder` holds for `family` in one line, and whether it is enough to train on; RecipeError
    when nothing there is usable."""
    found = _trainer_module().scan_folder(folder, family)
    if not found.enough:
        return False, (f"{found.summary}: a {FAMILY_LABELS.get(family, family)} needs at least {found.minimum} to "
                       "train on")
    return True, found.summary


def recipe_settings(family: str, wanted: dict) -> dict:
    """The settings in `wanted` that the family's trainer takes (its `write_recipe` keywords); the rest are left to
    its defaults."""
    known = _trainer_module().family_defaults(family)
    return {k: v for k, v in wanted.items() if k in known}


# --- the worker side --------------------------------------------------------------------------------------------------

class _Relay(QObject):
    """Signals the training and scanning threads emit; the dialog's slots receive them, queued, on the GUI thread."""

    started = Signal(int, int, str)  # total, start step, unit
    steps = Signal(object)  # [(step, items, {figure: value}), …] since the last batch
    sample = Signal(int, object, str, int)  # step, array, kind, sample rate
    log = Signal(str)
    done = Signal(str)  # the package folder
    stopped = Signal(int, str)  # step, reason ("pause" | "cancel")
    failed = Signal(str, str)  # message, detail (a traceback for unexpected errors)
    scanned = Signal(int, bool, str)  # stamp, usable, summary or error


def _emit(signal, *args) -> None:
    try:
        signal.emit(*args)
    except RuntimeError:  # the dialog (and its relay) is gone: nobody is listening
        pass


class DialogMonitor(Monitor):
    """The trainer's monitor for the dialog. Runs on the training thread: it only emits queued signals (steps in
    batches at most every EMIT_INTERVAL) and reads the stop flag that the GUI sets with `request_stop`."""

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
        path = _trainer_module().train_folder(log=monitor.log, monitor=monitor, **kwargs)
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


def _scan(relay: _Relay, stamp: int, folder: Path, family: str) -> None:
    """A scanning thread: what the folder holds, or why it cannot be used."""
    try:
        ok, text = scan_summary(folder, family)
    except StudioError as exc:
        ok, text = False, str(exc)
    except Exception as exc:  # noqa: BLE001
        log.exception("scanning %s failed", folder)
        ok, text = False, f"{folder}: cannot be read ({type(exc).__name__}: {exc})"
    _emit(relay.scanned, stamp, ok, text)


# --- widgets ----------------------------------------------------------------------------------------------------------

class _Series:
    """One figure's points over steps; beyond MAX_CURVE_POINTS neighbouring points are averaged in pairs, and new ones
    arrive averaged over as many steps (`stride`), so a long run keeps its whole shape in a bounded list."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.values: list[float] = []
        self.stride = 1
        self._sum = 0.0
        self._count = 0
        self._first = 0.0
        self.latest = math.nan
        self.low = math.inf  # the lowest value seen (a log axis needs it positive)

    def add(self, step: float, value: float) -> None:
        if not math.isfinite(value):
            return
        self.latest = value
        self.low = min(self.low, value)
        if self._count == 0:
            self._first = step
        self._sum += value
        self._count += 1
        if self._count < self.stride:
            return
        self.steps.append(self._first)
        self.values.append(self._sum / self._count)
        self._sum, self._count = 0.0, 0
        if len(self.values) > MAX_CURVE_POINTS:
            n = len(self.values) // 2 * 2
            v = np.asarray(self.values[:n]).reshape(-1, 2).mean(1).tolist()
            s = self.steps[:n:2]
            self.values, self.steps = v + self.values[n:], s + self.steps[n:]
            self.stride *= 2

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.steps, dtype=np.float64), np.asarray(self.values, dtype=np.float64)


def smooth(values: np.ndarray) -> np.ndarray:
    """A trailing moving average over about a thirtieth of the points (the first ones average what there is)."""
    n = len(values)
    window = max(1, n // 30)
    if window == 1 or n == 0:
        return values.copy()
    c = np.cumsum(np.concatenate([[0.0], values]))
    out = np.empty(n)
    out[:window] = c[1:window + 1] / np.arange(1, window + 1)
    out[window:] = (c[window + 1:] - c[1:n - window + 1]) / window
    return out


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


class LossCurve(QWidget):
    """The loss figures over steps: a faint raw line and a smoothed one per figure, a legend with the newest values;
    the y axis is logarithmic while every value is positive."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainLossCurve")
        self.setToolTip("The training loss over the steps (faint: as measured; bright: smoothed). Lower is better.")
        self.setMinimumSize(260, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.series: dict[str, _Series] = {}

    def clear(self) -> None:
        self.series = {}
        self.update()

    def add(self, step: int, figures: dict[str, float]) -> None:
        for name, value in figures.items():
            self.series.setdefault(name, _Series()).add(float(step), float(value))

    def point_count(self, name: str | None = None) -> int:
        chosen = [self.series[name]] if name is not None else self.series.values()
        return sum(len(s.values) for s in chosen)

    @property
    def log_scale(self) -> bool:
        return all(s.low > 0 for s in self.series.values() if s.values)

    def sizeHint(self) -> QSize:
        return QSize(480, 260)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        metrics = painter.fontMetrics()
        shown = {name: s.arrays() for name, s in self.series.items() if s.values}
        if not shown:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The loss curve appears once training starts")
            return
        logy = self.log_scale
        ys = np.concatenate([v for _, v in shown.values()])
        ys = np.log10(ys) if logy else ys
        xs = np.concatenate([s for s, _ in shown.values()])
        y0, y1 = float(ys.min()), float(ys.max())
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 0.5, y1 + 0.5
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad
        x0, x1 = float(xs.min()), float(xs.max())
        if x1 <= x0:
            x1 = x0 + 1
        ticks = self._y_ticks(y0, y1, logy)
        label_width = max(metrics.horizontalAdvance(text) for _, text in ticks) if ticks else 0
        plot = QRectF(label_width + 10, 8, self.width() - label_width - 18, self.height() - metrics.height() - 16)
        if plot.width() < 20 or plot.height() < 20:
            return

        def px(x: np.ndarray) -> np.ndarray:
            return plot.left() + (x - x0) / (x1 - x0) * plot.width()

        def py(y: np.ndarray) -> np.ndarray:
            return plot.bottom() - (y - y0) / (y1 - y0) * plot.height()

        grid = QColor(self.palette().mid().color()).lighter(130)
        text = self.palette().placeholderText().color()
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        for value, label in ticks:
            y = float(py(np.float64(value)))
            painter.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text)
            painter.drawText(QRectF(0, y - metrics.height() / 2, label_width + 4, metrics.height()),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
        step = _nice_step(x1 - x0, max(2, int(plot.width() // 90)))
        painter.setPen(text)
        for i in range(math.ceil(x0 / step), math.floor(x1 / step) + 1):
            x = float(px(np.float64(i * step)))
            label = f"{i * step:g}"
            w = metrics.horizontalAdvance(label) + 4
            left = min(max(x - w / 2, plot.left() - w / 2), self.width() - w)  # the last label stays in view
            painter.drawText(QRectF(left, plot.bottom() + 3, w, metrics.height()), Qt.AlignmentFlag.AlignCenter, label)

        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setClipRect(plot.adjusted(-1, -1, 1, 1))
        for index, (name, (steps, values)) in enumerate(shown.items()):
            colour = QColor(CURVE_COLOURS[index % len(CURVE_COLOURS)])
            yv = np.log10(values) if logy else values
            faint = QColor(colour)
            faint.setAlpha(70)
            for line, pen in ((yv, QPen(faint, 1)), (smooth(yv), QPen(colour, 1.8))):
                painter.setPen(pen)
                points = QPolygonF([QPointF(x, y) for x, y in zip(px(steps).tolist(), py(line).tolist())])
                if len(points) == 1:
                    painter.drawEllipse(points[0], 1.5, 1.5)
                else:
                    painter.drawPolyline(points)
        painter.setClipping(False)

        # the legend: one row per figure with its newest value, top right inside the plot
        rows = [(name, self.series[name].latest) for name in shown]
        texts = [f"{name}  {value:.4g}" for name, value in rows]
        width = max(metrics.horizontalAdvance(t) for t in texts) + 26
        box = QRectF(plot.right() - width - 6, plot.top() + 6, width, len(rows) * (metrics.height() + 2) + 6)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 140))
        painter.drawRoundedRect(box, 3, 3)
        for index, label in enumerate(texts):
            y = box.top() + 3 + index * (metrics.height() + 2)
            painter.setPen(QPen(QColor(CURVE_COLOURS[index % len(CURVE_COLOURS)]), 2.5))
            painter.drawLine(QPointF(box.left() + 6, y + metrics.height() / 2),
                             QPointF(box.left() + 18, y + metrics.height() / 2))
            painter.setPen(self.palette().text().color())
            painter.drawText(QRectF(box.left() + 22, y, width - 22, metrics.height()),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)

    @staticmethod
    def _y_ticks(y0: float, y1: float, logy: bool) -> list[tuple[float, str]]:
        """(position in plot units, label): decades on a log axis (1, 2, 5 within one decade), else round values."""
        if logy:
            first, last = math.ceil(y0), math.floor(y1)
            if last - first >= 1:
                every = max(1, math.ceil((last - first + 1) / 6))
                return [(float(e), f"{10.0 ** e:g}") for e in range(first, last + 1, every)]
            ticks = []
            for e in range(math.floor(y0), math.ceil(y1) + 1):
                for m in (1, 2, 5):
                    v = math.log10(m) + e
                    if y0 <= v <= y1:
                        ticks.append((v, f"{m * 10.0 ** e:.3g}"))
            return ticks or [(y0, f"{10 ** y0:.3g}"), (y1, f"{10 ** y1:.3g}")]
        step = _nice_step(y1 - y0, 5)
        return [(i * step, f"{i * step:.4g}") for i in range(math.ceil(y0 / step), math.floor(y1 / step) + 1)]


class _ImageView(QWidget):
    """A picture scaled to fit, keeping its aspect; whole-number zoom (crisp pixels) when smaller than the view."""

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = placeholder
        self.setMinimumSize(160, 160)

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def sizeHint(self) -> QSize:
        return QSize(280, 280)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        if self._image is None or self._image.isNull():
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect().adjusted(8, 8, -8, -8),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            return
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih)
        if scale >= 1:
            scale = math.floor(scale)
        else:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        w, h = iw * scale, ih * scale
        painter.drawImage(QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h), self._image)


class _MessageLabel(QLabel):
    """A wrapping label exactly as tall as its lines at its width (layouts go by a wrapping label's size hint, which
    guesses a narrow width and leaves blank lines under the text)."""

    def setText(self, text: str) -> None:
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self.width() > 0:
            height = max(self.heightForWidth(self.width()), self.fontMetrics().height()) if self.text() else 0
            if height != self.minimumHeight() or height != self.maximumHeight():
                self.setFixedHeight(height)


# --- the dialog -------------------------------------------------------------------------------------------------------

class TrainDialog(QDialog):
    """File → Train on Your Own Data…: pick a folder, train a model on it, watch it learn, use it."""

    progressed = Signal(int)  # the newest step shown (GUI thread)
    sample_shown = Signal(int)  # the step of a sample just shown
    run_finished = Signal(str)  # the package folder
    run_stopped = Signal(str, int)  # reason, step
    run_failed = Signal(str)  # the message shown

    monitor_factory = DialogMonitor  # the monitor class a run gets (tests put a subclass here)

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("trainDialog")
        self.setWindowTitle("Train on Your Own Data")
        self.setModal(False)
        self.setAcceptDrops(True)
        self.setSizeGripEnabled(True)
        self.resize(980, 800)
        self._relay = _Relay(self)
        self._thread: threading.Thread | None = None
        self._monitor: DialogMonitor | None = None
        self._scans: list[threading.Thread] = []
        self._running = False
        self._stopping = ""  # the stop reason asked for while the run finishes its step
        self._run_id = ""  # the id of the run in flight (or the last one)
        self._paused_id = ""  # the id this dialog paused: its Pause button offers Resume
        self._scan_stamp = 0
        self._scan_key: tuple[str, str] | None = None  # (folder, family) of the newest finished scan
        self._scan_ok = False
        self._resume_info: RunInfo | None = None
        self._id_auto = self._name_auto = True
        self._total = self._start_step = self._step = self._items = 0
        self._t0 = 0.0
        self._unit = "img"
        self._samples: list[tuple[int, str, np.ndarray, int]] = []  # step, kind, data, sample rate
        self.package: Path | None = None  # the newest package a run wrote
        self._families = available_families()
        self._build()
        self._connect()
        self._on_family_changed()
        self._update_model_hint()
        self._update_buttons()

    # --- construction ---------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.folder_edit = QLineEdit()
        self.folder_edit.setObjectName("trainFolder")
        self.folder_edit.setPlaceholderText("A folder of pictures (PNG, JPEG, WebP, BMP) or sounds")
        self.folder_edit.setToolTip("The folder to learn from; its sub-folders count too. Drop a folder here.")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setObjectName("trainBrowse")
        self.browse_button.setToolTip("Pick the folder")
        self.family_combo = QComboBox()
        self.family_combo.setObjectName("trainFamily")
        self.family_combo.setToolTip("The kind of model to train")
        for family, label in FAMILY_LABELS.items():
            self.family_combo.addItem(label, family)
            index = self.family_combo.count() - 1
            available = family in self._families
            tip = FAMILY_TIPS[family] + ("" if available else " (not available in this version)")
            self.family_combo.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
            if not available:
                self.family_combo.model().item(index).setEnabled(False)
        self.size_combo = QComboBox()
        self.size_combo.setObjectName("trainSize")
        self.size_combo.setToolTip("The side of the square pictures the model makes, in pixels (larger: slower)")
        for size in SIZES:
            self.size_combo.addItem(f"{size} px", size)
        self.size_combo.setCurrentIndex(SIZES.index(DEFAULT_SIZE))
        self.fit_combo = QComboBox()
        self.fit_combo.setObjectName("trainFit")
        self.fit_combo.setToolTip("How pictures that are not square are made square: crop the centre, pad the "
                                  "sides with the edge colour, or stretch")
        for fit, label in FITS.items():
            self.fit_combo.addItem(label, fit)
        self.steps_spin = QSpinBox()
        self.steps_spin.setObjectName("trainSteps")
        self.steps_spin.setRange(1, 1_000_000)
        self.steps_spin.setSingleStep(100)
        self.steps_spin.setValue(DEFAULT_STEPS)
        self.steps_spin.setGroupSeparatorShown(True)
        self.steps_spin.setToolTip("Training steps (each learns from one batch of examples); more: better, longer")
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("trainDevice")
        self.device_combo.setToolTip("Where training runs: the processor, or the graphics card the studio renders on "
                                     "(much faster)")
        self.device_combo.addItem("CPU", "cpu")
        engine_device = str(getattr(self.session.bridge.engine, "device", "cpu") or "cpu")
        if engine_device.split(":")[0] in ("cuda", "mps"):
            self.device_combo.addItem(f"GPU ({engine_device})", engine_device)
            self.device_combo.setCurrentIndex(1)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("trainName")
        self.name_edit.setToolTip("The model's name in the model browser")
        self.id_edit = QLineEdit()
        self.id_edit.setObjectName("trainId")
        self.id_edit.setToolTip("The package's id and folder name: lower-case letters, digits, '.', '_', '-'. "
                                "A stopped run with the same id can be resumed.")
        self.summary_label = self._message_label("trainSummary")
        self.model_hint = self._message_label("trainModelHint")
        self.resume_label = self._message_label("trainResumeNote")

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
        self.sample_view = _ImageView("Samples of what the model makes appear here as it learns")
        self.sample_view.setObjectName("trainSample")
        self.sample_view.setToolTip("The newest sample (click an earlier one below to see it here)")
        self.audio_view = None  # made for the first sound sample
        self.sample_stack = QStackedWidget()
        self.sample_stack.addWidget(self.sample_view)
        self.sample_caption = QLabel("No sample yet")
        self.sample_caption.setObjectName("trainSampleCaption")
        self.sample_caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.strip = QListWidget()
        self.strip.setObjectName("trainSampleStrip")
        self.strip.setToolTip("Samples over time, with their step; click one to see it large")
        self.strip.setViewMode(QListView.ViewMode.IconMode)
        self.strip.setFlow(QListView.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setMovement(QListView.Movement.Static)
        self.strip.setIconSize(QSize(64, 64))
        self.strip.setSpacing(2)
        self.strip.setFixedHeight(104)
        self.strip.setVisible(False)  # until the first sample
        self.strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.strip.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.log_view = QPlainTextEdit()
        self.log_view.setObjectName("trainLog")
        self.log_view.setToolTip("What the trainer reports")
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.log_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log_view.setPlaceholderText("The trainer's messages appear here")
        self.status_label = self._message_label("trainStatus")

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
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)
        options = QHBoxLayout()
        for text, widget in (("", self.family_combo), ("Size", self.size_combo), ("Fit", self.fit_combo),
                             ("Steps", self.steps_spin), ("On", self.device_combo)):
            if text:
                options.addSpacing(10)
                label = QLabel(text)
                label.setBuddy(widget)
                options.addWidget(label)
            options.addWidget(widget)
        options.addStretch(1)
        names = QHBoxLayout()
        names.addWidget(self.name_edit, 3)
        names.addSpacing(10)
        id_label = QLabel("Id")
        id_label.setBuddy(self.id_edit)
        names.addWidget(id_label)
        names.addWidget(self.id_edit, 2)
        form = self._form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for text, buddy, row in (("&Folder", self.folder_edit, folder_row), (None, None, self.summary_label),
                                 ("F&amily", self.family_combo, options), ("&Name", self.name_edit, names)):
            if text is None:
                form.addRow("", row)
                continue
            label = QLabel(text)
            label.setBuddy(buddy)
            form.addRow(label, row)
        form.addRow("", self.model_hint)
        form.addRow("", self.resume_label)

        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 3)
        progress_row.addWidget(self.stats_label, 2)
        sample_box = QWidget()
        sample_layout = QVBoxLayout(sample_box)
        sample_layout.setContentsMargins(0, 0, 0, 0)
        sample_layout.addWidget(self.sample_stack, 1)
        sample_layout.addWidget(self.sample_caption)
        watch = QSplitter(Qt.Orientation.Horizontal)
        watch.setObjectName("trainWatch")
        watch.addWidget(self.curve)
        watch.addWidget(sample_box)
        watch.setStretchFactor(0, 3)
        watch.setStretchFactor(1, 2)
        watch.setChildrenCollapsible(False)
        lower = QSplitter(Qt.Orientation.Vertical)
        lower.setObjectName("trainLower")
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(watch, 1)
        top_layout.addWidget(self.strip)
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
        layout.addLayout(form)
        layout.addLayout(progress_row)
        layout.addWidget(lower, 1)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        for label in (self.summary_label, self.model_hint, self.resume_label):
            form.setRowVisible(label, False)

    @staticmethod
    def _message_label(name: str) -> QLabel:
        label = _MessageLabel()
        label.setObjectName(name)
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long paths wrap, never widen
        policy.setHeightForWidth(True)  # as tall as its wrapped lines
        label.setSizePolicy(policy)
        label.setVisible(False)
        return label

    def _connect(self) -> None:
        queued = Qt.ConnectionType.QueuedConnection
        r = self._relay
        r.started.connect(self._on_started, queued)
        r.steps.connect(self._on_steps, queued)
        r.sample.connect(self._on_sample, queued)
        r.log.connect(self._on_log, queued)
        r.done.connect(self._on_done, queued)
        r.stopped.connect(self._on_stopped, queued)
        r.failed.connect(self._on_failed, queued)
        r.scanned.connect(self._on_scanned, queued)
        self._scan_timer = QTimer(self)
        self._scan_timer.setSingleShot(True)
        self._scan_timer.setInterval(SCAN_DELAY_MS)
        self._scan_timer.timeout.connect(self.rescan)
        self._clock_timer = QTimer(self)  # the elapsed time moves on between steps (a slow step, loading)
        self._clock_timer.setInterval(1000)
        self._clock_timer.timeout.connect(self._update_stats)
        self.folder_edit.textChanged.connect(self._on_folder_changed)
        self.browse_button.clicked.connect(self.browse)
        self.family_combo.currentIndexChanged.connect(self._on_family_changed)
        self.steps_spin.valueChanged.connect(self._update_buttons)
        self.id_edit.textEdited.connect(self._on_id_edited)
        self.id_edit.textChanged.connect(self._on_id_changed)
        self.name_edit.textEdited.connect(self._on_name_edited)
        self.start_button.clicked.connect(self._on_start_clicked)
        self.start_over_button.clicked.connect(self.start_over)
        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_model)
        self.close_button.clicked.connect(self.close)
        self.strip.currentRowChanged.connect(self._on_strip_row)

    # --- the form -------------------------------------------------------------------------------------------------
    def family(self) -> str:
        return self.family_combo.currentData()

    def model_id(self) -> str:
        return self.id_edit.text().strip()

    def folder(self) -> str:
        return self.folder_edit.text().strip()

    def set_folder(self, folder: str | Path) -> None:
        self.folder_edit.setText(str(folder))

    def browse(self) -> None:
        chosen = ask_folder(self, self.folder())
        if chosen:
            self.set_folder(chosen)

    def _on_folder_changed(self, text: str) -> None:
        name = Path(text.strip()).name if text.strip() else ""
        if self._id_auto:
            self.id_edit.setText(slugify(name) if name else "")
        if self._name_auto:
            self.name_edit.setText(name)
        self._scan_ok = False
        self._scan_timer.start()
        self._update_buttons()

    def _on_family_changed(self, _index: int = 0) -> None:
        """A family brings its own trainer's defaults (a GAN at 64 px would take half an hour on a laptop CPU)."""
        defaults = _trainer_module().family_defaults(self.family())
        if "size" in defaults and defaults["size"] in SIZES:
            self.size_combo.setCurrentIndex(SIZES.index(defaults["size"]))
        if "steps" in defaults:
            self.steps_spin.setValue(int(defaults["steps"]))
        images = self.family() in IMAGE_FAMILIES
        for widget in (self.size_combo, self.fit_combo):
            widget.setEnabled(images and not self._running)
        self._scan_ok = False
        self._scan_timer.start(0 if self.folder() else SCAN_DELAY_MS)
        self._update_buttons()

    def _on_id_edited(self, _text: str) -> None:
        self._id_auto = False

    def _on_name_edited(self, _text: str) -> None:
        self._name_auto = False

    def _on_id_changed(self, _text: str) -> None:
        self._update_model_hint()
        self._update_resume()

    def rescan(self) -> None:
        """Look at the folder again (on a worker thread): the summary, or the error in red."""
        self._scan_timer.stop()
        folder, family = self.folder(), self.family()
        self._scan_stamp += 1
        self._scan_ok, self._scan_key = False, None
        if not folder:
            self._show(self.summary_label, "Pick a folder of pictures or sounds to learn from.", None)
            self._update_buttons()
            return
        self._show(self.summary_label, f"Looking at {folder}…", None)
        thread = threading.Thread(target=_scan, args=(self._relay, self._scan_stamp, Path(folder), family),
                                  name="latent-studio-train-scan", daemon=True)
        self._scans = [t for t in self._scans if t.is_alive()] + [thread]
        thread.start()
        self._update_buttons()

    @Slot(int, bool, str)
    def _on_scanned(self, stamp: int, ok: bool, text: str) -> None:
        if stamp != self._scan_stamp:
            return  # a newer scan is on its way
        self._scan_ok, self._scan_key = ok, (self.folder(), self.family())
        self._show(self.summary_label, text, None if ok else ERROR_COLOUR)
        self._update_buttons()

    @property
    def folder_ok(self) -> bool:
        return self._scan_ok and self._scan_key == (self.folder(), self.family())

    def _update_model_hint(self) -> None:
        model_id = self.model_id()
        if not model_id:
            self._show(self.model_hint, "", None)
        elif not ID_RE.fullmatch(model_id):
            self._show(self.model_hint, "Id: use 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a "
                                        "letter or a digit.", ERROR_COLOUR)
        else:
            out = user_models_dir() / model_id
            entry = self.session.entry_for(model_id)
            if out.exists():
                self._show(self.model_hint, f"A model “{model_id}” is installed in {out}: a run with this id "
                                            "replaces it when it finishes.", NOTE_COLOUR)
            elif entry is not None:
                self._show(self.model_hint, f"Another model with the id “{model_id}” is installed "
                                            f"({entry.folder}): pick another id to keep both apart.", NOTE_COLOUR)
            else:
                self._show(self.model_hint, "", None)

    def _update_resume(self) -> None:
        """Offer Resume / Start Over when the id's run folder holds a checkpoint of an unfinished run."""
        info = None
        model_id = self.model_id()
        if ID_RE.fullmatch(model_id):
            info = read_checkpoint_info(runs_dir() / model_id / CHECKPOINT_NAME)
            if info is not None and info.finished:
                info = None
        self._resume_info = info
        if info is None or self._running:
            self._show(self.resume_label, "", None)
        else:
            of = f" of {info.total:,}" if info.total else ""
            what = f"{info.size} px, {info.fit}, " if info.size else ""
            self._show(self.resume_label,
                       html.escape(f"A stopped run of “{model_id}” is kept at step {info.step:,}{of} ({what}on "
                                   f"{info.folder}). ") + "<b>Resume</b> continues it with its own settings; "
                       "<b>Start Over</b> deletes it.", NOTE_COLOUR, rich=True)
        self._update_buttons()

    def _show(self, label: QLabel, text: str, colour: str | None, rich: bool = False) -> None:
        """Show `text` (plain unless `rich`) in `label`, in `colour`; hide the label (its form row) when there is
        nothing to say."""
        if label in (self.summary_label, self.model_hint, self.resume_label):
            self._form.setRowVisible(label, bool(text))
        else:
            label.setVisible(bool(text))
        body = text if rich else html.escape(text)
        label.setText(f"<span style='color:{colour}'>{body}</span>" if colour else body)

    def _update_buttons(self, *_args) -> None:
        running, model_id = self._running, self.model_id()
        id_ok = bool(ID_RE.fullmatch(model_id))
        resumable = self._resume_info is not None
        paused_here = not running and resumable and self._paused_id == model_id
        for widget in (self.folder_edit, self.browse_button, self.family_combo, self.steps_spin, self.device_combo,
                       self.name_edit, self.id_edit):
            widget.setEnabled(not running)
        for widget in (self.size_combo, self.fit_combo):
            widget.setEnabled(not running and self.family() in IMAGE_FAMILIES)
        self.start_button.setVisible(not paused_here)
        self.start_button.setText("Resume" if resumable and not running else "Start")
        self.start_button.setToolTip("Continue the stopped run from its checkpoint" if resumable else
                                     "Train a new model on the folder")
        self.start_button.setEnabled(not running and id_ok and (resumable or self.folder_ok)
                                     and self.family() in self._families)
        self.start_over_button.setVisible(resumable and not running)
        self.start_over_button.setEnabled(not running and id_ok and self.folder_ok)
        self.pause_button.setText("Resume" if paused_here else "Pause")
        self.pause_button.setToolTip("Continue training from the checkpoint" if paused_here else
                                     "Save a checkpoint and stop; Resume continues where it stopped")
        self.pause_button.setEnabled(paused_here or (running and not self._stopping))
        self.cancel_button.setEnabled(running and not self._stopping)
        self.use_button.setVisible(self.package is not None)
        self.use_button.setEnabled(self.package is not None and not running)

    # --- running --------------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """A run was started and its end has not reached the dialog yet."""
        return self._running

    @property
    def training(self) -> bool:
        """The training thread is still at work (its end has not reached the dialog yet)."""
        return self._running and self._thread is not None and self._thread.is_alive()

    @property
    def monitor(self) -> DialogMonitor | None:
        return self._monitor

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _on_start_clicked(self) -> None:
        self.start(resume=self._resume_info is not None)

    def start(self, resume: bool = False) -> bool:
        """Start training (or resume the id's stopped run) on the training thread; False when it cannot start."""
        if self._running:
            return False
        model_id = self.model_id()
        if not ID_RE.fullmatch(model_id):
            self._update_model_hint()
            return False
        family = self.family()
        info = self._resume_info if resume else None
        if info is not None and info.trainer.startswith("folder-") and info.trainer[7:] in FAMILY_LABELS:
            family = info.trainer[7:]  # the run continues as the family that started it
        wanted = dict(steps=self.steps_spin.value(), name=self.name_edit.text().strip() or model_id,
                      device=self.device_combo.currentData())
        if family in IMAGE_FAMILIES:
            wanted.update(size=self.size_combo.currentData(), fit=self.fit_combo.currentData())
        try:
            settings = recipe_settings(family, wanted)
        except (ImportError, AttributeError, ValueError) as exc:
            self._report_failure(f"the {FAMILY_LABELS[family]} trainer cannot be loaded ({exc})", "")
            return False
        kwargs: dict = dict(folder=Path(info.folder if info is not None and info.folder else self.folder()),
                            out=user_models_dir() / model_id, run_dir=runs_dir() / model_id, model_id=model_id,
                            resume=resume, **settings)
        kwargs["family"] = family
        continuing = resume and self._paused_id == model_id and self._run_id == model_id
        if not continuing:
            self.curve.clear()
            self._samples.clear()
            self.strip.clear()
            self.strip.setVisible(False)
            self.sample_view.set_image(None)
            self.sample_stack.setCurrentWidget(self.sample_view)
            self.sample_caption.setText("No sample yet")
            self.log_view.clear()
        self.package = None
        self._paused_id, self._stopping, self._run_id = "", "", model_id
        self._resume_info = None  # the run in flight owns the checkpoint now
        self._total = self._start_step = self._step = self._items = 0
        self._t0 = time.monotonic()
        self._monitor = self.monitor_factory(self._relay)
        self._thread = threading.Thread(target=_train, args=(self._monitor, self._relay, kwargs),
                                        name="latent-studio-train", daemon=True)
        self._running = True
        verb = "Resuming" if resume else "Starting"
        self._show(self.status_label, f"{verb} “{wanted['name']}”…", None)
        self.stats_label.setText("")
        self._on_log(f"{verb.lower()} {model_id}: {FAMILY_LABELS[family]} on {kwargs['folder']}")
        self._show(self.resume_label, "", None)
        self._clock_timer.start()
        self._update_buttons()
        self._thread.start()
        return True

    def start_over(self) -> None:
        """Delete the id's stopped run (after asking) and train from the beginning with the settings shown."""
        info, model_id = self._resume_info, self.model_id()
        if info is None or self._running:
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
        self._update_resume()
        self.start(resume=False)

    def _on_pause_clicked(self) -> None:
        if self._running:
            self.request_stop("pause")
        elif self._resume_info is not None:
            self.start(resume=True)

    def cancel(self) -> None:
        """Stop the run (asking first once more than a few steps are done); its checkpoint is kept."""
        if not self._running or self._stopping == "cancel":
            return
        if self._step > CONFIRM_AFTER_STEPS and not confirm(
                self, "Cancel Training", f"Stop training “{self._run_id}” at step {self._step:,}?\n\n"
                                         "A checkpoint is kept: pick the same id later to resume it."):
            return
        self.request_stop("cancel")

    def request_stop(self, reason: str) -> None:
        """Ask the run to save a checkpoint and stop after its step ("pause" or "cancel")."""
        if self._monitor is None or not self._running:
            return
        self._monitor.request_stop(reason)
        self._stopping = reason
        what = "Pausing" if reason == "pause" else "Cancelling"
        self._show(self.status_label, f"{what}: saving a checkpoint after this step…", None)
        self._update_buttons()

    def stop_and_wait(self, timeout: float | None = 120.0) -> bool:
        """Cancel the run (checkpoint kept) and wait for its thread, and for any folder scan; True when none is left
        running. Blocks the GUI thread until the trainer reaches its next step."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            if self._monitor is not None:
                self._monitor.request_stop("cancel")
            thread.join(timeout)
        for scan in self._scans:
            scan.join(5.0)
        self._scans = [t for t in self._scans if t.is_alive()]
        return not (thread is not None and thread.is_alive())

    def stop_for_quit(self) -> bool:
        """Before the app quits: when training runs, ask; then cancel it (checkpoint kept) and wait. False when the
        user wants to keep training (the app stays open)."""
        if self.training:
            if not confirm(self, "Training Is Running", f"Stop training “{self._run_id}” and quit?\n\n"
                                                        "A checkpoint is kept: train the same id later to resume."):
                return False
        self.stop_and_wait()
        return True

    # --- results (GUI thread, queued from the training thread) -------------------------------------------------------
    @Slot(int, int, str)
    def _on_started(self, total: int, start: int, unit: str) -> None:
        self._total, self._start_step, self._step, self._unit = total, start, start, unit or "img"
        self._items = 0
        self._t0 = time.monotonic()
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(start)
        self.progress.setFormat("%v / %m steps")
        since = f" from step {start:,}" if start else ""
        self._show(self.status_label, f"Training “{self._run_id}”{since}…", None)
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
        if not self._running or not self._total:
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
            if kind == "audio":
                from studio.ui.audio_view import waveform_image

                icon = QPixmap.fromImage(waveform_image(data, 96, 48))
            else:
                icon = QPixmap.fromImage(qimage_from_array(data))
                if icon.width() > 64 or icon.height() > 64:
                    icon = icon.scaled(64, 64, Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.SmoothTransformation)
        except ValueError as exc:
            self._on_log(f"sample at step {step} cannot be shown: {exc}")
            return
        self._samples.append((step, kind, data, sample_rate))
        item = QListWidgetItem(QIcon(icon), f"{step:,}")
        item.setToolTip(f"step {step:,}")
        item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.strip.addItem(item)
        self.strip.setVisible(True)
        if len(self._samples) > MAX_STRIP:
            del self._samples[0]
            self.strip.takeItem(0)
        self.strip.blockSignals(True)
        self.strip.setCurrentRow(self.strip.count() - 1)
        self.strip.blockSignals(False)
        self.strip.scrollToBottom()
        self._show_sample(len(self._samples) - 1)
        self.sample_shown.emit(step)

    def _on_strip_row(self, row: int) -> None:
        if 0 <= row < len(self._samples):
            self._show_sample(row)

    def _show_sample(self, index: int) -> None:
        step, kind, data, sample_rate = self._samples[index]
        newest = index == len(self._samples) - 1
        if kind == "audio":
            if self.audio_view is None:
                from studio.ui.audio_view import AudioView

                self.audio_view = AudioView()
                self.audio_view.set_placeholder("No sound yet")
                self.sample_stack.addWidget(self.audio_view)
            self.audio_view.set_sound(data, sample_rate)
            self.sample_stack.setCurrentWidget(self.audio_view)
        else:
            self.sample_view.set_image(qimage_from_array(data))
            self.sample_stack.setCurrentWidget(self.sample_view)
        self.sample_caption.setText(f"{'Newest sample' if newest else 'Sample'}: step {step:,}")

    @property
    def shown_sample(self) -> tuple[int, str] | None:
        """(step, kind) of the sample shown large, None before the first."""
        text = self.sample_caption.text()
        if not self._samples or "step" not in text:
            return None
        row = self.strip.currentRow()
        step, kind, _, _ = self._samples[row if 0 <= row < len(self._samples) else -1]
        return step, kind

    @Slot(str)
    def _on_log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _finish_run(self) -> None:
        self._running = False
        self._stopping = ""
        self._clock_timer.stop()
        self._update_stats_final()

    def _update_stats_final(self) -> None:
        elapsed = time.monotonic() - self._t0
        if self._total:
            rate = f" · {self._items / elapsed:,.0f} {self._unit}/s" if elapsed > 0 and self._items else ""
            self.stats_label.setText(f"{clock(elapsed)} this session{rate}")

    @Slot(str)
    def _on_done(self, path: str) -> None:
        self._finish_run()
        self.package = Path(path)
        self.progress.setValue(self.progress.maximum())
        name = self.name_edit.text().strip() or self._run_id
        self._show(self.status_label, f"Finished: the model “{name}” was written to {path}. It is in the model "
                                      "browser now.", OK_COLOUR)
        self._add_to_models(self.package)
        self._update_model_hint()
        self._update_resume()
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
            self._show(self.status_label, f"The model was written to {package}, but it cannot be used: {why}",
                       ERROR_COLOUR)
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
            self._show(self.status_label, f"Paused at step {step:,}. The checkpoint is in {run_dir}; Resume "
                                          "continues from it.", None)
        else:
            self._show(self.status_label, f"Cancelled at step {step:,}. The checkpoint is kept in {run_dir}: pick "
                                          f"the id “{self._run_id}” again to resume it later.", NOTE_COLOUR)
        self._on_log(f"{'paused' if reason == 'pause' else 'cancelled'} at step {step}")
        self._update_resume()
        self.run_stopped.emit(reason, step)

    @Slot(str, str)
    def _on_failed(self, message: str, detail: str) -> None:
        self._finish_run()
        self._report_failure(message, detail)
        self._update_resume()
        self.rescan()  # the folder may be what went wrong: the form says so, and Start waits for a good one

    def _report_failure(self, message: str, detail: str) -> None:
        self._show(self.status_label, f"Training failed: {message}", ERROR_COLOUR)
        self._on_log(f"error: {message}")
        if detail:
            self._on_log(detail.rstrip())
        self._update_buttons()
        self.run_failed.emit(message)

    def use_model(self) -> None:
        """Switch the studio to the model just trained (one undoable step, as the model browser does)."""
        if self.package is not None and self.session.use_model(self._run_id):
            self._show(self.status_label, f"The studio now uses “{self._run_id}”.", OK_COLOUR)

    # --- closing and dropping -------------------------------------------------------------------------------------
    def reject(self) -> None:
        """Close (Esc, the Close button, the title bar): while training runs, ask, then cancel it and wait."""
        if self.training:
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
        if not self._running and any(u.isLocalFile() and Path(u.toLocalFile()).is_dir() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        folders = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        folders = [p for p in folders if p.is_dir()]
        if folders and not self._running:
            event.acceptProposedAction()
            self.set_folder(folders[0])

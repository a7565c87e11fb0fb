"""The settings of the training dialog: the folder (and what it holds, scanned on a worker thread, newest wins), the
family with its trainer's defaults, size, fit, steps, device, name and package id; beneath them what the id means (an
installed model it would replace, a stopped run it would resume)."""

from __future__ import annotations

import html
import logging
import threading
from pathlib import Path
from typing import cast

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSizePolicy,
                               QSpinBox, QWidget)

from studio.errors import StudioError
from studio.paths import user_models_dir
from studio.ui.training.runs import (CHECKPOINT_NAME, FAMILY_LABELS, FAMILY_TIPS, ID_RE, IMAGE_FAMILIES, RunInfo,
                                     available_families, family_defaults, read_checkpoint_info, runs_dir, slugify,
                                     scan_summary)

log = logging.getLogger(__name__)

SIZES = (16, 32, 64, 128)
DEFAULT_SIZE = 64
DEFAULT_STEPS = 2000
FITS = {"crop": "Crop", "pad": "Pad", "stretch": "Stretch"}
SCAN_DELAY_MS = 250  # typing in the folder field rescans once it pauses this long
ERROR_COLOUR = "#e5534b"
NOTE_COLOUR = "#d29922"
OK_COLOUR = "#7bd88f"


class MessageLabel(QLabel):
    """A wrapping label exactly as tall as its lines at its width (layouts go by a wrapping label's size hint, which
    guesses a narrow width and leaves blank lines under the text), for rich text in a colour."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.setObjectName(name)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long paths wrap, never widen
        policy.setHeightForWidth(True)  # as tall as its wrapped lines
        self.setSizePolicy(policy)
        self.setVisible(False)

    def say(self, text: str, colour: str | None = None, rich: bool = False) -> None:
        """Show `text` (plain unless `rich`) in `colour`."""
        body = text if rich else html.escape(text)
        self.setText(f"<span style='color:{colour}'>{body}</span>" if colour else body)

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


class _ScanRelay(QObject):
    scanned = Signal(int, bool, str)  # stamp, usable, summary or error


def _scan(relay: _ScanRelay, stamp: int, folder: Path, family: str) -> None:
    """A scanning thread: what the folder holds, or why it cannot be used."""
    try:
        ok, text = scan_summary(folder, family)
    except StudioError as exc:
        ok, text = False, str(exc)
    except Exception as exc:  # noqa: BLE001
        log.exception("scanning %s failed", folder)
        ok, text = False, f"{folder}: cannot be read ({type(exc).__name__}: {exc})"
    try:
        relay.scanned.emit(stamp, ok, text)
    except RuntimeError:  # the dialog (and its relay) is gone: nobody is listening
        pass


class TrainForm(QWidget):
    """The settings of a run. `changed` says that something the dialog's buttons depend on changed."""

    changed = Signal()

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.families = available_families()
        self.resume_info: RunInfo | None = None  # the id's stopped run, when there is one
        self._relay = _ScanRelay(self)
        self._scans: list[threading.Thread] = []
        self._scan_stamp = 0
        self._scan_key: tuple[str, str] | None = None  # (folder, family) of the newest finished scan
        self._scan_ok = False
        self._id_auto = self._name_auto = True
        self._running = False
        self._build()
        self._connect()
        self._on_family_changed()
        self.update_model_hint()

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
        for family, family_label in FAMILY_LABELS.items():
            self.family_combo.addItem(family_label, family)
            index = self.family_combo.count() - 1
            available = family in self.families
            tip = FAMILY_TIPS[family] + ("" if available else " (not available in this version)")
            self.family_combo.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
            if not available:
                # a combo box's own model is a QStandardItemModel, whose items can be disabled one by one
                cast(QStandardItemModel, self.family_combo.model()).item(index).setEnabled(False)
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
        for fit, fit_label in FITS.items():
            self.fit_combo.addItem(fit_label, fit)
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
        self.summary_label = MessageLabel("trainSummary")
        self.model_hint = MessageLabel("trainModelHint")
        self.resume_label = MessageLabel("trainResumeNote")

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
        form = self._layout = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for caption, buddy, row in (("&Folder", self.folder_edit, folder_row), (None, None, self.summary_label),
                                    ("F&amily", self.family_combo, options), ("&Name", self.name_edit, names)):
            if caption is None or buddy is None:  # the summary row: no caption, so no buddy
                form.addRow("", row)
                continue
            label = QLabel(caption)
            label.setBuddy(buddy)
            form.addRow(label, row)
        form.addRow("", self.model_hint)
        form.addRow("", self.resume_label)
        for label in (self.summary_label, self.model_hint, self.resume_label):
            form.setRowVisible(label, False)

    def _connect(self) -> None:
        self._relay.scanned.connect(self._on_scanned, Qt.ConnectionType.QueuedConnection)
        self._scan_timer = QTimer(self)
        self._scan_timer.setSingleShot(True)
        self._scan_timer.setInterval(SCAN_DELAY_MS)
        self._scan_timer.timeout.connect(self.rescan)
        self.folder_edit.textChanged.connect(self._on_folder_changed)
        self.family_combo.currentIndexChanged.connect(self._on_family_changed)
        self.steps_spin.valueChanged.connect(self.changed)
        self.id_edit.textEdited.connect(self._on_id_edited)
        self.id_edit.textChanged.connect(self._on_id_changed)
        self.name_edit.textEdited.connect(self._on_name_edited)

    # --- what the form says -----------------------------------------------------------------------------------------
    def family(self) -> str:
        return self.family_combo.currentData()

    def model_id(self) -> str:
        return self.id_edit.text().strip()

    def folder(self) -> str:
        return self.folder_edit.text().strip()

    def set_folder(self, folder: str | Path) -> None:
        self.folder_edit.setText(str(folder))

    @property
    def id_ok(self) -> bool:
        return bool(ID_RE.fullmatch(self.model_id()))

    @property
    def folder_ok(self) -> bool:
        """The newest scan of the folder shown, for the family shown, found enough to train on."""
        return self._scan_ok and self._scan_key == (self.folder(), self.family())

    def settings(self, family: str) -> dict:
        """What the form asks of a run of `family` (its trainer takes those it knows)."""
        wanted = dict(steps=self.steps_spin.value(), name=self.name_edit.text().strip() or self.model_id(),
                      device=self.device_combo.currentData())
        if family in IMAGE_FAMILIES:
            wanted.update(size=self.size_combo.currentData(), fit=self.fit_combo.currentData())
        return wanted

    def set_running(self, running: bool) -> None:
        """Settings are fixed while a run is in flight."""
        self._running = running
        for widget in (self.folder_edit, self.browse_button, self.family_combo, self.steps_spin, self.device_combo,
                       self.name_edit, self.id_edit):
            widget.setEnabled(not running)
        for widget in (self.size_combo, self.fit_combo):
            widget.setEnabled(not running and self.family() in IMAGE_FAMILIES)

    def _show(self, label: MessageLabel, text: str, colour: str | None, rich: bool = False) -> None:
        """Show `text` in one of the form's message rows; hide the row when there is nothing to say."""
        self._layout.setRowVisible(label, bool(text))
        label.say(text, colour, rich)

    # --- reacting to edits --------------------------------------------------------------------------------------------
    def _on_folder_changed(self, text: str) -> None:
        name = Path(text.strip()).name if text.strip() else ""
        if self._id_auto:
            self.id_edit.setText(slugify(name) if name else "")
        if self._name_auto:
            self.name_edit.setText(name)
        self._scan_ok = False
        self._scan_timer.start()
        self.changed.emit()

    def _on_family_changed(self, _index: int = 0) -> None:
        """A family brings its own trainer's defaults (a GAN at 64 px would take half an hour on a laptop CPU)."""
        defaults = family_defaults(self.family())
        if "size" in defaults and defaults["size"] in SIZES:
            self.size_combo.setCurrentIndex(SIZES.index(defaults["size"]))
        steps = defaults.get("steps")
        if isinstance(steps, (int, float)):  # the trainer's keyword default, untyped here
            self.steps_spin.setValue(int(steps))
        images = self.family() in IMAGE_FAMILIES
        for widget in (self.size_combo, self.fit_combo):
            widget.setEnabled(images and not self._running)
        self._scan_ok = False
        self._scan_timer.start(0 if self.folder() else SCAN_DELAY_MS)
        self.changed.emit()

    def _on_id_edited(self, _text: str) -> None:
        self._id_auto = False

    def _on_name_edited(self, _text: str) -> None:
        self._name_auto = False

    def _on_id_changed(self, _text: str) -> None:
        self.update_model_hint()
        self.update_resume()

    # --- the folder ---------------------------------------------------------------------------------------------------
    def rescan(self) -> None:
        """Look at the folder again (on a worker thread): the summary, or the error in red."""
        self._scan_timer.stop()
        folder, family = self.folder(), self.family()
        self._scan_stamp += 1
        self._scan_ok, self._scan_key = False, None
        if not folder:
            self._show(self.summary_label, "Pick a folder of pictures or sounds to learn from.", None)
            self.changed.emit()
            return
        self._show(self.summary_label, f"Looking at {folder}…", None)
        thread = threading.Thread(target=_scan, args=(self._relay, self._scan_stamp, Path(folder), family),
                                  name="latent-studio-train-scan", daemon=True)
        self._scans = [t for t in self._scans if t.is_alive()] + [thread]
        thread.start()
        self.changed.emit()

    @Slot(int, bool, str)
    def _on_scanned(self, stamp: int, ok: bool, text: str) -> None:
        if stamp != self._scan_stamp:
            return  # a newer scan is on its way
        self._scan_ok, self._scan_key = ok, (self.folder(), self.family())
        self._show(self.summary_label, text, None if ok else ERROR_COLOUR)
        self.changed.emit()

    def wait_for_scans(self, timeout: float = 5.0) -> None:
        for scan in self._scans:
            scan.join(timeout)
        self._scans = [t for t in self._scans if t.is_alive()]

    # --- the id -------------------------------------------------------------------------------------------------------
    def update_model_hint(self) -> None:
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

    def update_resume(self) -> None:
        """Offer Resume / Start Over when the id's run folder holds a checkpoint of an unfinished run."""
        info = None
        model_id = self.model_id()
        if ID_RE.fullmatch(model_id):
            info = read_checkpoint_info(runs_dir() / model_id / CHECKPOINT_NAME)
            if info is not None and info.finished:
                info = None
        self.resume_info = info
        if info is None or self._running:
            self._show(self.resume_label, "", None)
        else:
            of = f" of {info.total:,}" if info.total else ""
            what = f"{info.size} px, {info.fit}, " if info.size else ""
            self._show(self.resume_label,
                       html.escape(f"A stopped run of “{model_id}” is kept at step {info.step:,}{of} ({what}on "
                                   f"{info.folder}). ") + "<b>Resume</b> continues it with its own settings; "
                       "<b>Start Over</b> deletes it.", NOTE_COLOUR, rich=True)
        self.changed.emit()

    def forget_resume(self) -> None:
        """A run in flight owns the id's checkpoint now: nothing to offer until it ends."""
        self.resume_info = None
        self._show(self.resume_label, "", None)

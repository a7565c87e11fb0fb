"""The model browser: the installed packages (valid and invalid), the details of the selected one, "Use Model",
"Open Model Folder…", "Open Model File…" (Stable Diffusion .safetensors) and "Import Checkpoint…".

Nothing here hashes weights (`PackageEntry.sha256` / `to_dict` read the whole file): the details are built from the
manifest and the cheap header reads only.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt
from PySide6.QtGui import QFont, QIcon, QKeyEvent, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QInputDialog, QListWidget, QListWidgetItem, QPushButton,
                               QSplitter, QStyle, QTextBrowser, QVBoxLayout, QWidget)

from studio.params import CONDITIONS, Capability, Kind

if TYPE_CHECKING:
    from studio.library import PackageEntry
    from studio.manifest import Manifest

ICON_HEIGHT = 64
ICON_WIDTH = 128  # wider previews are cropped (from the left) so that every item's text lines up
ERROR_COLOUR = "#e5534b"
_ENTRY = Qt.ItemDataRole.UserRole


def format_figure(key: str, value: Any) -> str:
    """A quality figure for people: accuracies in 0..1 as percentages, other numbers to 4 significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if "accuracy" in key.lower() and 0 <= value <= 1:
            return f"{value * 100:.1f} %"
        if isinstance(value, int):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_figure(key, item) for item in value)
    return str(value)


def quality_rows(quality: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(label, formatted value) pairs of a manifest's `training.quality` table; nested tables are flattened."""
    if not isinstance(quality, dict):
        return []
    rows: list[tuple[str, str]] = []
    for key, value in quality.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(quality_rows(value, f"{name}."))
        else:
            rows.append((name.replace("_", " "), format_figure(name, value)))
    return rows


def _output_text(manifest: Manifest) -> str:
    output = manifest.output
    fields = dict(output.fields)
    if output.kind == "image":
        channels = fields.get("channels", 1)
        return (f"image, {fields.get('width')} × {fields.get('height')} px, {channels} "
                f"channel{'s' if channels != 1 else ''}")
    if output.kind == "audio":
        return (f"audio, {fields.get('length')} samples at {fields.get('sample_rate')} Hz, "
                f"{fields.get('channels')} channel{'s' if fields.get('channels') != 1 else ''}")
    return ", ".join([output.kind, *(f"{k} {v}" for k, v in fields.items())])


def _latent_text(manifest: Manifest) -> str:
    latent = manifest.latent
    shape = " × ".join(str(s) for s in latent.shape)
    size = f"{shape} values" if len(latent.shape) == 1 else f"{shape} ({latent.size} values)"
    return f"{size}, {latent.prior} prior"


def _conditions_text(entry: PackageEntry) -> str:
    """What the model is told to draw, from its specs in the Conditions group: a text of an alphabet, free text (a
    prompt and a negative prompt), a class …; its default."""
    specs = [s for s in entry.parameters if s.group == CONDITIONS and not s.is_core]
    if not specs:
        return "none"
    parts, free = [], []
    for spec in specs:
        if spec.kind is Kind.TEXT and spec.charset:
            shown = spec.charset if len(spec.charset) <= 64 else spec.charset[:64] + "…"
            parts.append(f"text ({len(spec.charset)} characters: {shown})")
        elif spec.kind is Kind.TEXT:
            free.append(spec.name.replace("_", " "))
        elif spec.kind is Kind.CHOICE:
            labels = [label for _, label in spec.choices]
            shown = ", ".join(labels[:12]) + (", …" if len(labels) > 12 else "")
            parts.append(f"{spec.title.lower()} ({len(labels)} labels: {shown})")
        else:
            parts.append(f"{spec.title.lower()} ({spec.kind.value})")
    if free:
        parts.insert(0, f"text {free[0]} (any text)" + "".join(f" and {name}" for name in free[1:]))
    default = next((s.default for s in specs if isinstance(s.default, str) and s.default), "")
    return "; ".join(parts) + (f", default “{default}”" if default else "")


def _capabilities_text(entry: PackageEntry) -> str:
    caps = entry.capabilities
    return ", ".join(c.name.lower().replace("_", " ") for c in Capability if c in caps and c.name) or "—"


def details_html(entry: PackageEntry | None, current: bool = False) -> str:
    """The rich-text details of a package (its error, when it is invalid)."""
    if entry is None:
        return ("<p>No model package is installed.</p><p>Use <b>Open Model Folder…</b> to add one: a model package "
                "is a folder with <tt>model.toml</tt> and <tt>weights.safetensors</tt>.</p>")
    e = html.escape
    if not entry.ok or entry.manifest is None:
        error = str(entry.error) if entry.error is not None else "the package could not be read"
        return (f"<h3>{e(entry.folder.name)} — invalid</h3>"
                f"<p style='color:{ERROR_COLOUR}; white-space:pre-wrap'>{e(error)}</p>"
                f"<p><b>Folder</b><br>{e(str(entry.folder))}</p>")
    m = entry.manifest
    capabilities = _capabilities_text(entry)
    rows = [("Id", m.id), ("Version", m.version), ("Family", m.family), ("Output", _output_text(m)),
            ("Latent", _latent_text(m)), ("Conditions", _conditions_text(entry)),
            ("Directions", str(entry.direction_count)), ("Capabilities", capabilities), ("License", m.license),
            ("Folder", str(entry.folder))]
    parts = [f"<h3>{e(m.name)}{' <small>(current)</small>' if current else ''}</h3>"]
    if m.description:
        parts.append(f"<p>{e(m.description)}</p>")
    parts.append(_table(rows))
    quality = quality_rows(m.training.get("quality"))
    if quality:
        parts.append("<h4>Quality</h4>")
        parts.append(_table(quality, numbers=True))
    return "".join(parts)


def _table(rows: list[tuple[str, str]], numbers: bool = False) -> str:
    align = " align='right'" if numbers else ""
    body = "".join(f"<tr><td style='padding-right:12px'><b>{html.escape(k)}</b></td>"
                   f"<td{align}>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table cellspacing='0' cellpadding='1'>{body}</table>"


class ModelBrowser(QWidget):
    """The installed model packages; "Use Model" makes the selected one current (one undoable step)."""

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelBrowser")
        self.session = session
        self._entries: list[PackageEntry] = []  # parallel to the list's rows
        self._icons: dict[tuple[str, int], QIcon] = {}  # (preview path, mtime) -> icon
        self._placeholder: QIcon | None = None
        self._invalid_icon: QIcon | None = None

        self._list = QListWidget(self)
        self._list.setObjectName("modelList")
        self._list.setIconSize(QSize(ICON_WIDTH, ICON_HEIGHT))
        self._list.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self._list.setUniformItemSizes(False)
        self._list.setWordWrap(False)
        self._list.setToolTip("Installed model packages — double-click one (or press Enter) to use it")
        self._list.installEventFilter(self)

        self._details = QTextBrowser(self)
        self._details.setObjectName("modelDetails")
        self._details.setOpenLinks(False)
        self._details.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)
        self._details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                              | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self._details.setToolTip("Details of the selected model package")

        self._use = QPushButton("Use Model", self)
        self._use.setObjectName("useModelButton")
        self._use.setToolTip("Render with the selected model (undoable; also: double-click or Enter)")
        self._open = QPushButton("Open Model Folder…", self)
        self._open.setObjectName("openModelFolderButton")
        self._open.setToolTip("Add the model packages in a folder (a package, a folder of packages, or a diffusers "
                              "Stable Diffusion pipeline folder)")
        self._open_file = QPushButton("Open Model File…", self)
        self._open_file.setObjectName("openModelFileButton")
        self._open_file.setToolTip("Add a Stable Diffusion 1.x .safetensors checkpoint, or open an NVIDIA StyleGAN "
                                   "network pickle (.pkl, converted once, never run)")
        self._import = QPushButton("Import Checkpoint…", self)
        self._import.setObjectName("importCheckpointButton")
        self._import.setToolTip("Convert a PyTorch checkpoint (.ckpt, .pt, .pth, .pkl) or an NVIDIA StyleGAN network "
                                "pickle, read without running it")
        from studio.ui.import_model import Importer  # (here: importing reaches torch)

        self.importer = Importer(self)
        self._open_after_import = False  # the import running was asked for by Open Model File: use the result
        self.importer.finished.connect(self._on_imported)
        self.importer.failed.connect(self._on_import_failed)

        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self._list)
        splitter.addWidget(self._details)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        buttons = QHBoxLayout()
        buttons.addWidget(self._use)
        buttons.addStretch(1)
        buttons.addWidget(self._open)
        more = QHBoxLayout()  # a second row: one row of four buttons would set the dock's minimum width
        more.addStretch(1)
        more.addWidget(self._import)
        more.addWidget(self._open_file)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)
        layout.addLayout(more)

        self._list.currentRowChanged.connect(self._on_selection_changed)
        self._list.itemDoubleClicked.connect(lambda item: self._activate(self._entry_of(item)))
        self._use.clicked.connect(lambda: self._activate(self.selected_entry()))
        self._open.clicked.connect(self.open_model_folder)
        self._open_file.clicked.connect(self.open_model_file)
        self._import.clicked.connect(self.import_checkpoint)

        session.models_changed.connect(self._on_models_changed)
        session.model_changed.connect(self._on_model_changed)

        self._on_models_changed()

    # --- public -----------------------------------------------------------------------------------------------------
    def selected_entry(self) -> PackageEntry | None:
        return self._entry_of(self._list.currentItem())

    def select(self, model_id: str | Path) -> bool:
        """Select the package with this id (or folder); the valid one when ids clash. False when none matches."""
        row = self._row_for(model_id)
        if row < 0:
            return False
        self._list.setCurrentRow(row)
        return True

    def open_folder_dialog(self) -> str:
        """Ask for a folder ("" when cancelled). Tests replace this."""
        return QFileDialog.getExistingDirectory(self, "Open Model Folder", "",
                                                QFileDialog.Option.ShowDirsOnly)

    def open_model_folder(self) -> None:
        path = self.open_folder_dialog()
        if not path:
            return
        added = self.session.add_model_folder(path)
        if added:
            self.select(added[0].folder)

    def open_file_dialog(self) -> str:
        """Ask for a checkpoint file ("" when cancelled). Tests replace this."""
        return QFileDialog.getOpenFileName(self, "Open Model File", "",
                                           "Model files (*.safetensors *.pkl);;Stable Diffusion checkpoints "
                                           "(*.safetensors);;NVIDIA StyleGAN network pickles (*.pkl)")[0]

    def open_model_file(self) -> None:
        path = self.open_file_dialog()
        if not path:
            return
        from studio.ui.import_model import converts_on_its_own

        if converts_on_its_own(Path(path)):  # an NVIDIA network pickle: converted once, then opened as a package
            self._start_import(Path(path), None, open_after=True)
            return
        added = self.session.add_model_folder(path)
        if added:
            self.select(added[0].folder)

    def import_file_dialog(self) -> str:
        """Ask for a checkpoint to import ("" when cancelled). Tests replace this."""
        return QFileDialog.getOpenFileName(self, "Import Checkpoint", "",
                                           "PyTorch checkpoints and nn~ models (*.ckpt *.pt *.pth *.pkl *.bin "
                                           "*.safetensors *.ts)")[0]

    def choose_architecture(self, source: Path) -> PackageEntry | str | None | Literal[False]:
        """Which architecture the checkpoint has: None for Stable Diffusion, NN_TILDE_CHOICE for an nn~ model, an
        installed package, or False when cancelled. Tests replace this."""
        from studio.ui.import_model import NN_TILDE_CHOICE, SD_CHOICE

        usable = [e for e in self.session.entries if e.ok and e.manifest is not None
                  and not (e.family is not None and (e.family.opens_files or e.family.runs_code))]
        names = [SD_CHOICE, NN_TILDE_CHOICE] + [f"{e.manifest.name} ({e.id}, {e.manifest.family})" for e in usable]
        choice, ok = QInputDialog.getItem(self, "Import Checkpoint",
                                          f"What is {source.name}? A checkpoint's tensors are read without running "
                                          "any of its code, and must fit the architecture you choose.", names,
                                          1 if source.suffix.lower() == ".ts" else 0, False)
        if not ok:
            return False
        if choice == NN_TILDE_CHOICE:
            return NN_TILDE_CHOICE
        return None if choice == SD_CHOICE else usable[names.index(choice) - 2]

    def import_checkpoint(self) -> None:
        if self.importer.busy:
            self.session.message.emit("warning", "An import is already running", "")
            return
        path = self.import_file_dialog()
        if not path:
            return
        from studio.ui.import_model import converts_on_its_own

        # a file recognised by its content (an NVIDIA network pickle) brings its own architecture
        like = None if converts_on_its_own(Path(path)) else self.choose_architecture(Path(path))
        if like is False:
            return
        self._start_import(Path(path), like)

    def _start_import(self, source: Path, like: PackageEntry | str | None, open_after: bool = False) -> None:
        if self.importer.busy:
            self.session.message.emit("warning", "An import is already running", "")
            return
        self._open_after_import = open_after
        self._import.setEnabled(False)
        self._import.setText("Importing…")
        self.importer.start(source, like)

    def _import_done(self) -> None:
        self._import.setEnabled(True)
        self._import.setText("Import Checkpoint…")

    def _on_imported(self, source: str, result: str) -> None:
        self._import_done()
        path = Path(result)
        if path.is_file():  # a converted Stable Diffusion checkpoint: open it
            added = self.session.add_model_folder(path)
        else:  # a new package in the user models folder (a session on other roots adds it as a folder)
            self.session.refresh_models()
            added = [e for e in self.session.entries if e.folder.resolve() == path.resolve()] \
                or self.session.add_model_folder(path)
            if added:
                self.session.message.emit("info", f"Imported {Path(source).name} as {added[0].id}", str(path))
                manifest = added[0].manifest
                note = manifest.training.get("import_note") if manifest is not None else None
                if isinstance(note, str) and note:  # what the import chose for you (G for a missing G_ema, say)
                    self.session.message.emit("warning", f"{Path(source).name}: {note.split(';')[0]}", note)
        if added:
            self.select(added[0].folder)
            if self._open_after_import:  # File → Open Model File on a network pickle: use what it became
                self._activate(added[0])
        self._open_after_import = False

    def _on_import_failed(self, source: str, message: str) -> None:
        self._import_done()
        self._open_after_import = False
        self.session.message.emit("error", f"Cannot import {Path(source).name}", message)

    # --- session signals --------------------------------------------------------------------------------------------
    def _on_models_changed(self) -> None:
        selected = self.selected_entry()
        keep = selected.folder if selected is not None else None
        self._list.blockSignals(True)
        self._list.clear()
        self._entries = list(self.session.entries)
        live: set[tuple[str, int]] = set()
        for row, entry in enumerate(self._entries):
            self._list.addItem(self._make_item(row, entry, live))
        self._icons = {k: v for k, v in self._icons.items() if k in live}
        row = self._row_for(keep) if keep is not None else -1
        if row < 0:
            row = self._current_row()
        if row < 0 and self._entries:
            row = 0
        self._list.setCurrentRow(row)
        self._list.blockSignals(False)
        self._mark_current()
        self._on_selection_changed(row)

    def _on_model_changed(self, _entry: PackageEntry | None) -> None:
        self._mark_current()
        row = self._current_row()
        if row >= 0:
            self._list.setCurrentRow(row)  # shows the new current model's details
        self._on_selection_changed(self._list.currentRow())

    # --- list -------------------------------------------------------------------------------------------------------
    def _make_item(self, row: int, entry: PackageEntry, live: set[tuple[str, int]]) -> QListWidgetItem:
        item = QListWidgetItem()
        if entry.ok and entry.manifest is not None:
            m = entry.manifest
            item.setText(f"{m.name}\n{m.family} · {m.output.kind}")
            item.setToolTip(f"{m.name} ({m.id})\n{entry.folder}")
            item.setIcon(self._preview_icon(entry, live))
        else:
            item.setText(f"{entry.folder.name} — invalid")
            item.setToolTip(str(entry.error) if entry.error is not None else "the package could not be read")
            item.setIcon(self._warning_icon())
        item.setData(_ENTRY, row)
        return item

    def _entry_of(self, item: QListWidgetItem | None) -> PackageEntry | None:
        if item is None:
            return None
        index = item.data(_ENTRY)
        return self._entries[index] if isinstance(index, int) and 0 <= index < len(self._entries) else None

    def _row_for(self, key: str | Path | None) -> int:
        if key is None:
            return -1
        rows = [i for i, e in enumerate(self._entries) if (isinstance(key, Path) and e.folder == key) or e.id == key]
        ok = [i for i in rows if self._entries[i].ok]
        return (ok or rows or [-1])[0]

    def _is_current(self, entry: PackageEntry | None) -> bool:
        current = self.session.entry
        return entry is not None and current is not None and entry.folder == current.folder

    def _current_row(self) -> int:
        return next((i for i, e in enumerate(self._entries) if self._is_current(e)), -1)

    def _mark_current(self) -> None:
        for row, entry in enumerate(self._entries):
            item = self._list.item(row)
            font = QFont(self._list.font())
            font.setBold(self._is_current(entry))
            item.setFont(font)

    def _on_selection_changed(self, _row: int) -> None:
        entry = self.selected_entry()
        if entry is None and not self._entries:
            self._details.setHtml(details_html(None))
        elif entry is None:
            self._details.setHtml("<p>Select a model to see its details.</p>")
        else:
            self._details.setHtml(details_html(entry, self._is_current(entry)))
        self._use.setEnabled(entry is not None and entry.ok and not self._is_current(entry))

    def _activate(self, entry: PackageEntry | None) -> None:
        if entry is None or self._is_current(entry):
            return
        if not entry.ok or entry.manifest is None:  # (a double-click or Enter on an invalid package): say why, once
            error = str(entry.error) if entry.error is not None else "the package could not be read"
            self.session.message.emit("error", f"Cannot use model {entry.id}: {' '.join(error.split())}", error)
            return
        self.session.use_model(entry.id)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (watched is self._list and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent)
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)):
            self._activate(self.selected_entry())
            return True
        return super().eventFilter(watched, event)

    # --- icons ------------------------------------------------------------------------------------------------------
    def _canvas(self) -> tuple[QPixmap, QPainter]:
        ratio = self.devicePixelRatioF()
        pixmap = QPixmap(QSize(round(ICON_WIDTH * ratio), round(ICON_HEIGHT * ratio)))
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        return pixmap, painter

    def _preview_icon(self, entry: PackageEntry, live: set[tuple[str, int]]) -> QIcon:
        path = entry.preview_path
        if path is None:
            return self._placeholder_icon()
        try:
            key = (str(path), path.stat().st_mtime_ns)
        except OSError:
            return self._placeholder_icon()
        live.add(key)
        icon = self._icons.get(key)
        if icon is None:
            icon = self._load_preview(path)
            self._icons[key] = icon
        return icon

    def _load_preview(self, path: Path) -> QIcon:
        source = QPixmap(str(path))
        if source.isNull():
            return self._placeholder_icon()
        ratio = self.devicePixelRatioF()
        scaled = source.scaledToHeight(round(ICON_HEIGHT * ratio), Qt.TransformationMode.SmoothTransformation)
        width = min(scaled.width() / ratio, ICON_WIDTH)
        pixmap, painter = self._canvas()
        target = QRectF((ICON_WIDTH - width) / 2, 0, width, ICON_HEIGHT)
        painter.drawPixmap(target, scaled, QRectF(0, 0, width * ratio, scaled.height()))
        painter.end()
        return QIcon(pixmap)

    def _placeholder_icon(self) -> QIcon:
        if self._placeholder is None:
            pixmap, painter = self._canvas()
            palette = self.palette()
            box = QRectF((ICON_WIDTH - ICON_HEIGHT) / 2 + 4.5, 4.5, ICON_HEIGHT - 9, ICON_HEIGHT - 9)
            painter.setPen(palette.color(QPalette.ColorRole.Mid))
            painter.setBrush(palette.color(QPalette.ColorRole.Base))
            painter.drawRoundedRect(box, 6, 6)
            text = palette.color(QPalette.ColorRole.Text)
            text.setAlphaF(0.55)
            font = painter.font()
            font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
            painter.setFont(font)
            painter.setPen(text)
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "no\npreview")
            painter.end()
            self._placeholder = QIcon(pixmap)
        return self._placeholder

    def _warning_icon(self) -> QIcon:
        if self._invalid_icon is None:
            pixmap, painter = self._canvas()
            side = 40
            icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
            icon.paint(painter, round((ICON_WIDTH - side) / 2), round((ICON_HEIGHT - side) / 2), side, side)
            painter.end()
            self._invalid_icon = QIcon(pixmap)
        return self._invalid_icon

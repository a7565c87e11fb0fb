"""The export questions with an output size: where to write, and how big — ×1–×16 with nearest (crisp pixels) or
smooth filtering, or a width × height; for videos also the frame rate and the frames to export. And where exports
go by default: the last folder used for that kind, else the platform's Pictures / Music / Videos folder, never the
app's own folder (its resources/ or the checkout)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton, QSpinBox, QWidget)

from studio.errors import StudioError
from studio.export.scale import FILTERS, MAX_SCALE, OutputSize
from studio.limits import MAX_FPS, MAX_SIDE
from studio.paths import shipped_resources_dir

_LOCATIONS = {"image": QStandardPaths.StandardLocation.PicturesLocation,
              "sound": QStandardPaths.StandardLocation.MusicLocation,
              "video": QStandardPaths.StandardLocation.MoviesLocation}
_FILTER_TEXTS = {"nearest": "Nearest (crisp pixels)", "smooth": "Smooth"}
APP_ROOT = Path(__file__).resolve().parents[2]  # the checkout (or the bundle) the app runs from


# --- folders -------------------------------------------------------------------------------------------------------


def _inside_app(folder: Path) -> bool:
    try:
        resolved = folder.resolve()
    except (OSError, RuntimeError):
        return True
    return any(resolved == root or root in resolved.parents for root in (APP_ROOT, shipped_resources_dir().resolve()))


def export_folder(settings: QSettings, kind: str) -> str:
    """Where an export of `kind` ("image", "sound", "video") starts: the last folder used for it, else the
    platform's Pictures / Music / Videos folder, else home — never a folder inside the app."""
    stored = settings.value(f"export_folder/{kind}")
    if isinstance(stored, str) and stored and Path(stored).is_dir() and not _inside_app(Path(stored)):
        return stored
    standard = QStandardPaths.writableLocation(_LOCATIONS.get(kind, _LOCATIONS["image"]))
    if standard and Path(standard).is_dir() and not _inside_app(Path(standard)):
        return standard
    return str(Path.home())


def remember_folder(settings: QSettings, kind: str, path: str | Path) -> None:
    """Remember the folder of an export of `kind` (not one inside the app)."""
    folder = Path(path).parent
    if not _inside_app(folder):
        settings.setValue(f"export_folder/{kind}", str(folder))


# --- the output size -----------------------------------------------------------------------------------------------


def suggested_scale(width: int, height: int) -> int:
    """A scale that makes a small picture postable: the smallest ×N with the long side at least 1024 px (×1 for a
    picture that big already), at most ×4."""
    side = max(width, height, 1)
    return max(1, min(4, math.ceil(1024 / side)))


class SizeChooser(QWidget):
    """Scale ×N with a filter, or width × height; shows the size that comes out."""

    def __init__(self, source: tuple[int, int] | None, scale: int = 1, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("exportSize")
        self.source = source
        self.by_scale = QRadioButton("Scale ×")
        self.by_scale.setObjectName("exportByScale")
        self.scale = QSpinBox()
        self.scale.setObjectName("exportScale")
        self.scale.setRange(1, MAX_SCALE)
        self.scale.setValue(scale)
        self.scale.setToolTip(f"Write the picture 1 to {MAX_SCALE} times larger than the model draws it")
        self.filter = QComboBox()
        self.filter.setObjectName("exportFilter")
        for name in FILTERS:
            self.filter.addItem(_FILTER_TEXTS[name], name)
        self.filter.setToolTip("Nearest repeats every pixel (sharp pixel art); smooth blends them (Lanczos)")
        self.by_size = QRadioButton("Size")
        self.by_size.setObjectName("exportBySize")
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box, name, value in ((self.width_box, "exportWidth", source[0] if source else 512),
                                 (self.height_box, "exportHeight", source[1] if source else 512)):
            box.setObjectName(name)
            box.setRange(1, MAX_SIDE)
            box.setValue(value)
            box.setSuffix(" px")
        group = QButtonGroup(self)
        group.addButton(self.by_scale)
        group.addButton(self.by_size)
        self.by_scale.setChecked(True)
        self.result = QLabel()
        self.result.setObjectName("exportResult")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for widget in (self.by_scale, self.scale, self.by_size, self.width_box, QLabel("×"), self.height_box,
                       self.filter, self.result):
            row.addWidget(widget)
        for signal in (self.scale.valueChanged, self.width_box.valueChanged, self.height_box.valueChanged,
                       self.filter.currentIndexChanged, self.by_scale.toggled):
            signal.connect(self._update)
        self._update()

    def output_size(self) -> OutputSize | None:
        """The chosen OutputSize (None: the model's own size)."""
        filter_name = self.filter.currentData()
        if self.by_size.isChecked():
            size = (self.width_box.value(), self.height_box.value())
            return None if size == self.source else OutputSize(size=size, filter=filter_name)
        chosen = OutputSize(self.scale.value(), filter_name)
        return None if chosen.identity else chosen

    def _update(self) -> None:
        by_scale = self.by_scale.isChecked()
        self.scale.setEnabled(by_scale)
        self.width_box.setEnabled(not by_scale)
        self.height_box.setEnabled(not by_scale)
        try:
            chosen = self.output_size()
            if self.source is None:
                text = f"×{self.scale.value()}" if by_scale else ""
            else:
                width, height = chosen.target(*self.source) if chosen is not None else self.source
                text = f"= {width} × {height} px"
        except StudioError as exc:
            text = exc.problem
        self.result.setText(text)


# --- the dialogs ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageExport:
    path: str
    output_size: OutputSize | None


@dataclass(frozen=True)
class VideoExport:
    path: str
    output_size: OutputSize | None
    fps: float | None  # None: the timeline's
    frames: tuple[int, int] | None  # (first, last), 1-based; None: all


class ExportDialog(QDialog):
    """Where (a path with Browse…) and how big; a video adds its frame rate and frame range."""

    def __init__(self, parent: QWidget | None, title: str, suggestion: str, browse: Callable[[QWidget, str], str],
                 source: tuple[int, int] | None, scale: int = 1, fps: float | None = None,
                 count: Callable[[float], int] | None = None):
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle(title)
        self._browse, self._count, self._fps0 = browse, count, fps
        self.path = QLineEdit(suggestion)
        self.path.setObjectName("exportPath")
        self.path.setMinimumWidth(360)
        choose = QPushButton("Browse…")
        choose.setObjectName("exportBrowse")
        choose.clicked.connect(self._choose)
        where = QHBoxLayout()
        where.addWidget(self.path, 1)
        where.addWidget(choose)
        self.chooser = SizeChooser(source, scale)
        form = QFormLayout(self)
        form.addRow("File", where)
        form.addRow("Output size", self.chooser)
        self.fps: QDoubleSpinBox | None = None
        if fps is not None and count is not None:
            self.fps = QDoubleSpinBox()
            self.fps.setObjectName("exportFps")
            self.fps.setRange(1, MAX_FPS)
            self.fps.setDecimals(2)
            self.fps.setValue(fps)
            self.fps.setSuffix(" fps")
            self.first, self.last = QSpinBox(), QSpinBox()
            self.first.setObjectName("exportFirst")
            self.last.setObjectName("exportLast")
            self.frames_note = QLabel()
            self.frames_note.setObjectName("exportFrameCount")
            frames = QHBoxLayout()
            for widget in (self.first, QLabel("to"), self.last, self.frames_note):
                frames.addWidget(widget)
            form.addRow("Frame rate", self.fps)
            form.addRow("Frames", frames)
            self.fps.valueChanged.connect(self._frames_for_fps)
            self._frames_for_fps()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        self.problem = QLabel()
        self.problem.setObjectName("exportProblem")
        self.problem.setWordWrap(True)
        form.addRow(self.problem)
        form.addRow(buttons)

    def _frames_for_fps(self) -> None:
        assert self.fps is not None and self._count is not None
        total = max(1, self._count(self.fps.value()))
        for box in (self.first, self.last):
            box.setRange(1, total)
        self.first.setValue(1)
        self.last.setValue(total)
        self.frames_note.setText(f"of {total} frames")

    def _choose(self) -> None:
        chosen = self._browse(self, self.path.text())
        if chosen:
            self.path.setText(chosen)

    def _accept(self) -> None:
        if not self.path.text().strip():
            self.problem.setText("Choose a file to write.")
            return
        try:
            self.chooser.output_size()
        except StudioError as exc:
            self.problem.setText(exc.problem)
            return
        if self.fps is not None and self.first.value() > self.last.value():
            self.problem.setText("The first frame comes after the last.")
            return
        self.accept()

    def image_export(self) -> ImageExport:
        return ImageExport(self.path.text().strip(), self.chooser.output_size())

    def video_export(self) -> VideoExport:
        fps = frames = None
        if self.fps is not None:
            fps = self.fps.value() if self.fps.value() != self._fps0 else None
            total = self.last.maximum()
            first, last = self.first.value(), self.last.value()
            frames = None if (first, last) == (1, total) else (first, last)
        return VideoExport(self.path.text().strip(), self.chooser.output_size(), fps, frames)


def _image_browse(parent: QWidget, current: str) -> str:
    from studio.ui import dialogs

    return dialogs.ask_export_image(parent, current)


def _video_browse(parent: QWidget, current: str) -> str:
    from studio.ui import dialogs

    return dialogs.ask_video_path(parent, current)[0]


def ask_image_export(parent: QWidget, suggestion: str, source: tuple[int, int] | None) -> ImageExport | None:
    """Where and how big to export the current picture (`source`: its size); None when cancelled."""
    dialog = ExportDialog(parent, "Export Image", suggestion, _image_browse, source)
    return dialog.image_export() if dialog.exec() == QDialog.DialogCode.Accepted else None


def ask_video_export(parent: QWidget, suggestion: str, source: tuple[int, int] | None, fps: float,
                     count: Callable[[float], int]) -> VideoExport | None:
    """Where, how big, at what frame rate and which frames (`count(fps)`: the timeline's frames at a rate) to
    export the timeline; None when cancelled. A small picture starts at ×N nearest, so a 256×64 strip is 1024×256."""
    scale = suggested_scale(*source) if source is not None else 1
    dialog = ExportDialog(parent, "Export Video", suggestion, _video_browse, source, scale, fps, count)
    return dialog.video_export() if dialog.exec() == QDialog.DialogCode.Accepted else None

"""Compare: the current render against a pinned image, as a split view (a vertical divider dragged with the mouse or
the slider: left of it the pinned image, right of it the current one) or side by side (pinned left, current right).

The current side follows the preview live (every frame the canvas shows). What can be pinned: the current render
(Pin Current), the last exported image, the image a projection or encoding started from, any image file, or what
`MainWindow.compare_with` hands over (a gallery item). Images of different sizes are scaled to one box (the label
says so), at the preview's zoom when it is not fitted. Only painting runs per frame: the images are converted once.

The geometry (`fit_box`, `inside`, `split_x`, `fraction_at`, `side_by_side`) is plain arithmetic on (x, y, w, h)
tuples, tested without a window.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QMenu, QSlider, QToolButton,
                               QVBoxLayout, QWidget)

from studio.errors import StudioError
from studio.ui.canvas import BACKGROUND, PLACEHOLDER_TEXT, paint_progress, qimage_from_array

if TYPE_CHECKING:
    from studio.ui.session import Session

Box = tuple[float, float, float, float]  # x, y, width, height
SPLIT, SIDE_BY_SIDE = "split", "side"
MODES = (SPLIT, SIDE_BY_SIDE)
MODE_TEXT = {SPLIT: "Split", SIDE_BY_SIDE: "Side by side"}
GAP = 8  # px between the two images side by side
LABEL_BAND = 24  # px at the top for the labels
SLIDER_STEPS = 1000
DIVIDER = QColor(0xF0, 0xF0, 0xF0)
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"


# --- geometry ---------------------------------------------------------------------------------------------------------


def fit_box(area: Box, image: tuple[int, int], zoom: float | None = None) -> Box:
    """Where an image of `image` (w, h) pixels goes in `area`, centred: scaled to fit (zoom None) or at `zoom` logical
    px per image px."""
    ax, ay, aw, ah = area
    iw, ih = max(1, image[0]), max(1, image[1])
    scale = min(aw / iw, ah / ih) if zoom is None else zoom
    w, h = iw * scale, ih * scale
    return ax + (aw - w) / 2, ay + (ah - h) / 2, w, h


def inside(box: Box, image: tuple[int, int]) -> Box:
    """An image of another size shown in `box`: the largest rectangle of its proportions that fits, centred."""
    return fit_box(box, image)


def split_x(box: Box, fraction: float) -> float:
    """The divider's x for a split at `fraction` (0: all current, 1: all pinned) of `box`."""
    return box[0] + min(1.0, max(0.0, fraction)) * box[2]


def fraction_at(box: Box, x: float) -> float:
    """The split fraction that puts the divider at `x` (clamped to the box)."""
    return 0.5 if box[2] <= 0 else min(1.0, max(0.0, (x - box[0]) / box[2]))


def side_by_side(area: Box, pinned: tuple[int, int], current: tuple[int, int], zoom: float | None = None,
                 gap: float = GAP) -> tuple[Box, Box]:
    """The two boxes side by side (pinned left, current right): each half of `area` less the gap; both images
    scaled to one box (the current one's fitted size in its half), each at its own proportions inside it."""
    ax, ay, aw, ah = area
    half = max(1.0, (aw - gap) / 2)
    shared = fit_box((ax + half + gap, ay, half, ah), current, zoom)  # the current picture in the right half
    mirror = (shared[0] - half - gap, shared[1], shared[2], shared[3])  # the same box in the left half
    return inside(mirror, pinned), shared


# --- the view ---------------------------------------------------------------------------------------------------------


class CompareArea(QWidget):
    """The painted images, labels and divider; a press or drag moves the divider (split mode)."""

    fraction_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("compareArea")
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # C (View ▸ Compare) goes back to the canvas from here
        self.mode = SPLIT
        self.fraction = 0.5
        self.zoom: float | None = None
        self.pinned: QPixmap | None = None
        self.current: QPixmap | None = None
        self.pinned_label, self.current_label = "", "Current"
        self.progress: tuple[int, int, str] | None = None
        self._dragging = False

    def image_area(self) -> Box:
        return 0.0, float(LABEL_BAND), float(self.width()), float(max(1, self.height() - LABEL_BAND))

    def boxes(self) -> tuple[Box, Box] | None:
        """(pinned box, current box) in widget coordinates; None without both images."""
        if self.pinned is None or self.current is None:
            return None
        psize = (self.pinned.width(), self.pinned.height())
        csize = (self.current.width(), self.current.height())
        if self.mode == SIDE_BY_SIDE:
            return side_by_side(self.image_area(), psize, csize, self.zoom)
        box = fit_box(self.image_area(), csize, self.zoom)
        return inside(box, psize), box

    def divider_x(self) -> float | None:
        boxes = self.boxes()
        return None if boxes is None or self.mode != SPLIT else split_x(boxes[1], self.fraction)

    def set_fraction(self, fraction: float) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if fraction != self.fraction:
            self.fraction = fraction
            self.update()
            self.fraction_changed.emit(fraction)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        boxes = self.boxes()
        if event.button() == Qt.MouseButton.LeftButton and boxes is not None and self.mode == SPLIT:
            self._dragging = True
            self.set_fraction(fraction_at(boxes[1], event.position().x()))
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        boxes = self.boxes()
        if self._dragging and boxes is not None and event.buttons() & Qt.MouseButton.LeftButton:
            self.set_fraction(fraction_at(boxes[1], event.position().x()))
            event.accept()
            return
        x = self.divider_x()
        near = x is not None and abs(event.position().x() - x) < 8
        self.setCursor(Qt.CursorShape.SplitHCursor if near or self._dragging else Qt.CursorShape.ArrowCursor)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._dragging and event.button() == Qt.MouseButton.LeftButton:
            self._dragging = False
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        boxes = self.boxes()
        if boxes is None:
            painter.setPen(PLACEHOLDER_TEXT)
            text = ("Nothing pinned yet: Pin Current (Ctrl+Shift+P), the last export, the projection target or an "
                    "image file, then change the render" if self.pinned is None else "No current render yet")
            painter.drawText(self.rect().adjusted(12, 0, -12, 0),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
        else:
            self._paint_images(painter, boxes)
        if self.progress is not None:
            paint_progress(painter, self.rect(), self.progress)
        painter.end()

    def _paint_images(self, painter: QPainter, boxes: tuple[Box, Box]) -> None:
        assert self.pinned is not None and self.current is not None
        pinned_box, current_box = (QRectF(*b) for b in boxes)
        smooth = not (current_box.width() >= 2 * self.current.width())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        band = QRectF(6, 2, self.width() - 12, LABEL_BAND - 4)
        painter.setPen(QColor(0xE0, 0xE0, 0xE0))
        if self.mode == SPLIT:
            x = split_x(boxes[1], self.fraction)
            painter.save()
            painter.setClipRect(QRectF(0, 0, x, self.height()))
            painter.drawPixmap(pinned_box, self.pinned, QRectF(self.pinned.rect()))
            painter.restore()
            painter.save()
            painter.setClipRect(QRectF(x, 0, self.width() - x, self.height()))
            painter.drawPixmap(current_box, self.current, QRectF(self.current.rect()))
            painter.restore()
            painter.setPen(QPen(DIVIDER, 2))
            painter.drawLine(QPointF(x, current_box.top() - 6), QPointF(x, current_box.bottom() + 6))
            painter.setPen(QColor(0xE0, 0xE0, 0xE0))
            painter.drawText(band, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             f"◀ Pinned: {self.pinned_label}")
            painter.drawText(band, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             f"{self.current_label} ▶")
            return
        painter.drawPixmap(pinned_box, self.pinned, QRectF(self.pinned.rect()))
        painter.drawPixmap(current_box, self.current, QRectF(self.current.rect()))
        half = (self.width() - GAP) / 2
        painter.drawText(QRectF(6, 2, half - 12, LABEL_BAND - 4), Qt.AlignmentFlag.AlignCenter,
                         f"Pinned: {self.pinned_label}")
        painter.drawText(QRectF(half + GAP + 6, 2, half - 12, LABEL_BAND - 4), Qt.AlignmentFlag.AlignCenter,
                         self.current_label)


class CompareView(QWidget):
    """The compare page of the preview: a bar (mode, split slider, Pin menu, a note) over the compare area."""

    def __init__(self, session: "Session", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("compareView")
        self.session = session
        self.last_export: Path | None = None  # the newest image the app exported (Pin Last Export)
        self._current: QImage | None = None
        self._pinned: QImage | None = None
        self.mode = QComboBox()
        self.mode.setObjectName("compareMode")
        for mode in MODES:
            self.mode.addItem(MODE_TEXT[mode], mode)
        self.mode.setToolTip("Split: one picture, pinned left of the divider and current right of it (drag it). "
                             "Side by side: the two pictures next to each other")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("compareSlider")
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setValue(SLIDER_STEPS // 2)
        self.slider.setToolTip("Where the divider is: left of it the pinned picture, right of it the current one")
        self.pin_button = QToolButton()
        self.pin_button.setObjectName("comparePin")
        self.pin_button.setText("Pin ▾")
        self.pin_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.pin_button.setStyleSheet("QToolButton::menu-indicator { image: none; }")  # the ▾ says it: no overlap
        self.pin_button.setToolTip("What to compare the current render with")
        menu = QMenu(self.pin_button)
        self.act_pin_current = menu.addAction("Pin Current", self.pin_current)
        self.act_pin_export = menu.addAction("Pin Last Export", self.pin_last_export)
        self.act_pin_target = menu.addAction("Pin Projection Target", self.pin_projection_target)
        self.act_pin_file = menu.addAction("Pin Image File…", self.pin_file_dialog)
        menu.aboutToShow.connect(self._update_menu)
        self.pin_button.setMenu(menu)
        self.note = QLabel()
        self.note.setObjectName("compareNote")
        self.area = CompareArea()
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 4, 6, 0)
        bar.addWidget(self.pin_button)
        bar.addWidget(self.mode)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.note, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(bar)
        layout.addWidget(self.area, 1)
        self.mode.currentIndexChanged.connect(self._on_mode_changed)
        self.slider.valueChanged.connect(lambda v: self.area.set_fraction(v / SLIDER_STEPS))
        self.area.fraction_changed.connect(self._on_fraction_changed)
        session.tasks.files_written.connect(self._on_files_written)
        session.rendered.connect(self._on_rendered)
        self._show_note()

    # --- what is shown ----------------------------------------------------------------------------------------------
    @property
    def pinned_label(self) -> str:
        return self.area.pinned_label

    @property
    def fraction(self) -> float:
        return self.area.fraction

    def pinned_image(self) -> QImage | None:
        return self._pinned

    def current_image(self) -> QImage | None:
        return self._current

    def set_current(self, image: np.ndarray | QImage | None) -> None:
        """The current render (every preview frame the canvas shows)."""
        self._current = _qimage(image)
        self.area.current = QPixmap.fromImage(self._current) if self._current is not None else None
        self._show_note()
        self.area.update()

    def pin(self, image: np.ndarray | QImage, label: str) -> None:
        """Compare the current render with `image`, named `label` ("seed 5", a file name …)."""
        self._pinned = _qimage(image)
        self.area.pinned = QPixmap.fromImage(self._pinned) if self._pinned is not None else None
        self.area.pinned_label = label
        self._show_note()
        self.area.update()

    def set_mode(self, mode: str) -> None:
        self.mode.setCurrentIndex(MODES.index(mode))

    def set_zoom(self, zoom: float | None) -> None:
        """Show both at `zoom` (the preview's, when it is not fitted), or fitted (None)."""
        self.area.zoom = zoom
        self.area.update()

    def set_progress(self, step: int, total: int, message: str = "") -> None:
        self.area.progress = (step, total, message)
        self.area.update()

    def clear_progress(self) -> None:
        if self.area.progress is not None:
            self.area.progress = None
            self.area.update()

    def _on_rendered(self, request, _seconds: float, _info: dict) -> None:
        self.area.current_label = f"Current: {describe(request)}"
        self.area.update()

    def _on_mode_changed(self) -> None:
        self.area.mode = str(self.mode.currentData())
        self.slider.setEnabled(self.area.mode == SPLIT)
        self.area.update()

    def _on_fraction_changed(self, fraction: float) -> None:
        blocked = self.slider.blockSignals(True)
        self.slider.setValue(round(fraction * SLIDER_STEPS))
        self.slider.blockSignals(blocked)

    def _show_note(self) -> None:
        p, c = self._pinned, self._current
        if p is not None and c is not None and p.size() != c.size():
            self.note.setText(f"pinned {p.width()}×{p.height()}, current {c.width()}×{c.height()}: shown at one size")
        else:
            self.note.setText("")

    # --- pin sources ------------------------------------------------------------------------------------------------
    def _update_menu(self) -> None:
        self.act_pin_current.setEnabled(self._current is not None)
        self.act_pin_export.setEnabled(self.last_export is not None)
        target = self.session.projection_target
        self.act_pin_target.setEnabled(target is not None)
        self.act_pin_target.setText(f"Pin Projection Target ({target.name})" if target is not None
                                    else "Pin Projection Target (none encoded yet)")

    def pin_current(self) -> bool:
        if self._current is None:
            self.session.message.emit("warning", "Nothing to pin yet", "Wait for the first render.")
            return False
        request = self.session.last_request
        self.pin(self._current, describe(request) if request is not None else "the render pinned")
        return True

    def _on_files_written(self, source: str, files: list, kind: str) -> None:
        if kind == "image" and source in ("export", "queue") and files:
            self.last_export = Path(files[-1][0])

    def pin_last_export(self) -> bool:
        return self.last_export is not None and self.pin_file(self.last_export, "last export")

    def pin_projection_target(self) -> bool:
        target = self.session.projection_target
        return target is not None and self.pin_file(target, "projection target")

    def pin_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Pin an Image for Compare", "", IMAGE_FILTER)
        if path:
            self.pin_file(Path(path))

    def pin_file(self, path: str | Path, what: str = "") -> bool:
        """Pin the picture in `path` (a message names the file and the problem when it cannot be read)."""
        from studio.export.image import read_picture

        path = Path(path)
        try:
            picture = read_picture(path, colour=True)
        except (StudioError, OSError, ValueError) as exc:
            self.session.message.emit("error", f"Cannot pin {path.name} for compare",
                                      getattr(exc, "problem", None) or str(exc))
            return False
        self.pin(picture, f"{path.name} ({what})" if what else path.name)
        return True


def describe(request, most: int = 3) -> str:
    """A request in a few words for a compare label: "seed 5 · d0 1.50 · d1 -0.75" (its latent's origin and its
    first `most` number params), "explicit latent · …" when its latent is not the seed's."""
    words = [f"seed {request.seed}" if request.latent is None else "explicit latent"]
    numbers = [(k, v) for k, v in request.params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    words += [f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers[:most]]
    return " · ".join(words) + (" …" if len(numbers) > most else "")


def _qimage(image: np.ndarray | QImage | None) -> QImage | None:
    if image is None:
        return None
    if isinstance(image, QImage):
        return None if image.isNull() else image.copy()
    return qimage_from_array(np.asarray(image))

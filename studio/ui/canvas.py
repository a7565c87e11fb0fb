"""The preview canvas: shows the latest rendered image with zoom, pan, fit / 1:1 and a thin progress bar.

Zoom is "logical pixels per image pixel": 1:1 (one image pixel per device pixel) is ``1 / devicePixelRatioF()``.
Painting runs on the GUI thread during live preview, so it only draws a cached pixmap (no numpy work per paint).
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, QSizeF, Qt, Signal
from PySide6.QtGui import (QBrush, QColor, QCursor, QImage, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen,
                           QPixmap, QResizeEvent, QWheelEvent)
from PySide6.QtWidgets import QWidget

BACKGROUND = QColor(0x1E, 0x1E, 0x1E)
PLACEHOLDER_TEXT = QColor(0x8C, 0x8C, 0x8C)
FRAME = QColor(255, 255, 255, 40)
CHECKER_LIGHT = QColor(0x3A, 0x3A, 0x3A)
CHECKER_DARK = QColor(0x2C, 0x2C, 0x2C)
PROGRESS_FILL = QColor(0x3D, 0x8E, 0xE6)
PROGRESS_TRACK = QColor(0x3A, 0x3A, 0x3A)
PROGRESS_BAR_HEIGHT = 3
CANCELLED_DIM = QColor(0x1E, 0x1E, 0x1E, 165)  # over a cancelled render's half-made picture
CHECKER_CELL = 8
MIN_ZOOM = 1 / 16
MAX_ZOOM = 64.0
ZOOM_STEP = math.sqrt(2.0)
PAN_KEEP = 32.0  # logical px of the image that panning always leaves on screen
TOOLTIP = "Preview — wheel to zoom, drag to pan, double-click for fit / 1:1 (F, 1, +, -)"

_FORMATS = {1: QImage.Format.Format_Grayscale8, 3: QImage.Format.Format_RGB888, 4: QImage.Format.Format_RGBA8888}
_PAN_BUTTONS = (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton)


def qimage_from_array(array: np.ndarray) -> QImage:
    """An owned QImage copy of a uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise ValueError(f"preview image must be a uint8 numpy array, got "
                         f"{getattr(array, 'dtype', type(array).__name__)}")
    channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else 0)
    if channels not in _FORMATS or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"preview image must be shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) with H, W > 0, "
                         f"got {array.shape}")
    data = np.ascontiguousarray(array)
    height, width = data.shape[:2]
    image = QImage(data.data, width, height, data.strides[0], _FORMATS[channels])  # a view of the array's buffer
    return image.copy()  # detach from the numpy buffer, which may be freed


class PreviewCanvas(QWidget):
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("previewCanvas")
        self.setToolTip(TOOLTIP)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._image: QImage | None = None
        self._pixmap: QPixmap | None = None
        self._zoom = 1.0
        self._offset = QPointF(0.0, 0.0)  # image top-left in widget coordinates
        self._fit_mode = True
        self._drag_from: QPointF | None = None
        self._progress: tuple[int, int, str] | None = None
        self._placeholder = "No preview yet"
        self._checker: QBrush | None = None
        self._cancelled: str = ""  # the note over a half-made picture whose render was cancelled ("" = none)

    # -- image -------------------------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray | QImage | None) -> None:
        if image is not None and not isinstance(image, QImage):
            image = qimage_from_array(image)
        if image is not None and image.isNull():
            image = None
        old_size = self._image.size() if self._image is not None else None
        self._image = image
        self._cancelled = ""  # a new picture is no cancelled one
        self._pixmap = QPixmap.fromImage(image) if image is not None else None
        if image is not None and image.size() != old_size:
            if self._fit_mode:
                self._fit_view()
            else:
                self._centre_at(self._zoom)
        self._update_cursor()
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        if self._image is None:
            self.update()

    def set_cancelled(self, note: str) -> None:
        """Mark the picture shown as unfinished: dimmed, with `note` ("Cancelled at step 7/25") over it, until the
        next picture arrives."""
        self._cancelled = note if self._image is not None else ""
        self.update()

    @property
    def cancelled_note(self) -> str:
        return self._cancelled

    # -- progress ----------------------------------------------------------------------------------------------
    def set_progress(self, step: int, total: int, message: str = "") -> None:
        self._progress = (step, total, message)
        self.update()

    def clear_progress(self) -> None:
        if self._progress is not None:
            self._progress = None
            self.update()

    # -- zoom and pan ------------------------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self._zoom

    @property
    def fit_mode(self) -> bool:
        return self._fit_mode

    def fit(self) -> None:
        self._fit_mode = True
        self._fit_view()
        self.update()

    def actual_size(self) -> None:
        self._fit_mode = False
        self._centre_at(1.0 / self.devicePixelRatioF())
        self.update()

    def zoom_in(self) -> None:
        self.set_zoom(self._zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self._zoom / ZOOM_STEP)

    def set_zoom(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom to `factor` keeping the image point under `anchor` (widget coords; default the view centre) fixed.

        Clamped to [MIN_ZOOM, MAX_ZOOM]; a fit beyond that range may stay there but never goes further out."""
        zoom = min(max(factor, min(MIN_ZOOM, self._zoom)), max(MAX_ZOOM, self._zoom))
        anchor = QPointF(anchor) if anchor is not None else QRectF(self.rect()).center()
        image_point = (anchor - self._offset) / self._zoom
        self._fit_mode = False
        self._apply(zoom, self._clamped(anchor - image_point * zoom, zoom))
        self.update()

    def image_rect(self) -> QRectF:
        if self._image is None:
            return QRectF()
        return QRectF(self._offset, QSizeF(self._image.width() * self._zoom, self._image.height() * self._zoom))

    def _apply(self, zoom: float, offset: QPointF) -> None:
        self._offset = offset
        if zoom != self._zoom:
            self._zoom = zoom
            self.zoom_changed.emit(zoom)

    def _fit_view(self) -> None:
        if self._image is None or self.width() <= 0 or self.height() <= 0:
            return
        self._centre_at(min(self.width() / self._image.width(), self.height() / self._image.height()))

    def _centre_at(self, zoom: float) -> None:
        if self._image is None:
            self._apply(zoom, self._offset)
            return
        self._apply(zoom, QPointF((self.width() - self._image.width() * zoom) / 2,
                                  (self.height() - self._image.height() * zoom) / 2))

    def _clamped(self, offset: QPointF, zoom: float) -> QPointF:
        """Keep at least PAN_KEEP logical px (or the whole image, if smaller) of the image on screen."""
        if self._image is None:
            return offset
        width, height = self._image.width() * zoom, self._image.height() * zoom
        keep_x, keep_y = min(width, PAN_KEEP), min(height, PAN_KEEP)
        return QPointF(min(max(offset.x(), keep_x - width), self.width() - keep_x),
                       min(max(offset.y(), keep_y - height), self.height() - keep_y))

    def _pan_by(self, delta: QPointF) -> None:
        if self._image is None or delta.isNull():
            return
        self._fit_mode = False
        self._offset = self._clamped(self._offset + delta, self._zoom)
        self.update()

    # -- events ------------------------------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    def minimumSizeHint(self) -> QSize:
        return QSize(160, 120)

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._fit_mode:
            self._fit_view()
        elif event.oldSize().isValid():  # keep the view centre on the same image point
            grown = event.size() - event.oldSize()
            self._offset += QPointF(grown.width() / 2, grown.height() / 2)
        super().resizeEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if self._image is None or steps == 0:
            event.ignore()
            return
        self.set_zoom(self._zoom * ZOOM_STEP ** steps, event.position())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() in _PAN_BUTTONS and self._image is not None:
            self._drag_from = event.position()
            self._update_cursor()
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is not None and event.buttons() & (Qt.MouseButton.LeftButton | Qt.MouseButton.MiddleButton):
            self._pan_by(event.position() - self._drag_from)
            self._drag_from = event.position()
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is not None and event.button() in _PAN_BUTTONS:
            self._drag_from = None
            self._update_cursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._image is None:
            super().mouseDoubleClickEvent(event)
            return
        if self._fit_mode:
            self.set_zoom(1.0 / self.devicePixelRatioF(), event.position())  # 1:1 about the clicked point
        else:
            self.fit()
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        action = {Qt.Key.Key_F: self.fit, Qt.Key.Key_1: self.actual_size, Qt.Key.Key_Plus: self.zoom_in,
                  Qt.Key.Key_Equal: self.zoom_in, Qt.Key.Key_Minus: self.zoom_out}.get(Qt.Key(event.key()))
        if action is None:
            super().keyPressEvent(event)
            return
        action()
        event.accept()

    def _update_cursor(self) -> None:
        if self._image is None:
            self.unsetCursor()
        else:
            self.setCursor(QCursor(Qt.CursorShape.ClosedHandCursor if self._drag_from is not None
                                   else Qt.CursorShape.OpenHandCursor))

    # -- painting ----------------------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(event.rect(), BACKGROUND)
        if self._image is None:
            if self._placeholder:
                painter.setPen(PLACEHOLDER_TEXT)
                painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                                 self._placeholder)
        else:
            self._paint_image(painter)
            if self._cancelled:
                self._paint_cancelled(painter)
        if self._progress is not None:
            self._paint_progress(painter)
        painter.end()

    def _paint_image(self, painter: QPainter) -> None:
        assert self._image is not None and self._pixmap is not None
        rect = self.image_rect()
        painter.setPen(QPen(FRAME, 0))  # frame first: the image covers any overlap
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(rect.adjusted(-1, -1, 0, 0))
        visible = rect.intersected(QRectF(self.rect()))
        if visible.isEmpty():
            return
        if self._image.hasAlphaChannel():
            painter.setBrushOrigin(rect.topLeft())
            painter.fillRect(visible, self._checker_brush())
        device_scale = self._zoom * self.devicePixelRatioF()
        crisp = device_scale >= 2 or abs(device_scale - 1) < 1e-6
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not crisp)
        if not crisp:  # at most 2× on screen: drawing the whole pixmap is cheap
            painter.drawPixmap(rect, self._pixmap, QRectF(self._pixmap.rect()))
            return
        # Only the image pixels that reach the screen, so a big zoom never scales the whole image.
        z = self._zoom
        left = max(0, math.floor((visible.left() - rect.left()) / z))
        top = max(0, math.floor((visible.top() - rect.top()) / z))
        right = min(self._image.width(), math.ceil((visible.right() - rect.left()) / z))
        bottom = min(self._image.height(), math.ceil((visible.bottom() - rect.top()) / z))
        source = QRect(left, top, right - left, bottom - top)
        target = QRectF(rect.left() + left * z, rect.top() + top * z, source.width() * z, source.height() * z)
        painter.drawPixmap(target, self._pixmap, QRectF(source))

    def _paint_cancelled(self, painter: QPainter) -> None:
        rect = self.image_rect().intersected(QRectF(self.rect()))
        painter.fillRect(rect, CANCELLED_DIM)
        metrics = painter.fontMetrics()
        width, height = metrics.horizontalAdvance(self._cancelled) + 20, metrics.height() + 10
        centre = QRectF(self.rect()).center()
        box = QRectF(centre.x() - width / 2, centre.y() - height / 2, width, height)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 190))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor(0xF0, 0xF0, 0xF0))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self._cancelled)

    def _checker_brush(self) -> QBrush:
        if self._checker is None:
            tile = QPixmap(2 * CHECKER_CELL, 2 * CHECKER_CELL)
            tile.fill(CHECKER_DARK)
            tile_painter = QPainter(tile)
            tile_painter.fillRect(0, 0, CHECKER_CELL, CHECKER_CELL, CHECKER_LIGHT)
            tile_painter.fillRect(CHECKER_CELL, CHECKER_CELL, CHECKER_CELL, CHECKER_CELL, CHECKER_LIGHT)
            tile_painter.end()
            self._checker = QBrush(tile)
        return self._checker

    def _paint_progress(self, painter: QPainter) -> None:
        assert self._progress is not None
        paint_progress(painter, self.rect(), self._progress)


def progress_label(step: int, total: int, message: str = "") -> str:
    """"step 7/25" once: a message that already ends with the count ("step 7/25") is not followed by it again."""
    count = f"{step}/{total}"
    message = message.strip()
    return message if message.endswith(count) else f"{message} {count}".strip()


def paint_progress(painter: QPainter, rect: QRect, progress: tuple[int, int, str]) -> None:
    """The thin progress bar along the bottom of `rect` with its "message step/total" label (the previews share it)."""
    step, total, message = progress
    fraction = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
    bar = QRectF(rect.left(), rect.bottom() + 1 - PROGRESS_BAR_HEIGHT, rect.width(), PROGRESS_BAR_HEIGHT)
    painter.fillRect(bar, PROGRESS_TRACK)
    painter.fillRect(QRectF(bar.topLeft(), QSizeF(bar.width() * fraction, bar.height())), PROGRESS_FILL)
    label = progress_label(step, total, message)
    metrics = painter.fontMetrics()
    box = QRectF(rect.left() + 4, bar.top() - metrics.height() - 6, metrics.horizontalAdvance(label) + 12,
                 metrics.height() + 4)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 150))
    painter.drawRoundedRect(box, 3, 3)
    painter.setPen(QColor(0xE0, 0xE0, 0xE0))
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, label)

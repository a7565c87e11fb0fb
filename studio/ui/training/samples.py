"""The samples of the training dialog: the newest one large (a picture, or a sound to hear and see), and a strip of
the earlier ones with their step, any of which can be shown large again."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QLabel, QListView, QListWidget, QListWidgetItem, QStackedWidget, QVBoxLayout, QWidget

from studio.ui.canvas import qimage_from_array

if TYPE_CHECKING:
    from studio.ui.audio_view import AudioView

MAX_STRIP = 48  # earlier samples kept in the strip


class ImageView(QWidget):
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


class SamplePanel(QWidget):
    """The sample shown large with its caption; `strip` (placed by the dialog, under the loss curve) holds the
    earlier ones."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._samples: list[tuple[int, str, np.ndarray, int]] = []  # step, kind, data, sample rate
        self.view = ImageView("Samples of what the model makes appear here as it learns")
        self.view.setObjectName("trainSample")
        self.view.setToolTip("The newest sample (click an earlier one below to see it here)")
        self.audio_view: AudioView | None = None  # made for the first sound sample
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.caption = QLabel("No sample yet")
        self.caption.setObjectName("trainSampleCaption")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.caption)
        self.strip.currentRowChanged.connect(self._on_strip_row)

    def clear(self) -> None:
        self._samples.clear()
        self.strip.clear()
        self.strip.setVisible(False)
        self.view.set_image(None)
        self.stack.setCurrentWidget(self.view)
        self.caption.setText("No sample yet")

    def add(self, step: int, data: np.ndarray, kind: str, sample_rate: int) -> None:
        """A new sample, shown large and added to the strip; ValueError when it cannot be shown."""
        if kind == "audio":
            from studio.ui.audio_view import waveform_image

            icon = QPixmap.fromImage(waveform_image(data, 96, 48))
        else:
            icon = QPixmap.fromImage(qimage_from_array(data))
            if icon.width() > 64 or icon.height() > 64:
                icon = icon.scaled(64, 64, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
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
        self._show(len(self._samples) - 1)

    def _on_strip_row(self, row: int) -> None:
        if 0 <= row < len(self._samples):
            self._show(row)

    def _show(self, index: int) -> None:
        step, kind, data, sample_rate = self._samples[index]
        newest = index == len(self._samples) - 1
        if kind == "audio":
            if self.audio_view is None:
                from studio.ui.audio_view import AudioView

                self.audio_view = AudioView()
                self.audio_view.set_placeholder("No sound yet")
                self.stack.addWidget(self.audio_view)
            self.audio_view.set_sound(data, sample_rate)
            self.stack.setCurrentWidget(self.audio_view)
        else:
            self.view.set_image(qimage_from_array(data))
            self.stack.setCurrentWidget(self.view)
        self.caption.setText(f"{'Newest sample' if newest else 'Sample'}: step {step:,}")

    @property
    def shown(self) -> tuple[int, str] | None:
        """(step, kind) of the sample shown large, None before the first."""
        text = self.caption.text()
        if not self._samples or "step" not in text:
            return None
        row = self.strip.currentRow()
        step, kind, _, _ = self._samples[row if 0 <= row < len(self._samples) else -1]
        return step, kind

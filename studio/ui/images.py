"""Images between NumPy, Qt and PNG bytes (GUI thread; small, cheap conversions only)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QImage, QPixmap

from studio.ui.canvas import qimage_from_array as to_qimage

__all__ = ["to_qimage", "png_bytes", "thumbnail_png", "output_thumbnail", "pixmap_from_png"]


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")  # type: ignore[call-overload]  # the stub says bytes; PySide6 only accepts a str
    buffer.close()
    return bytes(data.data())


def thumbnail_png(array: np.ndarray, height: int = 48, max_width: int = 192) -> bytes:
    """A small PNG of an image output, for the history strip and the latent library."""
    image = to_qimage(array)
    scaled = image.scaled(max_width, height, Qt.AspectRatioMode.KeepAspectRatio,
                          Qt.TransformationMode.SmoothTransformation)
    return png_bytes(scaled)


def output_thumbnail(output, height: int = 48) -> bytes:
    """A small PNG of any output, `height` px tall: the picture of an image, the waveform of a sound; b"" for other
    kinds."""
    if output.kind == "image":
        return thumbnail_png(output.data, height, 4 * height)
    if output.kind == "audio":
        from studio.ui.audio_view import waveform_image

        return png_bytes(waveform_image(output.data, 3 * height, height))
    return b""


def pixmap_from_png(data: bytes) -> QPixmap:
    pixmap = QPixmap()
    if data:
        pixmap.loadFromData(data, "PNG")
    return pixmap

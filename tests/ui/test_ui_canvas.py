"""The preview canvas: numpy → QImage, fit / 1:1 / zoom / pan, input handling and what actually gets painted."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QImage, QMouseEvent, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from studio.ui import canvas as canvas_module  # noqa: E402
from studio.ui.canvas import BACKGROUND, MAX_ZOOM, MIN_ZOOM, PROGRESS_FILL, PreviewCanvas  # noqa: E402

W, H = 320, 240
FOUR = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 0]]], np.uint8)  # red green / blue yellow


@pytest.fixture
def canvas(qtbot) -> PreviewCanvas:
    widget = PreviewCanvas()
    qtbot.addWidget(widget)
    widget.resize(W, H)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def rgb(image: QImage, x: float, y: float) -> tuple[int, int, int]:
    colour = image.pixelColor(int(x), int(y))
    return colour.red(), colour.green(), colour.blue()


def grab(widget: PreviewCanvas) -> tuple[QImage, float]:
    """The painted widget as an image, and the device-pixel ratio to map widget coordinates into it."""
    image = widget.grab().toImage()
    return image, image.width() / widget.width()


def image_point(widget: PreviewCanvas, at: QPointF) -> QPointF:
    rect = widget.image_rect()
    return (at - rect.topLeft()) / widget.zoom


def send_mouse(widget: PreviewCanvas, kind: QEvent.Type, pos: QPointF, button: Qt.MouseButton,
               buttons: Qt.MouseButton) -> None:
    event = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def send_wheel(widget: PreviewCanvas, pos: QPointF, notches: int) -> None:
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(), QPoint(0, 120 * notches), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


# -- numpy → QImage ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, fmt", [((5, 7), QImage.Format.Format_Grayscale8),
                                        ((5, 7, 1), QImage.Format.Format_Grayscale8),
                                        ((5, 7, 3), QImage.Format.Format_RGB888),
                                        ((5, 7, 4), QImage.Format.Format_RGBA8888)])
def test_set_image_accepts_each_shape(canvas, shape, fmt):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    canvas.set_image(array)
    image = canvas.image()
    assert image is not None and image.format() == fmt
    assert (image.width(), image.height()) == (7, 5)
    for y, x in [(0, 0), (4, 6), (2, 3), (1, 5)]:
        colour = image.pixelColor(x, y)
        if len(shape) == 2 or shape[2] == 1:
            assert (colour.red(), colour.green(), colour.blue()) == (array[y, x].item(),) * 3
        elif shape[2] == 3:
            assert (colour.red(), colour.green(), colour.blue()) == tuple(array[y, x])
        else:
            assert (colour.red(), colour.green(), colour.blue(), colour.alpha()) == tuple(array[y, x])


@pytest.mark.parametrize("make", [
    lambda a: a[:, ::2],                 # column-strided view
    lambda a: a[::-1],                   # negative row stride
    lambda a: a[1:4, 2:7],               # row-padded: strides[0] is the full buffer row, not width * 3
    lambda a: np.asfortranarray(a),      # Fortran order
], ids=["strided", "flipped", "padded", "fortran"])
def test_set_image_handles_non_contiguous_arrays(canvas, make):
    base = np.random.default_rng(1).integers(0, 256, (6, 11, 3), dtype=np.uint8)
    view = make(base)
    canvas.set_image(view)
    image = canvas.image()
    assert (image.height(), image.width()) == view.shape[:2]
    for y in range(view.shape[0]):
        for x in range(view.shape[1]):
            assert rgb(image, x, y) == tuple(view[y, x])


def test_odd_row_width_is_not_skewed(canvas):
    array = np.random.default_rng(2).integers(0, 256, (4, 3, 3), dtype=np.uint8)  # 9 bytes a row, not 4-aligned
    canvas.set_image(array)
    assert [rgb(canvas.image(), x, 3) for x in range(3)] == [tuple(p) for p in array[3]]


def test_image_is_a_copy_of_the_array(canvas):
    array = np.full((4, 4, 3), 10, np.uint8)
    canvas.set_image(array)
    array[:] = 200
    assert rgb(canvas.image(), 2, 2) == (10, 10, 10)
    del array
    gc.collect()
    np.full((64, 64, 3), 77, np.uint8)  # reuse freed memory
    assert rgb(canvas.image(), 3, 3) == (10, 10, 10)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.int16),
                                 np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros(16, np.uint8), np.zeros((2, 4, 4, 3), np.uint8),
                                 np.zeros((0, 4), np.uint8), [[0, 1], [2, 3]]])
def test_bad_arrays_raise(canvas, bad):
    with pytest.raises(ValueError, match="preview image"):
        canvas.set_image(bad)
    assert canvas.image() is None


def test_qimage_and_none(canvas):
    qimage = QImage(8, 4, QImage.Format.Format_RGB32)
    canvas.set_image(qimage)
    assert canvas.image().size() == qimage.size()
    canvas.set_image(None)
    assert canvas.image() is None and canvas.image_rect().isEmpty()


# -- fit, 1:1, zoom ---------------------------------------------------------------------------------------------

def test_fit_centres_and_scales_up(canvas):
    canvas.set_image(np.zeros((60, 40), np.uint8))  # tall: touches top and bottom
    rect = canvas.image_rect()
    assert canvas.fit_mode and canvas.zoom == pytest.approx(H / 60)
    assert rect.top() == pytest.approx(0) and rect.bottom() == pytest.approx(H)
    assert rect.width() / rect.height() == pytest.approx(40 / 60)
    assert rect.center().x() == pytest.approx(W / 2) and rect.center().y() == pytest.approx(H / 2)
    canvas.set_image(np.zeros((10, 200), np.uint8))  # wide: touches left and right
    rect = canvas.image_rect()
    assert rect.left() == pytest.approx(0) and rect.right() == pytest.approx(W)
    assert rect.top() > 0 and rect.bottom() < H and rect.center().y() == pytest.approx(H / 2)


def test_actual_size_is_one_image_pixel_per_device_pixel(canvas):
    canvas.set_image(np.zeros((30, 50), np.uint8))
    canvas.actual_size()
    dpr = canvas.devicePixelRatioF()
    rect = canvas.image_rect()
    assert not canvas.fit_mode
    assert (rect.width(), rect.height()) == (pytest.approx(50 / dpr), pytest.approx(30 / dpr))
    assert rect.center().x() == pytest.approx(W / 2)
    canvas.fit()
    assert canvas.fit_mode and canvas.image_rect().width() == pytest.approx(W)


def test_zoom_steps_and_clamps(canvas):
    canvas.set_image(np.zeros((16, 16), np.uint8))
    canvas.set_zoom(1.0)
    canvas.zoom_in()
    assert canvas.zoom == pytest.approx(math.sqrt(2)) and not canvas.fit_mode
    canvas.zoom_out()
    canvas.zoom_out()
    assert canvas.zoom == pytest.approx(1 / math.sqrt(2))
    for _ in range(40):
        canvas.zoom_in()
    assert canvas.zoom == MAX_ZOOM
    for _ in range(60):
        canvas.zoom_out()
    assert canvas.zoom == MIN_ZOOM
    canvas.set_zoom(1000)
    assert canvas.zoom == MAX_ZOOM


def test_zoom_in_keeps_the_view_centre(canvas):
    canvas.set_image(np.zeros((40, 40), np.uint8))
    centre = QPointF(W / 2, H / 2)
    before = image_point(canvas, centre)
    canvas.zoom_in()
    after = image_point(canvas, centre)
    assert (after - before).manhattanLength() < 0.5


def test_set_zoom_keeps_the_anchored_point(canvas):
    canvas.set_image(np.zeros((40, 60), np.uint8))
    anchor = QPointF(100, 70)
    before = image_point(canvas, anchor)
    canvas.set_zoom(12, anchor)
    assert canvas.zoom == 12
    assert (image_point(canvas, anchor) - before).manhattanLength() * canvas.zoom < 1  # within 1 px on screen


def test_zoom_changed_emitted(canvas, qtbot):
    canvas.set_image(np.zeros((10, 10), np.uint8))
    with qtbot.waitSignal(canvas.zoom_changed, timeout=500) as blocker:
        canvas.set_zoom(3)
    assert blocker.args == [pytest.approx(3)]
    seen: list[float] = []
    canvas.zoom_changed.connect(seen.append)
    canvas.set_zoom(3)  # no change, no signal
    canvas.fit()
    assert seen == [pytest.approx(H / 10)]


# -- input ------------------------------------------------------------------------------------------------------

def test_wheel_zooms_about_the_cursor(canvas):
    canvas.set_image(np.zeros((40, 40), np.uint8))
    cursor = QPointF(150, 90)
    before = image_point(canvas, cursor)
    zoom = canvas.zoom
    send_wheel(canvas, cursor, 1)
    assert canvas.zoom == pytest.approx(zoom * math.sqrt(2)) and not canvas.fit_mode
    assert (image_point(canvas, cursor) - before).manhattanLength() * canvas.zoom < 1
    send_wheel(canvas, cursor, -2)
    assert canvas.zoom == pytest.approx(zoom / math.sqrt(2))


def test_drag_pans_and_leaves_fit_mode(canvas, qtbot):
    canvas.set_image(np.zeros((40, 40), np.uint8))
    canvas.set_zoom(20)
    start = canvas.image_rect().topLeft()
    left = Qt.MouseButton.LeftButton
    send_mouse(canvas, QEvent.Type.MouseButtonPress, QPointF(100, 100), left, left)
    assert canvas.cursor().shape() == Qt.CursorShape.ClosedHandCursor
    send_mouse(canvas, QEvent.Type.MouseMove, QPointF(120, 110), Qt.MouseButton.NoButton, left)
    send_mouse(canvas, QEvent.Type.MouseMove, QPointF(130, 90), Qt.MouseButton.NoButton, left)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, QPointF(130, 90), left, Qt.MouseButton.NoButton)
    assert canvas.cursor().shape() == Qt.CursorShape.OpenHandCursor
    assert canvas.image_rect().topLeft() - start == QPointF(30, -10)
    send_mouse(canvas, QEvent.Type.MouseMove, QPointF(200, 200), Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    assert canvas.image_rect().topLeft() - start == QPointF(30, -10)  # no button: no pan
    # middle button pans too, and a drag from fit mode leaves it
    canvas.fit()
    middle = Qt.MouseButton.MiddleButton
    send_mouse(canvas, QEvent.Type.MouseButtonPress, QPointF(100, 100), middle, middle)
    send_mouse(canvas, QEvent.Type.MouseMove, QPointF(105, 100), Qt.MouseButton.NoButton, middle)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, QPointF(105, 100), middle, Qt.MouseButton.NoButton)
    assert not canvas.fit_mode


def test_pan_keeps_part_of_the_image_on_screen(canvas):
    canvas.set_image(np.zeros((40, 40), np.uint8))
    canvas.set_zoom(20)
    left = Qt.MouseButton.LeftButton
    send_mouse(canvas, QEvent.Type.MouseButtonPress, QPointF(10, 10), left, left)
    send_mouse(canvas, QEvent.Type.MouseMove, QPointF(5000, 5000), Qt.MouseButton.NoButton, left)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, QPointF(5000, 5000), left, Qt.MouseButton.NoButton)
    assert canvas.image_rect().intersects(canvas.rect().toRectF())


def test_keys(canvas, qtbot):
    canvas.set_image(np.zeros((20, 20), np.uint8))
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    assert canvas.zoom == pytest.approx(1 / canvas.devicePixelRatioF()) and not canvas.fit_mode
    qtbot.keyClick(canvas, Qt.Key.Key_Plus)
    assert canvas.zoom == pytest.approx(math.sqrt(2) / canvas.devicePixelRatioF())
    qtbot.keyClick(canvas, Qt.Key.Key_Equal)
    assert canvas.zoom == pytest.approx(2 / canvas.devicePixelRatioF())
    qtbot.keyClick(canvas, Qt.Key.Key_Minus)
    assert canvas.zoom == pytest.approx(math.sqrt(2) / canvas.devicePixelRatioF())
    qtbot.keyClick(canvas, Qt.Key.Key_F)
    assert canvas.fit_mode and canvas.zoom == pytest.approx(H / 20)


def test_double_click_toggles_fit_and_actual_size(canvas, qtbot):
    canvas.set_image(np.zeros((20, 20), np.uint8))
    qtbot.mouseDClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(W // 2, H // 2))
    assert not canvas.fit_mode and canvas.zoom == pytest.approx(1 / canvas.devicePixelRatioF())
    qtbot.mouseDClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(W // 2, H // 2))
    assert canvas.fit_mode and canvas.zoom == pytest.approx(H / 20)


def test_same_size_image_keeps_view_new_size_refits(canvas):
    canvas.set_image(np.zeros((20, 30), np.uint8))
    canvas.set_zoom(5, QPointF(40, 50))
    rect = canvas.image_rect()
    canvas.set_image(np.full((20, 30), 255, np.uint8))  # live preview: same size, nothing moves
    assert canvas.image_rect() == rect and canvas.zoom == 5
    canvas.fit()
    canvas.set_image(np.zeros((20, 30), np.uint8))
    canvas.set_image(np.zeros((10, 100), np.uint8))  # a different size re-fits in fit mode
    assert canvas.fit_mode and canvas.zoom == pytest.approx(W / 100)
    canvas.set_zoom(2)
    canvas.set_image(np.zeros((12, 12), np.uint8))  # outside fit mode: same zoom, centred
    assert canvas.zoom == 2 and canvas.image_rect().center() == QPointF(W / 2, H / 2)


def test_resize_refits_in_fit_mode_only(canvas, qtbot):
    canvas.set_image(np.zeros((20, 20), np.uint8))
    canvas.resize(400, 100)
    qtbot.waitUntil(lambda: canvas.zoom == pytest.approx(5), timeout=1000)
    assert canvas.image_rect().center() == QPointF(200, 50)
    canvas.set_zoom(3)
    canvas.resize(500, 300)
    qtbot.waitUntil(lambda: canvas.height() == 300, timeout=1000)
    assert canvas.zoom == 3 and canvas.image_rect().center() == QPointF(250, 150)  # centre kept, no refit


# -- painting ---------------------------------------------------------------------------------------------------

def test_grab_shows_pixels_at_actual_size(canvas):
    canvas.set_image(FOUR)
    canvas.actual_size()
    shot, dpr = grab(canvas)
    rect = canvas.image_rect()
    x0, y0 = round(rect.left() * dpr), round(rect.top() * dpr)
    assert rgb(shot, x0, y0) == (255, 0, 0) and rgb(shot, x0 + 1, y0) == (0, 255, 0)
    assert rgb(shot, x0, y0 + 1) == (0, 0, 255) and rgb(shot, x0 + 1, y0 + 1) == (255, 255, 0)
    assert rgb(shot, x0 + 2, y0 + 2) != (255, 255, 0)  # nothing beyond the image


def test_grab_big_zoom_is_nearest_neighbour_blocks(canvas):
    canvas.set_image(FOUR)
    canvas.fit()  # 2×2 into 320×240: 120 px per image pixel
    shot, dpr = grab(canvas)
    rect = canvas.image_rect()
    expected = {(0, 0): (255, 0, 0), (1, 0): (0, 255, 0), (0, 1): (0, 0, 255), (1, 1): (255, 255, 0)}
    step = canvas.zoom
    for (ix, iy), colour in expected.items():
        for fx in (0.02, 0.5, 0.98):  # whole block solid, right up to its edges: no blending
            for fy in (0.02, 0.5, 0.98):
                x, y = rect.left() + (ix + fx) * step, rect.top() + (iy + fy) * step
                assert rgb(shot, x * dpr, y * dpr) == colour
    left_of = rect.left() - 3
    assert rgb(shot, left_of * dpr, H / 2 * dpr) == (BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue())


def test_smooth_below_two_device_pixels_per_image_pixel(canvas):
    canvas.set_image(np.array([[0, 255, 0, 255]], np.uint8).repeat(4, axis=0))
    dpr = canvas.devicePixelRatioF()
    canvas.set_zoom(1.5 / dpr)
    shot, _ = grab(canvas)
    rect = canvas.image_rect()
    row = [rgb(shot, x, (rect.center().y()) * dpr)[0]
           for x in range(math.ceil(rect.left() * dpr) + 1, math.floor(rect.right() * dpr) - 1)]
    assert any(0 < value < 255 for value in row)  # blended
    canvas.set_zoom(3 / dpr)
    shot, _ = grab(canvas)
    rect = canvas.image_rect()
    row = [rgb(shot, x, (rect.center().y()) * dpr)[0]
           for x in range(math.ceil(rect.left() * dpr), math.floor(rect.right() * dpr))]
    assert set(row) == {0, 255}  # crisp


def test_checkerboard_under_transparent_image(canvas):
    canvas.set_image(np.zeros((8, 8, 4), np.uint8))  # fully transparent
    shot, dpr = grab(canvas)
    rect = canvas.image_rect()
    colours = {rgb(shot, (rect.left() + dx) * dpr, (rect.top() + 2) * dpr) for dx in range(2, 40, 3)}
    background = (BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue())
    assert len(colours) == 2 and background not in colours


def test_progress_bar_in_grab_and_cleared(canvas):
    canvas.set_progress(5, 10, "Rendering")
    shot, dpr = grab(canvas)
    bottom = (H - 1) * dpr
    fill = (PROGRESS_FILL.red(), PROGRESS_FILL.green(), PROGRESS_FILL.blue())
    assert rgb(shot, 0.1 * W * dpr, bottom) == fill and rgb(shot, 0.45 * W * dpr, bottom) == fill
    assert rgb(shot, 0.9 * W * dpr, bottom) != fill  # half done
    label_row = [rgb(shot, x, (H - 12) * dpr) for x in range(0, 80)]
    assert any(c != label_row[0] for c in label_row)  # the "Rendering 5/10" label is drawn
    canvas.clear_progress()
    shot, dpr = grab(canvas)
    background = (BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue())
    assert all(rgb(shot, x, y) == background for x in range(0, shot.width(), 7) for y in range(shot.height() - 30,
                                                                                                 shot.height()))


def test_placeholder_drawn_only_without_image(canvas):
    background = (BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue())

    def centre_band_is_blank() -> bool:
        shot, dpr = grab(canvas)
        return all(rgb(shot, x, y) == background for x in range(0, shot.width(), 2)
                   for y in range(int((H / 2 - 8) * dpr), int((H / 2 + 8) * dpr), 2))

    canvas.set_placeholder("No preview yet")
    assert not centre_band_is_blank()
    canvas.set_placeholder("")
    assert centre_band_is_blank()


def test_widget_basics(canvas):
    assert canvas.objectName() == "previewCanvas"
    assert "wheel to zoom" in canvas.toolTip() and "F, 1, +, -" in canvas.toolTip()
    assert (canvas.sizeHint().width(), canvas.sizeHint().height()) == (640, 480)
    assert (canvas.minimumSizeHint().width(), canvas.minimumSizeHint().height()) == (160, 120)
    assert canvas.focusPolicy() & Qt.FocusPolicy.ClickFocus
    assert "torch" not in canvas_module.__dict__
    assert QColor(BACKGROUND).lightness() < 60

"""Compare (studio.ui.compare): the split and side-by-side geometry, the view's pin sources, the divider dragged and
its slider, and the window's View ▸ Compare, C, Ctrl+Shift+P and compare_with, offscreen on the fake engine."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtWidgets import QApplication, QWidget

from dialog_guard import block_dialogs
from PIL import Image
from studio.ui.compare import (GAP, SIDE_BY_SIDE, SPLIT, CompareView, fit_box, fraction_at, inside, side_by_side,
                               split_x)
from studio.ui.main_window import MainWindow
from studio.ui.session import Session


# --- geometry --------------------------------------------------------------------------------------------------------


def test_fit_box_centres_and_scales_or_keeps_the_zoom():
    assert fit_box((0, 0, 400, 200), (100, 100)) == (100, 0, 200, 200)
    assert fit_box((0, 20, 400, 200), (200, 50)) == (0, 70, 400, 100)
    assert fit_box((0, 0, 400, 200), (10, 10), zoom=4) == (180, 80, 40, 40)


def test_split_maths():
    box = (100, 0, 200, 50)
    assert split_x(box, 0) == 100 and split_x(box, 0.5) == 200 and split_x(box, 1) == 300
    assert split_x(box, 7) == 300 and split_x(box, -1) == 100
    assert fraction_at(box, 150) == 0.25 and fraction_at(box, 0) == 0.0 and fraction_at(box, 999) == 1.0
    for f in (0.0, 0.3, 0.77, 1.0):
        assert fraction_at(box, split_x(box, f)) == pytest.approx(f)
    assert fraction_at((0, 0, 0, 0), 5) == 0.5


def test_other_sizes_share_the_current_pictures_box():
    box = fit_box((0, 0, 600, 300), (192, 32))  # a wide sheet: 600 × 100
    assert box == (0, 100, 600, 100)
    assert inside(box, (384, 64)) == box  # same proportions, twice the pixels: the same box
    assert inside(box, (64, 64)) == (250, 100, 100, 100)  # a square one: as tall, centred


def test_side_by_side_boxes_mirror_each_other():
    pinned, current = side_by_side((0, 0, 408, 100), (32, 32), (32, 32))
    half = (408 - GAP) / 2
    assert current == (half + GAP + 50, 0, 100, 100) and pinned == (50, 0, 100, 100)
    bigger, _ = side_by_side((0, 0, 408, 100), (64, 64), (32, 32))
    assert bigger == pinned  # scaled to one box
    wide, square = side_by_side((0, 0, 408, 100), (64, 32), (32, 32))
    assert wide == (50, 25, 100, 50)


# --- the view ---------------------------------------------------------------------------------------------------------


def grey(value: int, w: int = 32, h: int = 16) -> np.ndarray:
    return np.full((h, w), value, np.uint8)


@pytest.fixture
def view(qtbot, session):
    widget = CompareView(session)
    qtbot.addWidget(widget)
    widget.resize(420, 260)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def column_means(widget) -> np.ndarray:
    image = widget.area.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    bits = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    area = widget.area
    _, box = area.boxes()
    x, y, w, h = (int(round(v)) for v in box)
    return bits[y + h // 4:y + 3 * h // 4, :image.width()].mean(0)


def test_split_shows_pinned_left_and_current_right_of_the_divider(qtbot, view):
    view.set_current(grey(40))
    view.pin(grey(220), "seed 1")
    assert view.pinned_label == "seed 1" and view.note.text() == ""
    _, box = view.area.boxes()
    cols = column_means(view)
    x = int(split_x(box, 0.5))
    left, right = int(box[0]) + 4, int(box[0] + box[2]) - 4
    assert cols[left] == pytest.approx(220, abs=2) and cols[x - 4] == pytest.approx(220, abs=2)
    assert cols[x + 4] == pytest.approx(40, abs=2) and cols[right] == pytest.approx(40, abs=2)
    view.slider.setValue(250)  # the slider moves the divider
    assert view.fraction == 0.25
    cols = column_means(view)
    assert cols[int(split_x(box, 0.25)) + 4] == pytest.approx(40, abs=2)


def test_dragging_the_divider_moves_it_and_the_slider(view):
    view.set_current(grey(40))
    view.pin(grey(220), "pinned")
    _, box = view.area.boxes()
    for kind, x in ((QEvent.Type.MouseButtonPress, split_x(box, 0.5)), (QEvent.Type.MouseMove, split_x(box, 0.6)),
                    (QEvent.Type.MouseMove, split_x(box, 0.8)), (QEvent.Type.MouseButtonRelease, split_x(box, 0.8))):
        held = kind != QEvent.Type.MouseButtonRelease
        event = QMouseEvent(kind, QPointF(x, box[1] + 5), view.area.mapToGlobal(QPointF(x, box[1] + 5)),
                            Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton,
                            Qt.MouseButton.LeftButton if held else Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(view.area, event)
    assert view.fraction == pytest.approx(0.8, abs=0.01)
    assert view.slider.value() == pytest.approx(800, abs=10)


def test_side_by_side_and_other_sizes(view):
    view.set_current(grey(40))
    view.pin(grey(220, 64, 32), "big")
    assert view.note.text() == "pinned 64×32, current 32×16: shown at one size"
    view.set_mode(SIDE_BY_SIDE)
    assert not view.slider.isEnabled()
    pinned, current = view.area.boxes()
    assert pinned[2:] == pytest.approx(current[2:]) and pinned[0] + pinned[2] < current[0]
    view.set_mode(SPLIT)
    assert view.slider.isEnabled()


def test_pin_sources(qtbot, session, view, tmp_path):
    assert view.pin_current() is False  # nothing rendered into the view yet
    view.set_current(grey(90))
    assert view.pin_current() and view.pinned_label == f"seed {session.last_request.seed}"
    assert view.area.current_label == "Current"
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.change("Dir", params={**session.request.params, "d0": 1.5, "d2": -0.25})
    assert view.area.current_label == f"Current: seed {session.request.seed} · d0 1.50 · d2 -0.25"
    view._update_menu()
    assert not view.act_pin_export.isEnabled() and not view.act_pin_target.isEnabled()
    picture = tmp_path / "target.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(picture)
    session.tasks.files_written("export", [(picture, session.request)], "image")
    view._update_menu()
    assert view.act_pin_export.isEnabled() and view.pin_last_export()
    assert view.pinned_label == "target.png (last export)" and view.pinned_image().width() == 8
    session.projection_target = picture
    view._update_menu()
    assert view.act_pin_target.text() == "Pin Projection Target (target.png)"
    assert view.pin_projection_target() and view.pinned_label == "target.png (projection target)"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with qtbot.waitSignal(session.message) as said:
        assert view.pin_file(broken) is False
    level, text, detail = said.args
    assert level == "error" and text == "Cannot pin broken.png for compare" and detail


# --- the window -------------------------------------------------------------------------------------------------------


@pytest.fixture
def window(qtbot, engine, models_dir, tmp_path, monkeypatch):
    block_dialogs(monkeypatch)
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat), None)
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("tiny")
    session.undo.setClean()
    w.show()
    qtbot.waitExposed(w)
    yield w
    session.undo.setClean()
    w.close()


def test_the_window_pins_compares_and_follows_the_preview(qtbot, window):
    s = window.session
    assert "Pad" in window.docks and window.docks["Pad"].widget() is window.pad
    assert window.views.currentWidget() is window.canvas
    window.act_pin.trigger()  # Ctrl+Shift+P
    pinned = window.compare.pinned_image()
    assert pinned is not None and pinned == window.canvas.image()
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_C)  # C in the preview
    assert window.act_compare.isChecked() and window.views.currentWidget() is window.compare
    with qtbot.waitSignal(s.rendered, timeout=5000):
        s.change("Seed", seed=s.request.seed + 1)
    assert window.compare.current_image() == window.canvas.image() != pinned  # the current side follows live
    qtbot.keyClick(window.compare.area, Qt.Key.Key_C)
    assert not window.act_compare.isChecked() and window.views.currentWidget() is window.canvas
    window.compare_with(np.full((4, 4), 200, np.uint8), "gallery item 3")
    assert window.views.currentWidget() is window.compare and window.compare.pinned_label == "gallery item 3"


def test_c_typed_in_a_text_field_is_a_c(qtbot, window):
    field = window.findChild(QWidget, "promptEdit")
    field.setFocus()
    qtbot.keyClick(field, Qt.Key.Key_C)
    assert not window.act_compare.isChecked()


def test_describe_names_the_seed_or_explicit_latent_and_a_few_numbers():
    from studio.request import Params, RenderRequest
    from studio.ui.compare import describe

    assert describe(RenderRequest("m", seed=4, params=Params({"prompt": "Ab", "d0": 1.0, "mix_seed": 9}))) == \
        "seed 4 · d0 1.00 · mix_seed 9"
    many = RenderRequest("m", latent=(0.1, 0.2), params=Params({f"d{k}": 0.5 for k in range(5)}))
    assert describe(many) == "explicit latent · d0 0.50 · d1 0.50 · d2 0.50 …"

"""The Pad (studio.ui.panels.pad) on the fake engine, offscreen: a drag is one undoable step whose requests go to
the preview lane, arrow keys nudge, a double-click centres, the seed corners blend latents fetched on the worker,
and Add as Keyframe puts the pad's request on the timeline."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from studio.latent.pad import blend_corners
from studio.ui.panels.pad import NUDGE, PadPanel

from test_ui_window import _no_blocking_dialogs, window  # noqa: F401  (fixtures)


@pytest.fixture
def pad(qtbot, session):
    widget = PadPanel(session)
    qtbot.addWidget(widget)
    widget.resize(320, 420)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def mouse(widget, kind: QEvent.Type, x: float, y: float, held: bool = True) -> None:
    button = Qt.MouseButton.LeftButton
    buttons = button if held else Qt.MouseButton.NoButton
    event = QMouseEvent(kind, QPointF(x, y), widget.mapToGlobal(QPointF(x, y)),
                        Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def drag(square, points) -> None:
    """A real drag's events: press at the first pad point, moves through the others, release at the last."""
    at = [square.to_widget(x, y) for x, y in points]
    mouse(square, QEvent.Type.MouseButtonPress, at[0].x(), at[0].y())
    for p in at[1:]:
        mouse(square, QEvent.Type.MouseMove, p.x(), p.y())
    mouse(square, QEvent.Type.MouseButtonRelease, at[-1].x(), at[-1].y(), held=False)


def test_the_pad_offers_the_models_number_params_directions_first(pad):
    names = [pad.x_param.itemText(i) for i in range(pad.x_param.count())]
    assert names[:4] == ["d0", "d1", "d2", "d3"] and "truncation" in names and names[-1].startswith("z")
    assert (pad.x_param.currentText(), pad.y_param.currentText()) == ("d0", "d1")
    assert pad.x_reach.value() == 3.0 and pad.y_reach.value() == 3.0  # half the sliders' span of -3 … 3
    assert pad.square.objectName() == "latentPad" and pad.square.isEnabled()
    assert (pad.square.x_label, pad.square.y_label) == ("d0", "d1")


def test_a_drag_is_one_step_and_every_move_is_previewed(qtbot, session, engine, pad):
    start = session.undo.index()
    before = len(engine.submitted)
    with qtbot.waitSignal(session.rendered, timeout=5000,
                          check_params_cb=lambda request, *_: request == session.request):
        drag(pad.square, [(0.0, 0.0), (0.2, 0.1), (0.5, -0.25), (0.5, -0.5)])
    request = session.request
    assert request.params["d0"] == pytest.approx(1.5, abs=0.05)  # x 0.5 of a ±3 reach
    assert request.params["d1"] == pytest.approx(-1.5, abs=0.05)
    assert session.undo.index() == start + 1  # the whole drag is one step
    previews = [job.request for job in engine.submitted[before:] if job.lane == "preview"]
    assert len(previews) >= 2 and previews[-1] == request  # moves went to the preview lane, the last one is shown
    assert pad.square.point == pytest.approx((0.5, -0.5), abs=0.02)
    session.undo.undo()
    assert "d0" not in session.request.params and pad.square.point == (0.0, 0.0)
    # a second drag is a second step, not folded into the first
    drag(pad.square, [(0.1, 0.1), (0.3, 0.3)])
    drag(pad.square, [(-0.3, 0.3), (-0.6, 0.6)])
    assert session.undo.index() == start + 2


def test_the_handle_follows_the_sliders_and_the_reach(session, pad):
    session.set_param("d0", 1.5, "Dir 0")
    assert pad.square.point == pytest.approx((0.5, 0.0))
    pad.x_reach.setValue(1.5)
    assert pad.square.point == pytest.approx((1.0, 0.0))
    pad.y_param.setCurrentText("truncation")
    assert pad.square.y_label == "truncation"


def test_named_directions_name_the_axes(session, pad):
    session.directions.names.rename(0, "Bold")
    assert pad.x_param.itemText(0) == "d0 · Bold" and pad.x_param.currentData() == "d0"
    assert pad.square.x_label == "Bold" and pad.status.text().startswith("Bold = 0.00")
    session.undo.undo()
    assert pad.x_param.itemText(0) == "d0" and pad.square.x_label == "d0"


def test_arrow_keys_nudge_and_a_double_click_centres(qtbot, session, pad):
    start = session.undo.index()
    pad.square.setFocus()
    qtbot.keyClick(pad.square, Qt.Key.Key_Right)
    qtbot.keyClick(pad.square, Qt.Key.Key_Up, Qt.KeyboardModifier.ShiftModifier)
    assert session.request.params["d0"] == pytest.approx(NUDGE * 3)
    assert session.request.params["d1"] == pytest.approx(0.25 * 3)
    assert session.undo.index() == start + 2
    centre = pad.square.to_widget(0.3, 0.3)
    mouse(pad.square, QEvent.Type.MouseButtonDblClick, centre.x(), centre.y())
    assert session.request.params["d0"] == 0.0 and session.request.params["d1"] == 0.0
    assert pad.square.point == (0.0, 0.0)


def test_seed_corners_blend_the_corner_latents(qtbot, session, engine, pad):
    pad.set_mode("seeds")
    pad.set_corner_seeds([10, 20, 30, 40])
    assert pad.corners.pending
    qtbot.waitUntil(lambda: pad.corners.ready, timeout=5000)
    latents = [np.arange(8) + s for s in (10, 20, 30, 40)]  # the fake engine's latent of a seed
    assert pad.corners.latents == [tuple(float(v) for v in z) for z in latents]
    assert pad.square.corner_labels == ("10", "20", "30", "40")
    start = session.undo.index()
    drag(pad.square, [(-1.0, -1.0), (0.0, 0.0), (0.5, 0.5)])
    x, y = pad.square.point
    expected = blend_corners(latents, x, y, renormalise=True)  # the tiny VAE's latent is a z: renormalised
    np.testing.assert_allclose(session.request.latent, expected, rtol=1e-5)
    assert session.undo.index() == start + 1
    drag(pad.square, [(-1.0, 1.0)])  # a click on the top-left corner: seed 30's latent exactly
    np.testing.assert_allclose(session.request.latent, latents[2], rtol=1e-6)
    pad.seeds[2].setFocus()
    qtbot.keyClick(pad.seeds[2], Qt.Key.Key_Up)  # ↑ in a seed field: the next seed, fetched at once
    assert pad.seeds[2].text() == "31" and pad.corners.pending
    qtbot.waitUntil(lambda: pad.corners.ready, timeout=5000)
    assert pad.corners.latents[2][0] == 31.0


def test_a_drag_before_the_corners_arrive_lands_when_they_do(qtbot, session, pad):
    pad.set_mode("seeds")
    for edit, seed in zip(pad.seeds, (5, 6, 7, 8)):
        edit.setText(str(seed))  # typed, not yet applied
    with qtbot.waitSignal(session.request_changed, timeout=5000):
        drag(pad.square, [(1.0, -1.0)])  # bottom-right: seed 6
    np.testing.assert_allclose(session.request.latent, np.arange(8) + 6, rtol=1e-6)


def test_add_as_keyframe_adds_the_pads_request(qtbot, session, pad):
    heard = []
    pad.add_keyframe.connect(lambda: heard.append(1))
    pad.keyframe.click()  # the window adds it (below): the panel only asks
    assert heard == [1] and not session.timeline.keyframes


def test_add_as_keyframe_in_the_window_lines_keyframes_up_at_the_playhead(qtbot, window):
    pad, session = window.pad, window.session
    for seed, count in ((11, 1), (22, 2)):  # the fake model's latent is its seed's: the keyframes tell apart
        session.change("Seed", seed=seed)
        drag(pad.square, [(0.5, 0.0)])
        with qtbot.waitSignal(session.timeline_changed, timeout=5000):
            pad.keyframe.click()
        qtbot.waitUntil(lambda: len(session.timeline.keyframes) == count, timeout=5000)
    firsts = [k.request.latent[0] for k in session.timeline.keyframes]
    assert firsts == [11.0, 22.0]  # in the order added: the second is not put first
    assert window.docks["Timeline"].isVisible()

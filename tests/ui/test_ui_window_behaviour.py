"""The window's behaviour on the offscreen platform with the fake engine: no key sequence bound twice and an F1 sheet
of what really works; the wheel edits only a value widget that has the focus; autosave only with edits and a quit by
signal that keeps them; one progress display, shown only for work that lasts; a cancelled render marked as such."""

from __future__ import annotations

import signal

import pytest
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut, QWheelEvent
from PySide6.QtWidgets import (QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox, QDoubleSpinBox, QScrollArea,
                               QSlider, QVBoxLayout, QWidget)

from studio.project import Autosave, find_recoverable
from studio.ui import dialogs
from studio.ui.canvas import BACKGROUND, progress_label
from studio.ui.main_window import MainWindow
from studio.ui.session import Session
from studio.ui.wheel import install_wheel_guard

from fake_engine import FakeEngine
from dialog_guard import block_dialogs


@pytest.fixture(autouse=True)
def _no_blocking_dialogs(monkeypatch):
    block_dialogs(monkeypatch)


def open_window(qtbot, engine, models_dir, tmp_path, autosave: Autosave | None = None) -> MainWindow:
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat), autosave)
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("tiny")
    session.undo.setClean()
    w.show()
    return w


@pytest.fixture
def window(qtbot, models_dir, tmp_path):
    engine = FakeEngine()
    autosave = Autosave(tmp_path / "autosave")
    autosave.start()
    w = open_window(qtbot, engine, models_dir, tmp_path, autosave)
    yield w
    w.session.undo.setClean()
    w.close()
    autosave.finish()
    engine.shutdown()


def settle(qtbot, w):
    qtbot.waitUntil(lambda: not w.session.bridge.busy, timeout=5000)


# --- shortcuts ------------------------------------------------------------------------------------------------------


def bindings(w: MainWindow) -> dict[str, list[str]]:
    """Every key sequence of every action and QShortcut the window holds (its own, its menus', its panels'), with
    who binds it: a sequence bound twice, in any context, is what Qt calls an ambiguous shortcut overload."""
    actions: list[QAction] = []
    for action in [*w.actions(), *w.findChildren(QAction)]:
        if action not in actions:
            actions.append(action)
    menus = [a.menu() for a in w.menuBar().actions() if a.menu() is not None]
    while menus:
        menu = menus.pop()
        for action in menu.actions():
            if action.menu() is not None:
                menus.append(action.menu())
            elif action not in actions:
                actions.append(action)
    found: dict[str, list[str]] = {}
    portable = QKeySequence.SequenceFormat.PortableText
    for action in actions:
        for key in action.shortcuts():
            found.setdefault(key.toString(portable), []).append(f"action {action.text()!r}")
    for shortcut in w.findChildren(QShortcut):
        for key in shortcut.keys():
            found.setdefault(key.toString(portable), []).append(f"shortcut {shortcut.objectName()!r}")
    return found


def test_no_key_sequence_is_bound_twice_and_redo_has_both_keys(window):
    found = bindings(window)
    twice = {key: who for key, who in found.items() if len(who) > 1}
    assert twice == {}, f"key sequences bound more than once: {twice}"
    assert found["Ctrl+Z"] == [f"action {window.act_undo.text()!r}"]
    assert found["Ctrl+Shift+Z"] == found["Ctrl+Y"] == [f"action {window.act_redo.text()!r}"]


def test_the_shortcut_sheet_lists_every_key_that_works(window):
    rows = dict(window.shortcut_rows())
    native = QKeySequence.SequenceFormat.NativeText
    assert QKeySequence("Ctrl+Shift+Z").toString(native) in rows["Redo"]
    assert QKeySequence("Ctrl+Y").toString(native) in rows["Redo"]
    assert QKeySequence("Ctrl+Z").toString(native) in rows["Undo"]
    listed = {key.strip() for keys in rows.values() for key in keys.split(",")}
    for action in window.actions():  # every binding of every action is on the sheet
        for key in action.shortcuts():
            assert key.toString(native) in listed, (action.text(), key.toString())


# --- the wheel ------------------------------------------------------------------------------------------------------


def wheel(widget: QWidget, notches: int = -1) -> None:
    """A wheel event at the widget's centre, delivered through the application (so its event filters run)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_changes_only_a_focused_value_widget(qtbot):
    install_wheel_guard()
    panel = QWidget()
    qtbot.addWidget(panel)
    layout = QVBoxLayout(panel)
    slider, spin, combo = QSlider(Qt.Orientation.Horizontal), QDoubleSpinBox(), QComboBox()
    slider.setRange(0, 100)
    slider.setValue(50)
    spin.setValue(1.0)
    combo.addItems(["a", "b", "c"])
    combo.setCurrentIndex(1)
    for widget in (slider, spin, combo):
        layout.addWidget(widget)
    panel.show()
    qtbot.waitExposed(panel)
    for widget in (slider, spin, combo):  # polished: a passing wheel never gives them the focus
        assert widget.focusPolicy() == Qt.FocusPolicy.StrongFocus, type(widget).__name__
    values = lambda: (slider.value(), spin.value(), combo.currentIndex())  # noqa: E731
    before = values()
    for widget in (slider, spin, combo):
        wheel(widget, -2)
    assert values() == before
    for widget in (slider, spin, combo):  # clicked or tabbed to: the wheel is theirs
        widget.setFocus()
        qtbot.waitUntil(widget.hasFocus, timeout=2000)
        wheel(widget, -1)
    assert all(a != b for a, b in zip(values(), before)), (values(), before)


def test_every_value_widget_of_the_window_is_guarded(window):
    install_wheel_guard()
    QApplication.processEvents()
    loose = [f"{type(x).__name__} {x.objectName()}" for x in window.findChildren(QWidget)
             if isinstance(x, (QAbstractSlider, QAbstractSpinBox, QComboBox)) and type(x).__name__ != "QScrollBar"
             and x.focusPolicy() == Qt.FocusPolicy.WheelFocus]
    assert loose == []
    slider = window.findChild(QSlider, "slider_d0")
    if slider is None:  # the tiny package names its directions differently: take the Latent panel's first slider
        slider = window.latent.findChild(QSlider)
    assert slider is not None
    value, modified = slider.value(), window.session.modified
    wheel(slider, -3)
    assert slider.value() == value and window.session.modified == modified


# --- autosave and quitting by signal --------------------------------------------------------------------------------


def test_an_unedited_document_is_never_autosaved(qtbot, window, tmp_path):
    settle(qtbot, window)
    window.session.flush_history()  # (a history entry is no edit)
    window.autosave_now()
    assert not window.autosave.path.exists()
    window.session.change("Seed 5", seed=5)
    window.autosave_now()
    assert window.autosave.path.exists()
    window.act_undo.trigger()  # back to the unedited document: nothing to recover
    window.autosave_now()
    assert not window.autosave.path.exists()


def test_quitting_by_signal_keeps_edits_for_the_next_start(qtbot, models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda *a: pytest.fail("a signal quits without asking"))
    folder = tmp_path / "autosave"
    for edited in (False, True):
        engine, autosave = FakeEngine(), Autosave(folder)
        autosave.start()
        w = open_window(qtbot, engine, models_dir, tmp_path, autosave)
        if edited:
            w.session.change("Seed 7", seed=7)
        w.quit_for_signal(signal.SIGTERM)
        assert not w.isVisible() and not autosave.active
        found = find_recoverable(folder)
        assert [item.path for item in found] == ([autosave.path] if edited else [])
        engine.shutdown()


# --- progress and cancel --------------------------------------------------------------------------------------------


def test_the_progress_label_never_repeats_the_count():
    assert progress_label(25, 200, "step 25/200") == "step 25/200"
    assert progress_label(3, 10, "denoising") == "denoising 3/10"
    assert progress_label(1, 2) == "1/2"


def test_instant_work_shows_no_progress_and_long_work_shows_one(qtbot, models_dir, tmp_path, monkeypatch):
    from studio.ui import main_window

    # work shorter than the delay shows nothing: a delay no render here reaches (no dependence on this machine's speed)
    monkeypatch.setattr(main_window, "PROGRESS_DELAY_S", 600.0)
    engine = FakeEngine(delay=0.0, steps=4)
    w = open_window(qtbot, engine, models_dir, tmp_path)
    shown: list[bool] = []
    original = w.task_progress.setVisible

    def spy(visible: bool) -> None:
        shown.append(visible)
        original(visible)

    w.task_progress.setVisible = spy
    for seed in range(3):
        w.session.change(f"Seed {seed}", seed=seed)
        settle(qtbot, w)
    assert shown and True not in shown, f"instant renders flashed a progress bar: {shown}"
    bar = w.statusBar()
    bars = [b for b in bar.findChildren(QWidget) if type(b).__name__ == "QProgressBar"]
    assert bars == [w.task_progress]  # one progress display in the status bar
    w.session.undo.setClean()
    w.close()
    engine.shutdown()

    monkeypatch.setattr(main_window, "PROGRESS_DELAY_S", 0.0)
    slow = FakeEngine(delay=3.0, steps=30)
    w = open_window(qtbot, slow, models_dir, tmp_path)
    w.session.change("Seed 9", seed=9)
    qtbot.waitUntil(lambda: w.task_progress.isVisible() and w.task_progress.value() > 0, timeout=10000)
    assert w.task_label.text().startswith("Rendering: step ") and w.task_progress.maximum() == 30
    assert w.task_label.text().count("/") == 1
    assert w.statusBar().currentMessage() == ""  # no second copy of the text
    w.session.bridge.cancel()
    qtbot.waitUntil(lambda: not w.task_progress.isVisible(), timeout=10000)
    w.session.undo.setClean()
    w.close()
    slow.shutdown()


def test_a_cancelled_render_is_marked_until_the_next_picture(qtbot, models_dir, tmp_path):
    engine = FakeEngine(delay=4.0, steps=8)
    w = open_window(qtbot, engine, models_dir, tmp_path)
    w.session.change("Seed 3", seed=3)
    qtbot.waitUntil(lambda: w.session.bridge.busy and w._showing_partial, timeout=10000)
    w.act_cancel.trigger()
    qtbot.waitUntil(lambda: not w.session.bridge.busy, timeout=10000)
    note = w.canvas.cancelled_note
    assert note.startswith("Cancelled at step ") and note.endswith("/8"), note
    assert w.statusBar().currentMessage().startswith(note)
    shot = w.canvas.grab().toImage()
    rect = w.canvas.image_rect().toRect()
    # dimmed: the picture's pixels are pulled towards the background (lower contrast against it)
    ground = BACKGROUND.value()
    dim = abs(shot.pixelColor(rect.left() + 1, rect.top() + 1).value() - ground)
    w.canvas.set_cancelled("")
    plain = abs(w.canvas.grab().toImage().pixelColor(rect.left() + 1, rect.top() + 1).value() - ground)
    assert dim < plain, (dim, plain)
    w.canvas.set_cancelled(note)
    with qtbot.waitSignal(w.session.rendered, timeout=15000):
        w.session.change("Seed 4", seed=4)
    assert w.canvas.cancelled_note == ""
    assert not w.statusBar().currentMessage().startswith("Cancelled")
    w.session.undo.setClean()
    w.close()
    engine.shutdown()


def test_cancel_before_any_frame_says_the_picture_is_the_last_finished(qtbot, models_dir, tmp_path):
    engine = FakeEngine(delay=4.0, steps=2)
    w = open_window(qtbot, engine, models_dir, tmp_path)
    before = w.canvas.image().copy()
    w.session.change("Seed 3", seed=3)
    qtbot.waitUntil(lambda: w.session.bridge.busy, timeout=5000)
    w.act_cancel.trigger()
    qtbot.waitUntil(lambda: not w.session.bridge.busy, timeout=10000)
    assert w.canvas.cancelled_note == "" and w.canvas.image() == before
    assert "last finished" in w.statusBar().currentMessage()
    w.session.undo.setClean()
    w.close()
    engine.shutdown()


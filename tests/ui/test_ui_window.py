"""The main window and its panels on the offscreen platform, with the fake engine (work functions on a stub model):
title, panels bound to the session, drag and drop, close with unsaved changes, autosave and crash recovery,
clipboard, shortcuts, the Edit menu."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QListWidget

from studio.export.image import save_image
from studio.project import Autosave, Document, find_recoverable
from studio.ui import dialogs, export_dialogs
from studio.ui.main_window import MainWindow
from studio.ui.session import Session

from conftest import make_tiny_package
from fake_engine import FakeEngine, request_value
from dialog_guard import block_dialogs


@pytest.fixture
def engine():
    """The fake engine, running work functions (export, encode …) on a stub model."""
    fake = FakeEngine()
    yield fake
    fake.shutdown()


@pytest.fixture(autouse=True)
def _no_blocking_dialogs(monkeypatch):
    block_dialogs(monkeypatch)


@pytest.fixture
def window(qtbot, engine, models_dir, tmp_path):
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    autosave = Autosave(tmp_path / "autosave")
    autosave.start()
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat), autosave)
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("tiny")
    session.undo.setClean()
    w.show()
    yield w
    session.undo.setClean()  # let the fixture close without asking
    w.close()
    autosave.finish()


def latent_params(request) -> dict:
    """The request's params without its condition (the prompt the model opens with)."""
    return {k: v for k, v in request.params.items() if k != "prompt"}


def settle(qtbot, window):
    qtbot.waitUntil(lambda: not window.session.bridge.busy, timeout=5000)
    window.session.flush_history()


def drop(window, *paths):
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


def test_the_window_opens_with_a_rendered_preview(qtbot, window):
    assert window.windowTitle().startswith("Latent Studio — Untitled")
    settle(qtbot, window)
    image = window.canvas.image()
    assert image is not None and image.pixel(0, 0) & 0xFF == request_value(window.session.request)
    assert "Tiny tiny" in window.model_label.text() and "ms" in window.time_label.text()


def test_every_control_has_a_tooltip(window):
    from PySide6.QtWidgets import QAbstractButton, QAbstractSlider, QComboBox, QLineEdit, QListWidget, QScrollBar

    missing = [w.objectName() or type(w).__name__
               for panel in (window.latent, window.prompt, window.library, window.models, window.history,
                             window.queue, window.gallery)
               for kind in (QAbstractButton, QAbstractSlider, QComboBox, QLineEdit, QListWidget)
               for w in panel.findChildren(kind)
               if not w.toolTip() and w.isVisibleTo(window) and not w.objectName().startswith("qt_")
               and not isinstance(w, QScrollBar)]
    assert missing == []


def test_moving_a_direction_slider_renders_and_undoes(qtbot, window):
    slider = window.latent.sliders["d0"]
    before = window.canvas.image().pixel(0, 0)
    with qtbot.waitSignal(window.session.rendered, timeout=5000):
        slider.slider.setValue(150)
    assert latent_params(window.session.request) == {"d0": 1.5}
    assert window.canvas.image().pixel(0, 0) != before or request_value(window.session.request) == before & 0xFF
    assert window.isWindowModified() and window.windowTitle().endswith("[*]")
    slider.reset_button.click()
    assert latent_params(window.session.request) == {}
    window.act_undo.trigger()
    assert latent_params(window.session.request) == {"d0": 1.5} and slider.value() == 1.5
    window.act_redo.trigger()
    assert slider.value() == 0.0


def test_raw_dimensions_appear_on_demand(qtbot, window):
    assert not window.latent.sliders["z0"].isVisibleTo(window)
    window.latent.show_raw.setChecked(True)
    assert window.latent.sliders["z0"].isVisibleTo(window)
    window.latent.sliders["z3"].slider.setValue(-100)
    assert latent_params(window.session.request) == {"z3": -1.0}
    window.latent.reset_all.click()
    assert latent_params(window.session.request) == {} and window.session.request.param("prompt") == "Ab"


def test_typing_a_prompt_renders_it_and_bad_characters_are_flagged(qtbot, window):
    edit = window.prompt.editor("prompt")
    edit.clear()
    qtbot.keyClicks(edit, "Abc")
    assert window.session.request.param("prompt") == "Abc"
    edit.setText("Abcé")  # (QTest cannot type non-ASCII keys offscreen)
    edit.textEdited.emit("Abcé")
    assert window.session.request.param("prompt") == "Abc"  # not sent
    assert "Cannot draw é" in window.prompt.control("prompt").hint.text()
    settle(qtbot, window)
    assert window.canvas.image().width() == 8 * 3  # the fake draws 8 px per character


def test_seed_field_dice_and_modes(qtbot, window):
    latent = window.latent
    latent.seed_edit.setText("1234")
    qtbot.keyClick(latent.seed_edit, Qt.Key.Key_Return)
    assert window.session.request.seed == 1234
    qtbot.keyClick(latent.seed_edit, Qt.Key.Key_Up)
    assert window.session.request.seed == 1235 and latent.seed_edit.text() == "1235"
    latent.dice.click()
    assert window.session.request.seed != 1235
    latent.seed_mode.setCurrentIndex(1)  # increment
    seed = window.session.request.seed
    window.act_next.trigger()
    assert window.session.request.seed == seed + 1


def test_truncation_mixing_and_variation_controls(qtbot, window):
    latent = window.latent
    latent.sliders["truncation"].slider.setValue(50)
    latent.editor("mix_seed").setText("77")
    qtbot.keyClick(latent.editor("mix_seed"), Qt.Key.Key_Return)
    latent.sliders["mix_strength"].slider.setValue(25)
    latent.editor("variation_seed").setText("5")
    qtbot.keyClick(latent.editor("variation_seed"), Qt.Key.Key_Return)
    latent.sliders["variation_strength"].slider.setValue(40)
    assert latent_params(window.session.request) == {"truncation": 0.5, "mix_seed": 77, "mix_strength": 0.25,
                                                     "variation_seed": 5, "variation_strength": 0.4}
    assert type(window.session.request.param("mix_seed")) is int  # seeds are whole numbers


def test_the_library_panel_saves_and_interpolates(qtbot, window):
    panel = window.library
    panel.name_edit.setText("first")
    with qtbot.waitSignal(window.session.latents_changed, timeout=5000):
        panel.save_button.click()
    window.session.change("Seed", seed=9)
    with qtbot.waitSignal(window.session.latents_changed, timeout=5000):
        window.act_save_latent.trigger()
    assert panel.list.count() == 2 and not panel.list.item(0).icon().isNull()
    assert panel.t_slider.isEnabled()
    panel.mode.setCurrentText("lerp")
    panel.t_slider.setValue(500)
    a, b = (e.latent for e in window.session.document.latents)
    assert window.session.request.latent == pytest.approx([(x + y) / 2 for x, y in zip(a, b)])
    assert window.latent.latent_note.isVisibleTo(window)


def test_dropping_an_exported_png_restores_its_exact_request(qtbot, window, tmp_path):
    wanted = window.session.request.with_params({"d1": 0.5, "prompt": "Zz"}).with_(seed=31337)
    png = tmp_path / "made.png"
    save_image(png, np.zeros((16, 16), dtype=np.uint8), wanted)
    drop(window, png)
    assert window.session.request == wanted
    window.act_undo.trigger()
    assert window.session.request != wanted


def test_dropping_a_plain_image_encodes_it(qtbot, window, tmp_path, monkeypatch):
    from PIL import Image

    plain = tmp_path / "glyphs.png"
    Image.fromarray(np.zeros((16, 32), dtype=np.uint8)).save(plain)
    monkeypatch.setattr(dialogs, "ask_chars", lambda parent, image, default, cells=0: "Ab")
    with qtbot.waitSignal(window.session.request_changed, timeout=5000, check_params_cb=lambda r: r.latent is not None):
        drop(window, plain)
    assert window.session.request.latent == pytest.approx([0.0] * 8)


def test_dropping_a_model_folder_adds_its_models(qtbot, window, tmp_path):
    extra = tmp_path / "more-models"
    make_tiny_package(extra / "extra-model", "extra-model", seed=3)
    drop(window, extra)
    listed = window.models.findChild(QListWidget, "modelList")
    ids = [listed.item(i).text() for i in range(listed.count())]
    assert any("extra-model" in text for text in ids)
    assert window.session.use_model("extra-model")


def test_dropping_garbage_reports_without_a_dialog(qtbot, window, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hi")
    drop(window, junk)
    level, text, _ = window.messages.messages()[0]
    assert level == "error" and "notes.txt" in text


def test_save_open_and_drop_a_project(qtbot, window, tmp_path, monkeypatch):
    window.session.set_param("d0", 1.0, "d0")
    target = tmp_path / "poster.lstudio"
    monkeypatch.setattr(dialogs, "ask_save_project", lambda parent, suggestion: str(target))
    window.act_save.trigger()
    assert target.exists() and not window.isWindowModified()
    assert window.windowTitle().startswith("Latent Studio — poster.lstudio")
    assert str(target.resolve()) in window.recent_documents()
    window.session.set_param("d0", -1.0, "d0")
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    drop(window, target)
    assert latent_params(window.session.request) == {"d0": 1.0} and not window.session.modified


def test_closing_with_unsaved_changes_asks(qtbot, window, monkeypatch):
    window.session.set_param("d0", 1.0, "d0")
    asked = []
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: asked.append(name) or dialogs.CANCEL)
    assert not window.close()
    assert asked == ["Untitled"] and window.isVisible()
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    assert window.close()


def test_autosave_and_crash_recovery(qtbot, window, tmp_path, engine, models_dir, monkeypatch):
    window.session.set_param("d3", 2.0, "d3")
    settle(qtbot, window)
    window.autosave_now()
    autosaved = window.autosave.path
    assert autosaved.exists()
    # a crash: the process dies holding the slot; the OS drops the lock and the files stay behind
    import os

    os.close(window.autosave._fd)
    window.autosave._fd = None
    items = find_recoverable(tmp_path / "autosave")
    assert [item.path for item in items] == [autosaved]
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    restored = MainWindow(session, QSettings(str(tmp_path / "w2.ini"), QSettings.Format.IniFormat), None)
    qtbot.addWidget(restored)
    monkeypatch.setattr(dialogs, "ask_recover", lambda parent, found: True)
    assert restored.offer_recovery(items)
    assert latent_params(session.request) == {"d3": 2.0}
    assert session.modified  # recovered work is unsaved work
    assert not autosaved.exists()  # adopted, so the slot is gone
    session.undo.setClean()
    restored.close()


def test_declining_recovery_discards_that_autosave(qtbot, window, tmp_path, monkeypatch):
    from studio.project import Recoverable, save_document

    path = tmp_path / "crashed.lstudio"
    save_document(Document(window.session.request.with_param("d0", 1.0)), path)
    monkeypatch.setattr(dialogs, "ask_recover", lambda parent, found: False)
    assert not window.offer_recovery([Recoverable(path, "", path.stat().st_mtime)])
    assert not path.exists() and latent_params(window.session.request) == {}


def test_escape_cancels_and_copy_puts_the_image_on_the_clipboard(qtbot, window):
    settle(qtbot, window)
    window.act_copy.trigger()
    clip = QGuiApplication.clipboard().image()
    assert not clip.isNull() and clip.size() == window.canvas.image().size()
    cancelled = []
    window.session.bridge.engine.cancel_all = lambda: cancelled.append(True)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert cancelled == [True]


def test_export_action_writes_the_chosen_file(qtbot, window, tmp_path, monkeypatch):
    out = tmp_path / "exported.webp"
    monkeypatch.setattr(export_dialogs, "ask_image_export",
                        lambda parent, suggestion, source: export_dialogs.ImageExport(str(out), None))
    with qtbot.waitSignal(window.session.message, timeout=5000, check_params_cb=lambda lv, text, d: "Exported" in text):
        window.act_export.trigger()
    from studio.export.image import read_request

    assert read_request(out).seed == window.session.request.seed


def _layout_window(qtbot, engine, models_dir, ini: str) -> MainWindow:
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    window = MainWindow(session, QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    return window


def _minimum(window) -> tuple[int, int]:
    """The least size this machine's fonts allow the window (it depends on them: never a number in a test)."""
    hint = window.minimumSizeHint().expandedTo(window.minimumSize())
    return hint.width(), hint.height()


def test_layout_is_remembered(qtbot, engine, models_dir, tmp_path):
    ini = str(tmp_path / "layout.ini")
    first = _layout_window(qtbot, engine, models_dir, ini)
    first.show()
    qtbot.waitExposed(first)
    first.docks["Models"].hide()
    first.show_variations()  # opens the bottom docks
    assert not first.bottom_docks.collapsed
    # a size from the window's own minimum (so any fonts allow it), and not the one it started with
    width, height = _minimum(first)
    first.resize(width + 7, height + 5)
    qtbot.waitUntil(lambda: first.size().width() == width + 7)
    saved = first.size()
    first.close()
    second = _layout_window(qtbot, engine, models_dir, ini)
    assert second.size() == saved, (second.size(), saved)
    assert not second.docks["Models"].isVisibleTo(second)
    assert not second.bottom_docks.collapsed, "the open bottom docks were not remembered"
    second.bottom_docks.collapse()
    second.close()
    third = _layout_window(qtbot, engine, models_dir, ini)
    assert third.bottom_docks.collapsed, "the collapsed bottom docks were not remembered"
    third.close()
    QApplication.processEvents()


def test_a_fresh_window_fits_its_screen_with_the_bottom_docks_collapsed(qtbot, engine, models_dir, tmp_path):
    window = _layout_window(qtbot, engine, models_dir, str(tmp_path / "fresh.ini"))
    window.show()
    qtbot.waitExposed(window)
    area = window.screen().availableGeometry()
    least = _minimum(window)
    # as large as the screen allows up to the first-start size, never larger than the screen (unless the window
    # cannot be that small at all)
    assert window.width() <= max(area.width(), least[0]) and window.height() <= max(area.height(), least[1]), (window.size(), area, least, [(t, d.minimumSizeHint()) for t, d in window.docks.items()])
    assert window.bottom_docks.collapsed
    for title in ("History", "Messages", "Variations", "Timeline"):
        dock = window.docks[title]
        assert dock.isVisibleTo(window) and not dock.widget().isVisibleTo(dock), f"{title} is not collapsed"
    qtbot.waitUntil(lambda: window.bottom_docks._armed)
    # what the user asks for opens them: Ctrl+Shift+V brings the variations forward with room
    window.show_variations()
    assert not window.bottom_docks.collapsed and window.variations.isVisibleTo(window.docks["Variations"])
    qtbot.waitUntil(lambda: window.docks["Variations"].height() > window.variations.tiles.minimumSizeHint().height())
    window.close()


def _front_tab(window, title: str):
    """The tab bar showing the bottom dock `title` on top (Qt keeps stale bars under other widgets) and its centre."""
    from PySide6.QtWidgets import QTabBar

    for bar in window.findChildren(QTabBar):
        for i in range(bar.count()):
            centre = bar.tabRect(i).center()
            if bar.tabText(i) == title and window.childAt(bar.mapTo(window, centre)) is bar:
                return bar, centre
    pytest.fail(f"no tab {title!r} on top")


def test_a_click_on_the_front_bottom_tab_opens_the_docks_and_another_collapses_them(qtbot, window):
    from PySide6.QtTest import QTest

    docks = window.bottom_docks
    qtbot.waitUntil(lambda: docks._armed)
    assert docks.collapsed
    preview = window.views.height()
    bar, centre = _front_tab(window, "History")
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.waitUntil(lambda: not docks.collapsed and window.views.height() < preview)
    assert window.history.isVisibleTo(window)
    QTest.qWait(QApplication.doubleClickInterval() + 50)
    bar, centre = _front_tab(window, "History")
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.waitUntil(lambda: docks.collapsed and window.views.height() >= preview)
    QTest.qWait(50)
    assert docks.collapsed, "collapsing opened the docks again"
    # another tab (Messages) comes forward: that opens them too, with Messages in front
    bar, centre = _front_tab(window, "Messages")
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.waitUntil(lambda: not docks.collapsed and window.messages.isVisible())


def test_a_layout_saved_by_an_older_version_is_not_restored(qtbot, engine, models_dir, tmp_path):
    """Earlier versions saved the 200-px History dock as state; the new layout starts fresh once (the size stays)."""
    ini = str(tmp_path / "old.ini")
    first = _layout_window(qtbot, engine, models_dir, ini)
    first.show()
    first.show_variations()
    first.docks["Models"].hide()
    first.close()
    old = QSettings(ini, QSettings.Format.IniFormat)
    old.remove("layoutVersion")  # as an earlier version left it
    old.remove("bottomDocksCollapsed")
    old.sync()
    second = _layout_window(qtbot, engine, models_dir, ini)
    assert second.bottom_docks.collapsed and second.docks["Models"].isVisibleTo(second), "the old state was restored"
    second.close()
    assert QSettings(ini, QSettings.Format.IniFormat).value("layoutVersion") is not None
    QApplication.processEvents()


def test_thumbnail_sizes_of_variations_and_history_are_picked_and_remembered(qtbot, window, engine, models_dir):
    panel = window.variations
    panel.count.setValue(2)
    window.show_variations()
    qtbot.waitUntil(lambda: panel.tiles.count() == 2, timeout=10000)

    def tile_height() -> int:
        return max(s.height() for s in panel.tiles.item(0).icon().availableSizes())

    assert tile_height() <= 48
    large = next(a for a in panel.tiles.actions() if a.objectName() == "thumbSize_large")
    large.trigger()  # the tiles' right-click menu
    qtbot.waitUntil(lambda: panel.tiles.count() == 2)
    assert tile_height() > 48 and panel.tiles.iconSize().height() == 96  # made anew at that size, not stretched
    small = next(a for a in window.history.list_widget().actions() if a.objectName() == "thumbSize_small")
    small.trigger()
    assert window.settings.value("thumbnails/variations") == "large"
    assert window.settings.value("thumbnails/history") == "small"
    again = MainWindow(window.session, window.settings)
    qtbot.addWidget(again)
    assert again.variations.thumb_menu.size == "large" and again.history.thumb_menu.size == "small"
    assert again.variations.tiles.iconSize().height() == 96
    again.close()


def test_the_edit_menu_undoes_and_redoes_by_name_and_by_key(qtbot, window):
    from PySide6.QtGui import QKeySequence

    edit = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Edit")
    assert window.act_undo in edit.actions() and window.act_redo in edit.actions()
    assert not window.act_undo.isEnabled() and window.act_undo.text() == "&Undo"
    keys = {k.toString() for k in window.act_undo.shortcuts()}
    assert "Ctrl+Z" in keys
    keys = {k.toString() for k in window.act_redo.shortcuts()}
    assert {"Ctrl+Shift+Z", "Ctrl+Y"} <= keys
    window.session.change("Seed 5", seed=5)
    assert window.act_undo.isEnabled() and window.act_undo.text().replace("&", "") == "Undo Seed 5"
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.session.request.seed == 0 and window.act_redo.text().replace("&", "") == "Redo Seed 5"
    qtbot.keyClick(window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert window.session.request.seed == 5
    window.act_undo.trigger()
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.session.request.seed == 5 and window.isWindowModified()
    assert QKeySequence(QKeySequence.StandardKey.Undo).toString() in {k.toString() for k in window.act_undo.shortcuts()}


def test_model_folders_are_kept_in_settings_toml_not_in_window_ini(qtbot, window, tmp_path):
    from studio.settings import load_settings

    extra = tmp_path / "more-models"
    make_tiny_package(extra / "extra-model", "extra-model", seed=3)
    drop(window, extra)
    assert load_settings().model_folders == [extra.absolute()]
    window.close()
    assert window.settings.value("model_folders") is None

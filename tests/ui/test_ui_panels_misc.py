"""The model browser, the history strip and the message area, bound to a real Session over a fake engine."""

from __future__ import annotations

import shutil
from itertools import count
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSize, Qt  # noqa: E402
from PySide6.QtGui import QFontDatabase, QGuiApplication, QImage  # noqa: E402
from PySide6.QtWidgets import QListWidget, QPlainTextEdit, QPushButton, QTextBrowser, QWidget  # noqa: E402

from conftest import make_tiny_package  # noqa: E402
from studio.project import HISTORY_LIMIT, HistoryEntry  # noqa: E402
from studio.request import RenderRequest  # noqa: E402
from studio.ui.images import thumbnail_png  # noqa: E402
from studio.ui.panels import history as history_module  # noqa: E402
from studio.ui.panels.history import HistoryStrip  # noqa: E402
from studio.ui.panels.messages import MAX_MESSAGES, MessageArea  # noqa: E402
from studio.ui.panels.models import ModelBrowser, format_figure, quality_rows  # noqa: E402
from studio.ui.session import Session  # noqa: E402


class FakeJob:
    def __init__(self, stamp: int, request, lane: str):
        self.stamp, self.request, self.lane = stamp, request, lane


class FakeEngine:
    """The engine API the Session and its bridge use; records submissions and never renders."""

    device = "cpu"

    def __init__(self):
        self._stamps = count(1)
        self.submitted: list[tuple[str, RenderRequest]] = []
        self.packages: list = []

    def submit(self, request, lane, on_event, then=None):
        self.submitted.append((lane, request))
        return FakeJob(next(self._stamps), request, lane)

    def encode(self, request, images, labels, on_event):
        return FakeJob(next(self._stamps), request, "export")

    def latent(self, request, on_event):
        return FakeJob(next(self._stamps), request, "export")

    def cancel_all(self):
        pass

    def shutdown(self, wait=True, timeout=None):
        pass

    def add_package(self, entry):
        self.packages.append(entry)


def write_preview(folder: Path, width: int = 120, height: int = 40) -> None:
    image = QImage(width, height, QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.darkCyan)
    assert image.save(str(folder / "preview.png"))


@pytest.fixture
def packages(models_dir) -> Path:
    """tiny (with quality figures), tiny-plain (with a preview) and an invalid package 'broken' (unknown family)."""
    with open(models_dir / "tiny" / "model.toml", "a", encoding="utf-8") as handle:
        handle.write("prior_sample_accuracy = 0.9863\nheldout_recon_mse = 0.0178123\nprior_samples = 2480\n")
    write_preview(models_dir / "tiny-plain")
    shutil.copytree(models_dir / "tiny", models_dir / "broken")
    toml = models_dir / "broken" / "model.toml"
    text = toml.read_text(encoding="utf-8")
    assert 'family = "vae"' in text and 'id = "tiny"' in text
    toml.write_text(text.replace('family = "vae"', 'family = "nope"').replace('id = "tiny"', 'id = "broken"'),
                    encoding="utf-8")
    return models_dir


@pytest.fixture
def session(qtbot, packages):
    engine = FakeEngine()
    s = Session(engine, roots=[packages])
    s.refresh_models()
    s.start("tiny")
    assert s.request is not None and s.request.model_id == "tiny"
    yield s
    s.shutdown()
    s.undo.clear()  # while the session lives: the undo stack's destructor would emit cleanChanged into it


def rows(widget: QListWidget) -> list[str]:
    return [widget.item(i).text() for i in range(widget.count())]


def row_of(widget: QListWidget, prefix: str) -> int:
    return next(i for i, text in enumerate(rows(widget)) if text.startswith(prefix))


# --- model browser ------------------------------------------------------------------------------------------------
@pytest.fixture
def browser(qtbot, session) -> ModelBrowser:
    widget = ModelBrowser(session)
    qtbot.addWidget(widget)
    widget.resize(360, 600)
    widget.show()
    return widget


def parts(widget: ModelBrowser):
    return (widget.findChild(QListWidget, "modelList"), widget.findChild(QTextBrowser, "modelDetails"),
            widget.findChild(QPushButton, "useModelButton"), widget.findChild(QPushButton, "openModelFolderButton"))


def test_browser_lists_valid_and_invalid_packages(browser):
    listing, details, use, open_folder = parts(browser)
    assert browser.objectName() and all(w is not None for w in (listing, details, use, open_folder))
    texts = rows(listing)
    assert len(texts) == 3
    assert "Tiny tiny\nvae · image" in texts
    assert "Tiny tiny-plain\nvae · image" in texts
    assert "broken — invalid" in texts
    broken = listing.item(row_of(listing, "broken"))
    assert "nope" in broken.toolTip() and "model.toml" in broken.toolTip()
    assert not broken.icon().isNull()
    for widget in (listing, details, use, open_folder):
        assert widget.toolTip()


def test_browser_icons_come_from_the_preview_or_a_placeholder(browser):
    listing, *_ = parts(browser)
    plain = listing.item(row_of(listing, "Tiny tiny-plain")).icon()
    tiny = listing.item(row_of(listing, "Tiny tiny\n")).icon()
    assert not plain.isNull() and not tiny.isNull()
    size = listing.iconSize()
    assert size.height() == 64
    preview = plain.pixmap(size).toImage()
    placeholder = tiny.pixmap(size).toImage()
    ratio = preview.devicePixelRatio()
    # the preview (darkCyan, scaled to 64 px tall: 192 wide, cropped to the icon width) fills the middle
    assert preview.pixelColor(int(preview.width() / 2), int(32 * ratio)).name() == "#008080"
    assert placeholder.pixelColor(int(placeholder.width() / 2), int(32 * ratio)).name() != "#008080"


def test_current_model_is_marked_and_selected(browser, session):
    listing, details, use, _ = parts(browser)
    current = listing.item(row_of(listing, "Tiny tiny\n"))
    assert current.font().bold()
    assert listing.currentItem() is current
    assert not listing.item(row_of(listing, "Tiny tiny-plain")).font().bold()
    assert not use.isEnabled()  # already current
    assert "(current)" in details.toPlainText()


def test_details_of_a_valid_package(browser, session, packages):
    listing, details, use, _ = parts(browser)
    listing.setCurrentRow(row_of(listing, "Tiny tiny\n"))
    text = details.toPlainText()
    for expected in ("Tiny tiny", "tiny", "0.0.1", "vae", "image, 16 × 16 px, 1 channel", "8 values",
                     "text (62 characters", "“Ab”", "CC0-1.0", "a tiny seeded test network", str(packages / "tiny"),
                     "Quality", "98.6 %", "0.01781", "2480", "untrained"):
        assert expected in text, expected
    assert "Directions\n4\n" in text
    assert "decode" in text and "encode" in text and "sample" in text  # capabilities
    assert "0.9863" not in text and "0.0178123" not in text


def test_details_of_an_invalid_package_show_the_error(browser, session):
    listing, details, use, _ = parts(browser)
    listing.setCurrentRow(row_of(listing, "broken"))
    entry = browser.selected_entry()
    assert entry is not None and not entry.ok
    text = details.toPlainText()
    assert "broken — invalid" in text
    assert str(entry.error) in text
    assert not use.isEnabled()
    before = session.request
    browser._activate(entry)
    use.click()
    assert session.request == before


@pytest.mark.parametrize("key, value, text", [
    ("prior_sample_accuracy", 0.9863, "98.6 %"),
    ("classifier_accuracy_heldout", 1, "100.0 %"),
    ("heldout_recon_mse", 0.0178123, "0.01781"),
    ("seconds", 1725.0, "1725"),
    ("loss", 12345.678, "1.235e+04"),
    ("prior_samples", 2480, "2480"),
    ("fitted", True, "yes"),
    ("note", "untrained", "untrained"),
    ("accuracy_gain", 3.5, "3.5"),
])
def test_quality_figures_are_formatted(key, value, text):
    assert format_figure(key, value) == text


def test_quality_rows_flatten_nested_tables():
    assert quality_rows({"a_b": 0.5, "sub": {"accuracy": 0.25}}) == [("a b", "0.5"), ("sub.accuracy", "25.0 %")]
    assert quality_rows(None) == []


def test_use_model_switches_and_undo_switches_back(browser, session):
    listing, details, use, _ = parts(browser)
    listing.setCurrentRow(row_of(listing, "Tiny tiny-plain"))
    assert use.isEnabled()
    use.click()
    assert session.request.model_id == "tiny-plain"
    plain = listing.item(row_of(listing, "Tiny tiny-plain"))
    assert plain.font().bold() and not listing.item(row_of(listing, "Tiny tiny\n")).font().bold()
    assert not use.isEnabled()
    session.undo.undo()
    assert session.request.model_id == "tiny"
    assert listing.item(row_of(listing, "Tiny tiny\n")).font().bold()
    assert listing.currentItem() is listing.item(row_of(listing, "Tiny tiny\n"))


def test_double_click_and_enter_use_the_model(qtbot, browser, session):
    listing, *_ = parts(browser)
    item = listing.item(row_of(listing, "Tiny tiny-plain"))
    listing.itemDoubleClicked.emit(item)
    assert session.request.model_id == "tiny-plain"
    listing.setCurrentRow(row_of(listing, "Tiny tiny\n"))
    qtbot.keyClick(listing, Qt.Key.Key_Return)
    assert session.request.model_id == "tiny"
    listing.setCurrentRow(row_of(listing, "broken"))
    qtbot.keyClick(listing, Qt.Key.Key_Return)  # an invalid package is never used
    assert session.request.model_id == "tiny"


def test_open_model_folder_adds_a_package(browser, session, tmp_path, monkeypatch):
    listing, details, *_ = parts(browser)
    other = tmp_path / "elsewhere"
    make_tiny_package(other / "extra", "extra", seed=3, conditional=False)
    monkeypatch.setattr(browser, "open_folder_dialog", lambda: str(other))
    browser.findChild(QPushButton, "openModelFolderButton").click()
    assert "Tiny extra\nvae · image" in rows(listing)
    assert browser.selected_entry().id == "extra"
    assert "Tiny extra" in details.toPlainText()
    assert session.request.model_id == "tiny"  # adding does not switch


def test_open_model_folder_cancelled_does_nothing(browser, session, monkeypatch):
    listing, *_ = parts(browser)
    before = rows(listing)
    messages: list = []
    session.message.connect(lambda *args: messages.append(args))
    monkeypatch.setattr(browser, "open_folder_dialog", lambda: "")
    browser.open_model_folder()
    assert rows(listing) == before and messages == [] and session.extra_folders == []


def test_rebuild_keeps_the_selection(browser, session):
    listing, details, *_ = parts(browser)
    listing.setCurrentRow(row_of(listing, "broken"))
    session.refresh_models()
    assert browser.selected_entry().folder.name == "broken"
    assert "broken — invalid" in details.toPlainText()
    assert browser.select("tiny-plain") and browser.selected_entry().id == "tiny-plain"
    session.refresh_models()
    assert browser.selected_entry().id == "tiny-plain"


def test_browser_without_models(qtbot, tmp_path):
    s = Session(FakeEngine(), roots=[tmp_path / "none"])
    s.refresh_models()
    widget = ModelBrowser(s)
    qtbot.addWidget(widget)
    listing, details, use, _ = parts(widget)
    assert listing.count() == 0 and not use.isEnabled()
    assert "Open Model Folder" in details.toPlainText()


# --- history strip ------------------------------------------------------------------------------------------------
def thumb(value: int, width: int = 16) -> bytes:
    return thumbnail_png(np.full((16, width), value, np.uint8))


def add_history(session: Session, n: int, start: int = 0) -> list[HistoryEntry]:
    entries = []
    for i in range(start, start + n):
        request = RenderRequest("tiny", seed=100 + i, params={"prompt": f"p{i}", "d0": 1.5, "d1": 0.0})
        entry = HistoryEntry(request, 0.25 + i, "2026-01-02T03:04:05+00:00", thumb(10 * i % 256))
        session.document.add_history(entry)
        entries.append(entry)
    session.history_changed.emit()
    return entries


@pytest.fixture
def strip(qtbot, session) -> HistoryStrip:
    widget = HistoryStrip(session)
    qtbot.addWidget(widget)
    widget.resize(300, widget.sizeHint().height())
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def test_history_strip_shows_thumbnails_with_tooltips(strip, session):
    listing = strip.findChild(QListWidget, "historyList")
    assert listing.count() == 0 and strip.objectName() and listing.toolTip()
    entries = add_history(session, 5)
    assert listing.count() == 5
    assert listing.flow() == QListWidget.Flow.LeftToRight and not listing.isWrapping()
    for i in range(5):
        icon = listing.item(i).icon()
        assert not icon.isNull()
        assert icon.actualSize(QSize(192, 48)).height() == 48
    tip = listing.item(3).toolTip()
    for expected in ("Tiny tiny (tiny)", "Seed: 103", "p3", "d0 +1.50", "3.25 s", "2026-01-0"):
        assert expected in tip, expected
    assert "d1" not in tip  # params at their default (a zero direction) are left out
    assert entries[3].request.param("prompt") in tip


def test_history_click_restores_the_request(qtbot, strip, session):
    listing = strip.findChild(QListWidget, "historyList")
    entries = add_history(session, 4)
    listing.doItemsLayout()
    rect = listing.visualItemRect(listing.item(2))
    listing.scrollToItem(listing.item(2))
    rect = listing.visualItemRect(listing.item(2))
    qtbot.mouseClick(listing.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert session.request == entries[2].request
    assert listing.currentRow() == 2  # the restored render is highlighted
    listing.itemClicked.emit(listing.item(0))
    assert session.request == entries[0].request
    session.undo.undo()
    assert session.request == entries[2].request


def test_history_updates_incrementally_and_decodes_once(strip, session, monkeypatch):
    listing = strip.findChild(QListWidget, "historyList")
    decoded: list[bytes] = []
    real = history_module.pixmap_from_png
    monkeypatch.setattr(history_module, "pixmap_from_png", lambda data: decoded.append(data) or real(data))
    add_history(session, 3)
    assert len(decoded) == 3
    first = listing.item(0)
    # the last entry replaced (a render during the same gesture), then one appended
    history = session.document.history
    history[-1] = HistoryEntry(RenderRequest("tiny", seed=7), 0.1, "", thumb(200))
    session.history_changed.emit()
    assert listing.count() == 3 and listing.item(0) is first and len(decoded) == 4
    assert "Seed: 7" in listing.item(2).toolTip()
    add_history(session, 1, start=3)
    assert listing.count() == 4 and listing.item(0) is first and len(decoded) == 5
    session.history_changed.emit()  # nothing changed: nothing decoded
    assert len(decoded) == 5
    # at the limit the oldest is dropped
    add_history(session, HISTORY_LIMIT - 4 + 1, start=4)
    assert listing.count() == HISTORY_LIMIT
    assert "Seed: 101" in listing.item(0).toolTip()
    assert "Seed: 150" in listing.item(HISTORY_LIMIT - 1).toolTip()
    # a new document with the same thumbnails: a full rebuild, still no decoding of known images
    before = len(decoded)
    session.document.history = [HistoryEntry(e.request, e.seconds, e.created, e.thumbnail_png) for e in history]
    session.history_changed.emit()
    assert listing.count() == HISTORY_LIMIT and len(decoded) == before


def test_history_rows_match_the_document(strip, session):
    listing = strip.findChild(QListWidget, "historyList")
    add_history(session, 60)
    history = session.document.history
    assert listing.count() == len(history) == HISTORY_LIMIT
    for i in (0, 17, HISTORY_LIMIT - 1):
        assert f"Seed: {history[i].request.seed}" in listing.item(i).toolTip()
    listing.itemClicked.emit(listing.item(17))
    assert session.request == history[17].request


def test_history_scrolls_to_the_newest(strip, session):
    listing = strip.findChild(QListWidget, "historyList")
    add_history(session, 20)
    bar = listing.horizontalScrollBar()
    assert bar.maximum() > 0
    assert bar.value() == bar.maximum()
    newest = listing.visualItemRect(listing.item(listing.count() - 1))
    assert listing.viewport().rect().intersects(newest)


# --- message area -------------------------------------------------------------------------------------------------
@pytest.fixture
def area(qtbot, session) -> MessageArea:
    widget = MessageArea(session)
    qtbot.addWidget(widget)
    widget.resize(400, 300)
    widget.show()
    return widget


def test_messages_newest_first_with_details(area, session):
    listing = area.findChild(QListWidget, "messageList")
    detail = area.findChild(QPlainTextEdit, "messageDetail")
    assert detail.isReadOnly()
    assert detail.font().family() == QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
    session.message.emit("info", "first", "")
    session.message.emit("error", "second", "Traceback: boom")
    session.message.emit("warning", "third", "careful")
    assert area.messages() == [("warning", "third", "careful"), ("error", "second", "Traceback: boom"),
                               ("info", "first", "")]
    assert listing.count() == 3
    assert listing.item(0).text().endswith("third") and listing.item(2).text().endswith("first")
    assert all(not listing.item(i).icon().isNull() for i in range(3))
    assert area.count_errors() == 1
    listing.setCurrentRow(1)
    assert detail.toPlainText() == "Traceback: boom"
    area.findChild(QPushButton, "copyMessageButton").click()
    assert "second" in QGuiApplication.clipboard().text() and "Traceback: boom" in QGuiApplication.clipboard().text()
    listing.setCurrentRow(2)
    assert detail.toPlainText() == "first"  # no detail: the text itself
    for widget in area.findChildren(QWidget):
        if isinstance(widget, (QListWidget, QPlainTextEdit, QPushButton)):
            assert widget.toolTip(), widget.objectName()


def test_messages_clear_and_cap(area, session):
    listing = area.findChild(QListWidget, "messageList")
    detail = area.findChild(QPlainTextEdit, "messageDetail")
    clear = area.findChild(QPushButton, "clearMessagesButton")
    for i in range(MAX_MESSAGES + 25):
        session.message.emit("error" if i % 2 else "info", f"m{i}", f"d{i}")
    assert MAX_MESSAGES == 200
    assert listing.count() == len(area.messages()) == MAX_MESSAGES
    assert area.messages()[0][1] == f"m{MAX_MESSAGES + 24}" and area.messages()[-1][1] == "m25"
    assert area.count_errors() == MAX_MESSAGES // 2
    assert clear.isEnabled()
    clear.click()
    assert listing.count() == 0 and area.messages() == [] and area.count_errors() == 0
    assert detail.toPlainText() == "" and not clear.isEnabled()


def test_attention_for_warnings_and_errors_only(area, session):
    seen: list[tuple[str, str]] = []
    area.attention.connect(lambda level, text: seen.append((level, text)))
    session.message.emit("info", "fine", "")
    session.message.emit("warning", "hmm", "")
    session.message.emit("error", "bad", "why")
    assert seen == [("warning", "hmm"), ("error", "bad")]


def test_session_errors_reach_the_message_area(area, session):
    session.use_model("broken")
    level, text, detail = area.messages()[0]
    assert level == "error" and "broken" in text and "nope" in detail


def _size_action(widget, name: str):
    return next(a for a in widget.actions() if a.objectName() == f"thumbSize_{name}")


def test_the_history_thumbnail_size_is_picked_from_the_right_click_menu(qtbot, strip, session):
    listing = strip.findChild(QListWidget, "historyList")
    add_history(session, 3)
    assert listing.contextMenuPolicy() == Qt.ContextMenuPolicy.ActionsContextMenu
    assert "right-click" in listing.toolTip()
    assert _size_action(listing, "medium").isChecked()
    chosen = []
    strip.thumb_menu.chosen.connect(chosen.append)

    def shown() -> tuple[int, int]:
        listing.doItemsLayout()
        return listing.visualItemRect(listing.item(1)).height(), strip.sizeHint().height()

    medium = shown()
    _size_action(listing, "large").trigger()
    large = shown()
    _size_action(listing, "small").trigger()
    small = shown()
    assert chosen == ["large", "small"]
    assert small[0] < medium[0] < large[0] and small[1] < medium[1] < large[1]
    assert large[0] >= 96 > medium[0] >= 48 > small[0] >= 32
    # the thumbnail is drawn at that size: a large one fills its tile's height with the picture (thumb(): grey)
    _size_action(listing, "large").trigger()
    strip.resize(400, strip.sizeHint().height())
    listing.doItemsLayout()
    rect = listing.visualItemRect(listing.item(0))
    image = listing.viewport().grab(rect).toImage()
    column = [image.pixelColor(image.width() // 2, y) for y in range(image.height())]
    grey_rows = sum(1 for c in column if c.red() == c.green() == c.blue() == 0)  # thumb(0): a black picture
    assert grey_rows >= 90 * image.devicePixelRatio(), grey_rows
    strip.set_thumb_size("enormous")  # what a hand-edited settings file may hold: ignored
    assert strip.thumb_menu.size == "large"

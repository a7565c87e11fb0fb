"""The Gallery dock (fake engine): 10,000 indexed renders open with one page of rows and only the thumbnails in
view read; scrolling fetches more; keys rate and reject; filters; Restore gives the exact request; Delete moves files to
the system trash (never unlinks) and the index forgets them; the viewer (Space, double-click) shows one large, walks
the gallery with the arrow keys and rates; Compare shows two side by side; tags typed for picked items; a grid opens
in the viewer; variations are indexed."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from studio.app.gallery import Gallery, GalleryFilter
from studio.export.image import save_image
from studio.ui.main_window import TRASH_CHUNK
from studio.request import RenderRequest

from fake_engine import fake_image
from test_ui_window import _no_blocking_dialogs, engine, window  # noqa: F401  (fixtures)


def show_gallery(qtbot, window):
    dock = window.docks["Gallery"]
    dock.show()
    dock.raise_()
    window.bottom_docks.expand(dock)
    qtbot.waitUntil(lambda: window.gallery.isVisible(), timeout=3000)
    return window.gallery


def _ten_thousand(window, tmp_path, count: int = 10_000) -> Gallery:
    """`count` renders of the tiny model (hard links of one picture) in the window's gallery index."""
    folder = tmp_path / "many"
    folder.mkdir()
    one = folder / "one.png"
    request = RenderRequest("tiny", seed=0, params={"prompt": "Ab"})
    save_image(one, fake_image(request), request)
    files = []
    for k in range(count):
        path = folder / f"r{k:05d}.png"
        os.link(one, path)  # 10,000 files, one picture
        files.append((path, request.with_(seed=k)))
    gallery = window.session.open_gallery()
    gallery.add_many(files, "queue", created=1.0)
    return gallery


def test_ten_thousand_renders_open_a_page_at_a_time_and_read_only_the_shown_thumbnails(qtbot, window, tmp_path):
    gallery = _ten_thousand(window, tmp_path)
    panel = show_gallery(qtbot, window)
    assert panel.count.text() == "10,000 renders"
    model = panel.model
    assert model.rowCount() == 10_000 and 0 < model.loaded <= 400  # every row; the items of a page or two read
    qtbot.waitUntil(lambda: len(model._thumbs) > 0, timeout=5000)  # the shown ones load
    assert 0 < model.reads < 200
    panel.view.scrollToBottom()
    qtbot.waitUntil(lambda: model.items[-1] is not None, timeout=5000)  # the last page is read as it shows
    assert model.loaded <= 1000 and model.items[5000] is None  # the pages scrolled past unseen are not
    assert model.reads < 400 and model.item_at(5000).seed == str(10_000 - 1 - 5000)  # newest first


def test_ctrl_a_over_ten_thousand_renders_rates_and_tags_them_all_in_one_write(qtbot, window, tmp_path, monkeypatch):
    gallery = _ten_thousand(window, tmp_path)
    panel = show_gallery(qtbot, window)
    reads = []  # items read from the index one at a time (a select-all of 10,000 read them one query each)
    monkeypatch.setattr(type(gallery), "item", lambda self, item_id: reads.append(item_id))
    panel.view.setFocus()
    panel.view.setCurrentIndex(panel.model.index(0))
    QTest.keyClick(panel.view, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    assert len(panel.selected_ids()) == 10_000 and panel.trash_button.isEnabled()
    QTest.keyClick(panel.view, Qt.Key.Key_3)
    assert gallery.count(GalleryFilter(min_rating=3)) == 10_000
    assert "★★★" in panel.model.index(9_999).data()  # the rows show it
    panel.tags.setText("batch")
    QTest.keyClick(panel.tags, Qt.Key.Key_Return)
    assert gallery.count(GalleryFilter(text="batch")) == 10_000 and panel.tags.text() == "batch"
    assert reads == []


def test_many_renders_go_to_the_trash_a_chunk_at_a_time_with_the_count_in_the_status_bar(qtbot, window, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    gallery = _ten_thousand(window, tmp_path, 120)
    panel = show_gallery(qtbot, window)
    panel.view.setFocus()
    panel.view.setCurrentIndex(panel.model.index(0))
    QTest.keyClick(panel.view, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(panel.view, Qt.Key.Key_Delete)
    # the first chunk went before the window's next turn; the rest follow, the bar counting
    assert len(list((tmp_path / "many").glob("r*.png"))) == 120 - TRASH_CHUNK
    assert window.statusBar().currentMessage() == f"Moving to the trash: {TRASH_CHUNK} of 120 files …"
    qtbot.waitUntil(lambda: gallery.count() == 0, timeout=10_000)
    assert not list((tmp_path / "many").glob("r*.png")) and panel.model.rowCount() == 0
    assert len(list((tmp_path / "xdg").rglob("r*.png"))) == 120  # in the trash, none unlinked
    assert window.statusBar().currentMessage() == "Moved 120 files to the trash"


def test_rating_keys_filters_restore_and_trash(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    session = window.session
    made = []
    for seed in (3, 4, 5):
        request = session.request.with_(seed=seed)
        path = tmp_path / f"s{seed}.png"
        save_image(path, fake_image(request), request)
        made.append((path, request))
    gallery = session.open_gallery()
    ids = gallery.add_many(made, "export")
    panel = show_gallery(qtbot, window)
    assert panel.model.rowCount() == 3, (panel.model.rowCount(), gallery.count(), panel.model.total)
    first = panel.model.index(0)  # newest first: the last added
    panel.view.setCurrentIndex(first)
    panel.view.setFocus()
    QTest.keyClick(panel.view, Qt.Key.Key_3)
    assert gallery.item(ids[2]).rating == 3 and "★★★" in first.data()
    panel.rating.setCurrentIndex(2)  # ★ 3+
    assert panel.model.rowCount() == 1
    panel.rating.setCurrentIndex(0)
    panel.view.setCurrentIndex(panel.model.index(1))
    QTest.keyClick(panel.view, Qt.Key.Key_X)
    assert gallery.item(ids[1]).rejected
    panel.reload()
    assert panel.model.rowCount() == 2  # rejected ones hide unless asked for
    panel.text.setText("Ab")
    assert panel.model.rowCount() == 2
    panel.text.setText("nothing like it")
    assert panel.model.rowCount() == 0
    panel.text.setText("")
    # restore: the exact request, one undo step
    panel.view.setCurrentIndex(panel.model.index(1))
    before = session.request
    panel.restore_button.click()
    assert session.request.seed == 3 and session.request != before
    session.undo.undo()
    assert session.request == before
    # Delete: to the trash, not unlinked
    panel.view.setCurrentIndex(panel.model.index(0))
    QTest.keyClick(panel.view, Qt.Key.Key_Delete)
    assert not made[2][0].exists()
    trashed = list((tmp_path / "xdg").rglob("s5*.png"))
    assert trashed, "the file is not in the trash"
    assert gallery.item(ids[2]) is None and panel.model.rowCount() == 1


def test_exports_and_grids_land_in_the_gallery(qtbot, window, tmp_path):
    session = window.session
    seed = session.request.seed
    session.tasks.export(tmp_path / "one.png")
    session.tasks.export_grid(tmp_path / "grid.png", "seed=1,2", "seed=3")
    qtbot.waitUntil(lambda: (tmp_path / "grid.png").exists() and session.open_gallery().count() == 2, timeout=5000)
    items = {i.source: i for i in session.open_gallery().items()}
    assert items["export"].path == (tmp_path / "one.png").resolve() and items["export"].seed == str(seed)
    assert items["grid"].path == (tmp_path / "grid.png").resolve()


def test_an_open_gallery_shows_a_render_the_queue_just_wrote(qtbot, window):
    panel = show_gallery(qtbot, window)
    assert panel.count.text() == "0 renders"
    window.act_generate.trigger()  # the Queue comes forward; the Gallery stays open behind it
    qtbot.waitUntil(lambda: window.session.render_queue.jobs[0].finished, timeout=5000)
    # the index is written on the gallery's thread; the panel reloads once it is in (not before, not never)
    qtbot.waitUntil(lambda: panel.count.text() == "1 render", timeout=5000)
    assert panel.model.rowCount() == 1


def test_variations_land_in_the_gallery(qtbot, window):
    session = window.session
    session.render_variations(count=2)
    qtbot.waitUntil(lambda: session.open_gallery().count() == 2, timeout=10000)
    items = session.open_gallery().items()
    assert {i.source for i in items} == {"variation"} and all(i.path.exists() for i in items)
    assert {i.request().param("variation_seed") for i in items} == \
        {r.param("variation_seed") for r, _ in session.variations}


def _three(session, tmp_path):
    made = []
    for seed in (3, 4, 5):
        request = session.request.with_(seed=seed)
        path = tmp_path / f"s{seed}.png"
        save_image(path, fake_image(request), request)
        made.append((path, request))
    return made, session.open_gallery().add_many(made, "export")


def test_the_viewer_shows_walks_rates_and_compares(qtbot, window, tmp_path):
    session = window.session
    made, ids = _three(session, tmp_path)
    panel = show_gallery(qtbot, window)
    assert not panel.open_button.isEnabled() and not panel.compare_button.isEnabled()
    panel.view.setCurrentIndex(panel.model.index(0))
    panel.view.setFocus()
    QTest.keyClick(panel.view, Qt.Key.Key_Space)
    viewer = panel.viewer
    qtbot.waitUntil(lambda: viewer is not None and viewer.isVisible(), timeout=3000)
    assert viewer.current.id == ids[2] and not viewer.right.isVisible()
    qtbot.waitUntil(lambda: viewer.left.canvas.image() is not None, timeout=5000)  # read on the pool
    assert viewer.left.canvas.image().width() == fake_image(made[2][1]).shape[1]
    assert "seed 5" in viewer.left.label.text() and viewer.position.text() == "1 of 3"
    QTest.keyClick(viewer, Qt.Key.Key_Right)
    assert viewer.current.id == ids[1] and viewer.position.text() == "2 of 3"
    QTest.keyClick(viewer, Qt.Key.Key_4)  # rates the item shown, in the index and in the panel
    assert session.open_gallery().item(ids[1]).rating == 4 and "★★★★" in viewer.left.label.text()
    assert "★★★★" in panel.model.index(1).data()
    QTest.keyClick(viewer, Qt.Key.Key_Return)  # restores its request
    assert session.request.seed == 4
    QTest.keyClick(viewer, Qt.Key.Key_Escape)
    assert not viewer.isVisible()
    # two picked: Compare shows them side by side
    selection = panel.view.selectionModel()
    panel.view.setCurrentIndex(panel.model.index(0))
    selection.select(panel.model.index(2), selection.SelectionFlag.Select)
    assert panel.compare_button.isEnabled()
    panel.compare_button.click()
    qtbot.waitUntil(lambda: viewer.isVisible() and viewer.right.isVisible(), timeout=3000)
    assert {viewer.current.id, viewer.other.id} == {ids[0], ids[2]}
    qtbot.waitUntil(lambda: viewer.left.canvas.image() is not None and viewer.right.canvas.image() is not None,
                    timeout=5000)


def test_tags_typed_for_picked_renders_are_kept_and_found(qtbot, window, tmp_path):
    session = window.session
    _, ids = _three(session, tmp_path)
    panel = show_gallery(qtbot, window)
    gallery = session.open_gallery()
    panel.view.setCurrentIndex(panel.model.index(0))
    panel.tags.setText("keeper, serif")
    QTest.keyClick(panel.tags, Qt.Key.Key_Return)
    assert gallery.item(ids[2]).tags == ("keeper", "serif")
    selection = panel.view.selectionModel()
    selection.select(panel.model.index(1), selection.SelectionFlag.Select)
    assert panel.tags.text() == ""  # nothing shared yet
    panel.tags.setText("pair")
    QTest.keyClick(panel.tags, Qt.Key.Key_Return)
    assert gallery.item(ids[2]).tags == ("keeper", "pair", "serif") and gallery.item(ids[1]).tags == ("pair",)
    assert panel.tags.text() == "pair"  # what both share
    panel.tags.setText("")  # a shared tag removed from the text leaves them both; the rest stay
    QTest.keyClick(panel.tags, Qt.Key.Key_Return)
    assert gallery.item(ids[2]).tags == ("keeper", "serif") and gallery.item(ids[1]).tags == ()
    panel.text.setText("keeper")
    assert panel.model.rowCount() == 1


def test_a_grid_opens_in_the_gallery_viewer(qtbot, window, tmp_path, monkeypatch):
    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask_grid", lambda *a: (str(tmp_path / "plot.png"), "seed=1,2", "seed=3"))
    window.export_grid_dialog()
    qtbot.waitUntil(lambda: window.gallery.viewer is not None and window.gallery.viewer.isVisible(), timeout=10000)
    viewer = window.gallery.viewer
    qtbot.waitUntil(lambda: viewer.left.canvas.image() is not None, timeout=5000)
    assert "plot.png" in viewer.left.label.text() and viewer.left.canvas.image().width() > 32


def test_new_renders_join_the_top_without_resetting_the_view(qtbot, window, tmp_path):
    session = window.session
    made, ids = _three(session, tmp_path)
    panel = show_gallery(qtbot, window)
    panel.view.setCurrentIndex(panel.model.index(2))  # the oldest picked
    resets = []
    panel.model.modelReset.connect(lambda: resets.append(1))
    request = session.request.with_(seed=9)
    path = tmp_path / "s9.png"
    save_image(path, fake_image(request), request)
    session.tasks.files_written("export", [(path, request)], "image")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 4, timeout=5000)
    assert not resets and panel.count.text() == "4 renders"
    assert panel.model.items[0].seed == "9" and [i.id for i in panel.model.items[1:]] == ids[::-1]
    assert panel.selected_ids() == [ids[0]]  # the pick stayed on its item


def test_the_viewer_pins_a_render_in_the_windows_compare_view(qtbot, window, tmp_path):
    session = window.session
    made, ids = _three(session, tmp_path)
    panel = show_gallery(qtbot, window)
    panel.view.setCurrentIndex(panel.model.index(1))
    panel.open_button.click()
    viewer = panel.viewer
    qtbot.waitUntil(lambda: viewer.left.canvas.image() is not None and viewer.pin_button.isEnabled(), timeout=5000)
    QTest.keyClick(viewer, Qt.Key.Key_P)
    compare = window.compare
    qtbot.waitUntil(lambda: compare.isVisible(), timeout=3000)
    assert "seed 4" in compare.pinned_label and compare.pinned_image().width() == fake_image(made[1][1]).shape[1]


def test_a_right_click_offers_what_the_buttons_and_keys_do_for_the_picked_renders(qtbot, window, tmp_path):
    from PySide6.QtWidgets import QApplication

    session = window.session
    made, ids = _three(session, tmp_path)
    panel = show_gallery(qtbot, window)
    view = panel.view
    centre = lambda row: view.visualRect(panel.model.index(row)).center()  # noqa: E731
    assert panel.context_menu(QPoint(view.viewport().width() - 3, 3)) is None  # between the renders: no menu
    menu = panel.context_menu(centre(1))  # a render not picked: picked alone
    assert panel.selected_ids() == [ids[1]]
    actions = {a.text().split("\t")[0]: a for a in menu.actions() if a.text()}
    assert list(actions) == ["View", "Compare", "Restore", "Show in Folder", "Copy Path", "Rate", "Tags…",
                             "Move to Trash"]
    assert not actions["Compare"].isEnabled() and actions["Restore"].isEnabled()
    stars = {a.text().split("\t")[0]: a for a in actions["Rate"].menu().actions()}
    stars["★★"].trigger()
    assert session.open_gallery().item(ids[1]).rating == 2
    actions["Copy Path"].trigger()
    assert QApplication.clipboard().text() == str(made[1][0])
    # two picked, the right-click on one of them: the menu acts on both
    view.selectionModel().select(panel.model.index(0), view.selectionModel().SelectionFlag.Select)
    menu = panel.context_menu(centre(0))
    actions = {a.text().split("\t")[0]: a for a in menu.actions() if a.text()}
    assert sorted(panel.selected_ids()) == sorted([ids[1], ids[2]])
    assert actions["Compare"].isEnabled() and not actions["Restore"].isEnabled() and "Copy 2 Paths" in actions
    next(a for a in actions["Rate"].menu().actions() if a.text().startswith("Reject")).trigger()
    assert [session.open_gallery().item(i).rating for i in ids[1:]] == [-1, -1]
    actions["Compare"].trigger()
    qtbot.waitUntil(lambda: panel.viewer is not None and panel.viewer.right.isVisible(), timeout=3000)


def test_a_write_the_index_refuses_is_said_naming_the_index_and_nothing_else_changes(qtbot, window, tmp_path,
                                                                                    monkeypatch):
    import sqlite3

    session = window.session
    _, ids = _three(session, tmp_path)
    panel = show_gallery(qtbot, window)
    gallery = session.open_gallery()
    said = []
    session.message.connect(lambda level, text, detail: said.append((level, text, detail)))

    def locked(*_args):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(type(gallery), "set_ratings", locked)
    monkeypatch.setattr(type(gallery), "set_tags_of", locked)
    panel.view.setFocus()
    panel.view.setCurrentIndex(panel.model.index(0))
    QTest.keyClick(panel.view, Qt.Key.Key_4)
    assert said[-1][0] == "error" and said[-1][1] == "Could not rate the picked renders in the gallery: database is locked"
    assert str(gallery.path) in said[-1][2]
    assert gallery.item(ids[2]).rating == 0 and "★" not in panel.model.index(0).data()
    panel.tags.setText("keeper")
    QTest.keyClick(panel.tags, Qt.Key.Key_Return)
    assert said[-1][1] == "Could not tag the picked renders in the gallery: database is locked"
    assert gallery.item(ids[2]).tags == ()
    monkeypatch.undo()  # the lock goes: the same keys work
    QTest.keyClick(panel.view, Qt.Key.Key_4)
    assert gallery.item(ids[2]).rating == 4

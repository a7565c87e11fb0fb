"""studio.ui.thumb_grid.ThumbGrid, the gallery's grid: cells placed by arithmetic (hit-testing, rectangles, scroll
range), keys, clicks and rectangle selection; a render joining the top of 10,000 costs what the screen shows (a list
view read the model's row count once per row, 10,000 times, at each join) and keeps the place of a user scrolled
down; typing does not read every row."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QAbstractListModel, QItemSelectionModel, QModelIndex, QPoint, QPointF, QRect, QSize, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractItemView, QApplication, QStyledItemDelegate

from studio.ui.thumb_grid import ThumbGrid

CELL, ITEM = QSize(100, 120), QSize(90, 110)


class Counted(QAbstractListModel):
    """n rows, newest first; counts the calls a view makes into Python."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def rowCount(self, parent=QModelIndex()) -> int:
        self.calls += 1
        return 0 if parent.isValid() else self.n

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        self.calls += 1
        return str(self.n - index.row()) if role == Qt.ItemDataRole.DisplayRole else None

    def add_on_top(self, k: int = 1) -> None:
        self.beginInsertRows(QModelIndex(), 0, k - 1)
        self.n += k
        self.endInsertRows()


class Painted(QStyledItemDelegate):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[int] = []

    def paint(self, painter, option, index) -> None:
        self.rows.append(index.row())
        super().paint(painter, option, index)

    def sizeHint(self, option, index) -> QSize:
        return ITEM


@pytest.fixture
def grid(qtbot):
    def make(n: int, width: int = 4 * CELL.width() + 10, height: int = 3 * CELL.height()):
        view = ThumbGrid(CELL, ITEM)
        qtbot.addWidget(view)
        model = Counted(n)
        view.setModel(model)
        view.setItemDelegate(Painted(view))
        view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        # the viewport, not the widget, holds the cells: size it exactly (frame and scroll bar aside; the bar always
        # shown, so that its coming and going does not change the width)
        view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        view.show()
        QApplication.processEvents()
        extra = QSize(view.width() - view.viewport().width(), view.height() - view.viewport().height())
        view.resize(width + extra.width(), height + extra.height())
        qtbot.waitUntil(lambda: view.viewport().width() == width and view.viewport().height() == height,
                        timeout=3000)
        QApplication.processEvents()
        return view, model

    return make


def test_cells_are_placed_and_hit_by_arithmetic(grid):
    view, model = grid(10)
    assert view.columns() == 4
    # row 5: column 1 of the second line; its item is centred across its cell at the cell's top
    rect = view.visualRect(model.index(5))
    assert rect == QRect(100 + 5, 120, 90, 110)
    assert view.indexAt(rect.center()).row() == 5
    assert not view.indexAt(QPoint(100 + 2, 130)).isValid()  # the cell's margin beside the item
    assert not view.indexAt(QPoint(2 * 100 + 50, 2 * 120 + 50)).isValid()  # past the last row (9: line 2, col 1)
    assert view.indexAt(QPoint(1 * 100 + 50, 2 * 120 + 50)).row() == 9
    assert not view.indexAt(QPoint(4 * 100 + 5, 10)).isValid()  # right of the last column
    assert view.verticalScrollBar().maximum() == 0  # three lines fit


def test_scroll_range_scroll_to_and_resize(grid):
    view, model = grid(1000)
    bar = view.verticalScrollBar()
    assert bar.maximum() == 250 * 120 - 3 * 120  # 1000 rows on 4 columns
    view.scrollTo(model.index(999))
    assert bar.value() == bar.maximum()
    assert view.visualRect(model.index(999)).bottom() < view.viewport().height()
    view.scrollTo(model.index(40), QAbstractItemView.ScrollHint.PositionAtTop)
    assert bar.value() == 10 * 120 and view.indexAt(QPoint(50, 50)).row() == 40
    view.scrollTo(model.index(0))
    assert bar.value() == 0
    view.resize(view.width() - 100, view.height())  # three columns: more lines
    QApplication.processEvents()
    assert view.columns() == 3 and bar.maximum() == 334 * 120 - 3 * 120


def test_arrow_keys_move_by_cell_and_line_and_shift_extends(grid, qtbot):
    view, model = grid(10)
    view.setFocus()
    view.setCurrentIndex(model.index(0))
    QTest.keyClick(view, Qt.Key.Key_Right)
    assert view.currentIndex().row() == 1
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert view.currentIndex().row() == 5
    QTest.keyClick(view, Qt.Key.Key_Down)  # row 9
    QTest.keyClick(view, Qt.Key.Key_Down)  # no line below: stays
    assert view.currentIndex().row() == 9
    QTest.keyClick(view, Qt.Key.Key_Home)
    assert view.currentIndex().row() == 0
    QTest.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert sorted(i.row() for i in view.selectedIndexes()) == [0, 1, 2]
    QTest.keyClick(view, Qt.Key.Key_End)
    assert view.currentIndex().row() == 9 and [i.row() for i in view.selectedIndexes()] == [9]


def test_clicks_ctrl_clicks_and_a_dragged_rectangle_select(grid, qtbot):
    view, model = grid(10)
    centre = lambda row: view.visualRect(model.index(row)).center()  # noqa: E731
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre(2))
    assert [i.row() for i in view.selectedIndexes()] == [2]
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, centre(7))
    assert sorted(i.row() for i in view.selectedIndexes()) == [2, 7]
    clicked = []
    view.doubleClicked.connect(lambda index: clicked.append(index.row()))
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre(4))  # a double click's first press
    QTest.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre(4))
    assert clicked == [4]
    # cells 1, 2, 5, 6 lie in this rectangle: the selection is a block of cells, as an icon view's
    view.setSelection(QRect(centre(1), centre(6)), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    assert sorted(i.row() for i in view.selectedIndexes()) == [1, 2, 5, 6]


def test_a_render_joining_the_top_of_ten_thousand_costs_what_the_screen_shows(grid, qtbot):
    view, model = grid(10_000)
    view.verticalScrollBar().setValue(120 * 500)  # far down: the user's place
    QApplication.processEvents()
    delegate = view.itemDelegate()
    delegate.rows.clear()
    model.calls = 0
    model.add_on_top()
    QApplication.processEvents()
    qtbot.waitUntil(lambda: bool(delegate.rows), timeout=3000)  # the cells on screen repaint
    QApplication.processEvents()
    assert view.verticalScrollBar().maximum() == 2501 * 120 - 3 * 120  # the range grew by the new line
    # the screen's twelve to sixteen cells, not the model's 10,001 rows (a QListView: 10,001 row counts at least)
    assert model.calls < 300, model.calls
    assert set(delegate.rows) <= set(range(500 * 4, 504 * 4))


def test_typing_a_letter_does_not_read_every_row(grid):
    view, model = grid(10_000)
    view.setFocus()
    view.setCurrentIndex(model.index(0))
    model.calls = 0
    QTest.keyClicks(view, "42")
    assert model.calls < 300 and view.currentIndex().row() == 0


def test_renders_joining_the_top_keep_the_place_of_a_user_scrolled_down(grid):
    view, model = grid(10_000)
    bar = view.verticalScrollBar()
    bar.setValue(120 * 500 + 30)  # line 500 (rows 2000-2003) at the top, 30 px scrolled into it
    QApplication.processEvents()
    for k in (1, 3, 4, 9):  # fewer than a line, a line, more than two lines
        shown = view.indexAt(QPoint(50, 40)).data()  # the first render on screen
        model.add_on_top(k)
        QApplication.processEvents()
        # the same render is on the same screen line (its column moved with the rows before it)
        here = [view.indexAt(QPoint(x, 40)).data() for x in (50, 150, 250, 350)]
        assert shown in here, (k, shown, here)
    bar.setValue(0)  # at the very top the new rows show
    model.add_on_top(2)
    QApplication.processEvents()
    assert bar.value() == 0 and view.indexAt(QPoint(50, 50)).row() == 0


def test_a_drag_from_between_cells_draws_a_rubber_band_and_picks_what_it_touches(grid, qtbot):
    view, model = grid(10)
    viewport = view.viewport()
    start = QPoint(100 + 2, 5)  # the margin beside cell 1: no item under it
    assert not view.indexAt(start).isValid()
    gap = QPoint(200, 60)  # between cells 1 and 2: only the band paints here
    before = viewport.grab().toImage().pixelColor(gap)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    end = view.visualRect(model.index(6)).center()
    QTest.mouseMove(viewport, end)
    # QTest.mouseMove moves the cursor; the view needs the button held in the event it gets
    move = QMouseEvent(QMouseEvent.Type.MouseMove, QPointF(end), viewport.mapToGlobal(QPointF(end)),
                       Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, move)
    assert view.band == QRect(start, end).normalized()  # drawn while dragged
    assert sorted(i.row() for i in view.selectedIndexes()) == [1, 2, 5, 6]
    assert viewport.grab().toImage().pixelColor(gap) != before
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=end)
    assert view.band.isEmpty() and sorted(i.row() for i in view.selectedIndexes()) == [1, 2, 5, 6]

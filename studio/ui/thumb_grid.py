"""A grid of equal cells over a list model, laid out by arithmetic: the cell of row r is at (r mod columns, r div
columns), so placing, hit-testing and painting cost what the screen shows, never what the model holds.

Why not QListView: its icon and wrapping list modes lay every row out again whenever rows are inserted or removed, and
each row's place asks a Python model for its row count (QAbstractItemModel::index checks hasIndex), so a gallery of
10,000 renders stalled the window 15–45 ms each time a new render joined its top. Here an insert repaints the cells on
screen and sets the scroll bar's range."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QItemSelection, QModelIndex, QPersistentModelIndex, QPoint, QRect, QSize, Qt
from PySide6.QtGui import QHoverEvent, QPainter, QRegion
from PySide6.QtWidgets import QAbstractItemView, QStyle, QStyleOptionRubberBand, QStyleOptionViewItem


class ThumbGrid(QAbstractItemView):
    """Rows of a list model in cells of `cell` pixels, left to right, then down; the delegate paints each item in a
    rectangle of `item` pixels (every item's size: the delegate's size hint), centred across its cell at the cell's
    top, as an icon view places items on its grid. Scrolls by pixels, a third of a row at a wheel step."""

    def __init__(self, cell: QSize, item: QSize, parent=None):
        super().__init__(parent)
        self.cell = QSize(cell)
        self.item = QSize(min(item.width(), cell.width()), min(item.height(), cell.height()))
        self._hover = -1
        self._band_from: QPoint | None = None  # a rubber band's first corner (content coordinates) while dragged
        self.band = QRect()  # the rubber band on screen (viewport coordinates), empty when none
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_Hover)

    def setModel(self, model) -> None:
        old = self.model()
        if old is not None:
            old.rowsInserted.disconnect(self._rows_inserted)
            for signal in (old.rowsRemoved, old.modelReset, old.layoutChanged):
                signal.disconnect(self._relayout)
        super().setModel(model)
        if model is not None:
            # QAbstractItemView does not place rows again when they come and go (its subclasses do)
            model.rowsInserted.connect(self._rows_inserted)
            for signal in (model.rowsRemoved, model.modelReset, model.layoutChanged):
                signal.connect(self._relayout)

    def _relayout(self, *_args) -> None:
        self._hover = -1  # the row under the mouse moved
        self.updateGeometries()
        self.viewport().update()

    def _rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        """Rows inserted above the ones on screen keep the user's place: the view scrolls down by the lines the
        shown rows moved (at the very top it stays there, showing the new rows)."""
        bar = self.verticalScrollBar()
        top = bar.value()
        shown = (top // max(1, self.cell.height())) * self.columns()  # the first row on screen, before the insert
        self._relayout()
        if parent == self.rootIndex() and top > 0 and first <= shown:
            cols = self.columns()
            moved = last - first + 1
            bar.setValue(top + ((shown + moved) // cols - shown // cols) * self.cell.height())

    # --- geometry ------------------------------------------------------------------------------------------------
    def _count(self) -> int:
        model = self.model()
        return model.rowCount(self.rootIndex()) if model is not None else 0

    def columns(self) -> int:
        return max(1, self.viewport().width() // max(1, self.cell.width()))

    def _cell_rect(self, row: int) -> QRect:
        """Row `row`'s cell in content coordinates (0 at the top of the first row)."""
        cols = self.columns()
        return QRect((row % cols) * self.cell.width(), (row // cols) * self.cell.height(),
                     self.cell.width(), self.cell.height())

    def _item_rect(self, row: int) -> QRect:
        """Row `row`'s item in content coordinates."""
        cell = self._cell_rect(row)
        return QRect(cell.x() + (cell.width() - self.item.width()) // 2, cell.y(), self.item.width(),
                     self.item.height())

    def _visible_rows(self) -> range:
        """The model rows whose cells show (some of them past the model's end)."""
        cols, height = self.columns(), max(1, self.cell.height())
        top = self.verticalOffset()
        first = max(0, top // height)
        last = (top + self.viewport().height()) // height
        return range(first * cols, min(self._count(), (last + 1) * cols))

    def updateGeometries(self) -> None:
        rows = -(-self._count() // self.columns())
        bar = self.verticalScrollBar()
        bar.setRange(0, max(0, rows * self.cell.height() - self.viewport().height()))
        bar.setPageStep(max(1, self.viewport().height()))
        bar.setSingleStep(max(1, self.cell.height() // 3))
        super().updateGeometries()

    # --- QAbstractItemView's interface ------------------------------------------------------------------------------
    def visualRect(self, index: QModelIndex | QPersistentModelIndex) -> QRect:
        if not index.isValid() or index.parent() != self.rootIndex() or index.row() >= self._count():
            return QRect()
        return self._item_rect(index.row()).translated(0, -self.verticalOffset())

    def indexAt(self, point: QPoint) -> QModelIndex:
        model = self.model()
        x, y = point.x(), point.y() + self.verticalOffset()
        if model is None or x < 0 or y < 0:
            return QModelIndex()
        col = x // self.cell.width()
        if col >= self.columns():
            return QModelIndex()
        row = (y // self.cell.height()) * self.columns() + col
        if row >= self._count():
            return QModelIndex()
        index = model.index(row, 0, self.rootIndex())
        return index if self._item_rect(row).contains(x, y) else QModelIndex()

    def scrollTo(self, index: QModelIndex | QPersistentModelIndex, hint=QAbstractItemView.ScrollHint.EnsureVisible) -> None:
        if not index.isValid():
            return
        cell = self._cell_rect(index.row())
        bar, height = self.verticalScrollBar(), self.viewport().height()
        top = bar.value()
        if hint == QAbstractItemView.ScrollHint.PositionAtTop:
            top = cell.top()
        elif hint == QAbstractItemView.ScrollHint.PositionAtBottom:
            top = cell.bottom() + 1 - height
        elif hint == QAbstractItemView.ScrollHint.PositionAtCenter:
            top = cell.center().y() - height // 2
        elif cell.top() < top:
            top = cell.top()
        elif cell.bottom() + 1 > top + height:
            top = cell.bottom() + 1 - height
        bar.setValue(top)

    def horizontalOffset(self) -> int:
        return 0

    def verticalOffset(self) -> int:
        return self.verticalScrollBar().value()

    def isIndexHidden(self, index: QModelIndex | QPersistentModelIndex) -> bool:
        return False

    def moveCursor(self, action, modifiers) -> QModelIndex:
        count, model = self._count(), self.model()
        if model is None or count == 0:
            return QModelIndex()
        current = self.currentIndex()
        if not current.isValid():
            return model.index(0, 0, self.rootIndex())
        row, cols = current.row(), self.columns()
        page = max(1, self.viewport().height() // self.cell.height()) * cols
        A = QAbstractItemView.CursorAction
        moves = {A.MoveLeft: -1, A.MovePrevious: -1, A.MoveRight: 1, A.MoveNext: 1, A.MoveUp: -cols,
                 A.MoveDown: cols, A.MovePageUp: -page, A.MovePageDown: page}
        if action == A.MoveHome:
            row = 0
        elif action == A.MoveEnd:
            row = count - 1
        elif action in (A.MoveUp, A.MoveDown):
            moved = row + moves[action]
            row = moved if 0 <= moved < count else row  # no row above or below: stay
        elif action in moves:
            row = min(count - 1, max(0, row + moves[action]))
        return model.index(row, 0, self.rootIndex())

    def setSelection(self, rect: QRect, command) -> None:
        """The cells `rect` (viewport coordinates) touches: rectangles of cells, as an icon view selects."""
        model, count = self.model(), self._count()
        if model is None or count == 0:
            return
        area = rect.normalized().translated(0, self.verticalOffset())
        cols, cw, ch = self.columns(), self.cell.width(), self.cell.height()
        first_col, last_col = max(0, area.left() // cw), min(cols - 1, area.right() // cw)
        first_line, last_line = max(0, area.top() // ch), max(0, area.bottom() // ch)
        selection = QItemSelection()
        for line in range(first_line, last_line + 1):
            first, last = line * cols + first_col, min(count - 1, line * cols + last_col)
            if first > last:
                break
            selection.select(model.index(first, 0, self.rootIndex()), model.index(last, 0, self.rootIndex()))
        self.selectionModel().select(selection, command)

    def visualRegionForSelection(self, selection: QItemSelection) -> QRegion:
        region = QRegion()
        shown = self._visible_rows()
        for k in range(selection.count()):
            span = selection.at(k)
            if span.parent() != self.rootIndex():
                continue
            for row in range(max(span.top(), shown.start), min(span.bottom() + 1, shown.stop)):
                region += self._item_rect(row).translated(0, -self.verticalOffset())
        return region

    def keyboardSearch(self, search: str) -> None:
        """Typing does not search: the items have no names to type, and a search would read every row."""

    # --- painting and hover -----------------------------------------------------------------------------------------
    def viewportEvent(self, event: QEvent) -> bool:
        if isinstance(event, QHoverEvent):
            index = (self.indexAt(event.position().toPoint()) if event.type() != QEvent.Type.HoverLeave
                     else QModelIndex())
            row = index.row() if index.isValid() else -1
            if row != self._hover:
                for old in (self._hover, row):
                    if old >= 0:
                        self.viewport().update(self._item_rect(old).translated(0, -self.verticalOffset()))
                self._hover = row
        return super().viewportEvent(event)

    def mousePressEvent(self, event) -> None:
        super().mousePressEvent(event)
        point = event.position().toPoint()
        if (event.button() == Qt.MouseButton.LeftButton and not self.indexAt(point).isValid()
                and self.selectionMode() in (QAbstractItemView.SelectionMode.ExtendedSelection,
                                             QAbstractItemView.SelectionMode.MultiSelection)):
            self._band_from = point + QPoint(0, self.verticalOffset())  # a drag from between cells draws a band

    def mouseMoveEvent(self, event) -> None:
        super().mouseMoveEvent(event)  # selects the cells the band touches (setSelection)
        if self._band_from is not None and event.buttons() & Qt.MouseButton.LeftButton:
            old = self.band
            self.band = QRect(self._band_from - QPoint(0, self.verticalOffset()),
                              event.position().toPoint()).normalized()
            self.viewport().update(old.united(self.band).adjusted(-2, -2, 2, 2))

    def mouseReleaseEvent(self, event) -> None:
        super().mouseReleaseEvent(event)
        if self._band_from is not None:
            self._band_from = None
            self.viewport().update(self.band.adjusted(-2, -2, 2, 2))
            self.band = QRect()

    def paintEvent(self, event) -> None:
        model, delegate = self.model(), self.itemDelegate()
        if model is None or delegate is None:
            return
        painter = QPainter(self.viewport())
        option = QStyleOptionViewItem()  # one option for every cell: the delegate paints from a copy of it
        self.initViewItemOption(option)
        base_state = option.state | (QStyle.StateFlag.State_Active if self.isActiveWindow() else
                                     QStyle.StateFlag.State_None)
        selection = self.selectionModel()
        picking = selection is not None and selection.hasSelection()
        current = self.currentIndex().row() if self.hasFocus() and self.currentIndex().isValid() else -1
        root = self.rootIndex()
        # the cells' places in viewport coordinates, written out (this runs for every cell of every frame scrolled)
        cols, cw, ch = self.columns(), self.cell.width(), self.cell.height()
        iw, ih = self.item.width(), self.item.height()
        left, top = (cw - iw) // 2, -self.verticalOffset()
        dirty = event.rect()
        for row in self._visible_rows():
            rect = QRect((row % cols) * cw + left, (row // cols) * ch + top, iw, ih)
            if not rect.intersects(dirty):
                continue
            index = model.index(row, 0, root)
            state = base_state
            if picking and selection.isSelected(index):
                state |= QStyle.StateFlag.State_Selected
            if row == current:
                state |= QStyle.StateFlag.State_HasFocus
            if row == self._hover:
                state |= QStyle.StateFlag.State_MouseOver
            option.rect, option.state = rect, state
            delegate.paint(painter, option, index)
        if not self.band.isEmpty():
            band = QStyleOptionRubberBand()
            band.initFrom(self.viewport())
            band.rect = self.band
            band.shape = band.shape.Rectangle
            band.opaque = False
            self.style().drawControl(QStyle.ControlElement.CE_RubberBand, band, painter, self.viewport())
        painter.end()

    def initViewItemOption(self, option: QStyleOptionViewItem) -> None:
        super().initViewItemOption(option)
        option.decorationPosition = QStyleOptionViewItem.Position.Top
        option.decorationAlignment = Qt.AlignmentFlag.AlignCenter
        option.displayAlignment = Qt.AlignmentFlag.AlignCenter
        option.textElideMode = Qt.TextElideMode.ElideRight


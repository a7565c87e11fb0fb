"""The Gallery dock: every finished render the gallery index holds (studio.app.gallery), newest first, as thumbnails
that load as they scroll into view: rows come from the index a page at a time, and each picture is read and scaled
on a thread pool (QImageReader with a scaled size), never on the GUI thread. Filter by model, text (prompt and tags)
and rating; 1–5 star the picked items, 0 clears, X rejects; tags typed for the picked items; *View* (Space,
double-click) shows an item large and *Compare* two side by side (studio.ui.panels.gallery_view); *Restore* makes an
item's exact request the current one (one undo step); *Show in Folder*; *Move to Trash* (Delete) moves the files to the
system trash, never unlinks."""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from functools import partial
from pathlib import Path

from PySide6.QtCore import (QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, QPoint, QRect, QRunnable,
                            QSize, Qt, QThreadPool, QTimer, Signal)
from PySide6.QtGui import QGuiApplication, QImage, QImageReader, QKeyEvent, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QComboBox, QHBoxLayout, QLabel, QLineEdit, QMenu,
                               QPushButton, QStyle, QStyledItemDelegate, QStyleOptionFocusRect, QVBoxLayout, QWidget)

from studio.errors import StudioError
from studio.ui.panels.gallery_view import GalleryViewer
from studio.ui.thumb_grid import ThumbGrid

PAGE = 200  # rows asked of the index at a time
THUMB = 96  # thumbnail side, in pixels
ITEM = QSize(THUMB + 12, THUMB + 22)  # an item: its thumbnail over its seed and rating
CELL = QSize(THUMB + 16, THUMB + 24)  # its place on the grid
CACHE = 3000  # thumbnails kept in memory
JOIN_MS = 1000  # renders indexed while the dock shows join its view at most this often
PENDING = 256  # thumbnail reads waiting at most (a few screens of rows); older ones are given up
RATINGS = (("All", 0, False), ("★ 1+", 1, False), ("★ 3+", 3, False), ("★ 5", 5, False), ("Rejected", 0, True))


class _Signals(QObject):
    loaded = Signal(int, QImage)  # item id, scaled picture (a null image: could not be read)


class _ThumbJob(QRunnable):
    def __init__(self, item_id: int, path: Path, signals: _Signals):
        super().__init__()
        self.item_id, self.path, self.signals = item_id, path, signals
        self.cancelled = False  # set on the GUI thread when the row went stale before this started

    def run(self) -> None:  # on the pool's thread: read only as many pixels as the thumbnail needs
        if self.cancelled:
            return
        reader = QImageReader(str(self.path))
        size = reader.size()
        if size.isValid() and (size.width() > THUMB or size.height() > THUMB):
            reader.setScaledSize(size.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        self.signals.loaded.emit(self.item_id, image)


class GalleryModel(QAbstractListModel):
    """The index's items for a view: a row for each from the start (the view's scroll bar covers them all at once),
    each item read with its page of PAGE rows the first time the view asks for it."""

    def __init__(self, gallery, parent: QObject | None = None):
        super().__init__(parent)
        self.gallery = gallery
        self.where = None
        self.items: list = []
        self.total = 0
        self.loaded = 0  # rows whose item has been read from the index (a page at a time)
        self.unjoined = False  # renders were indexed since the rows were counted, and have not joined the view yet
        self._rows: dict[int, int] = {}  # item id → row
        self._thumbs: OrderedDict[int, QPixmap] = OrderedDict()
        self._asked: set[int] = set()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self.reads = 0  # thumbnails read so far (tests see that only the shown ones are)
        self.dropped = 0  # reads given up before they started (their rows were scrolled past)
        self._pending: OrderedDict[int, _ThumbJob] = OrderedDict()  # asked, not yet loaded, oldest first

    def set_filter(self, where) -> None:
        """Show the items `where` asks for: every row at once (so the view lays them out once, not again as pages
        arrive), each row's item read from the index with its page when it is first asked for."""
        self.beginResetModel()
        for job in self._pending.values():  # reads not yet started for the old rows
            job.cancelled = True
        self._pending.clear()
        self.where = where
        self._rows, self._asked = {}, set()
        self.unjoined = False
        self.total = self.gallery.count(where) if self.gallery is not None else 0
        self.items = [None] * self.total  # GalleryItem, or None for a page not read yet
        self.loaded = 0
        if self.total:
            self._load(0)  # before the view looks: its items' one size (uniform sizes) is taken from the first
        self.endResetModel()

    def _load(self, row: int) -> None:
        """Read the page of rows that holds `row` from the index."""
        start = row - row % PAGE
        # renders indexed since the rows were counted sit above them until they join (take_new): skip past them
        # (counted only when some were: a page read while painting asks the index once)
        shift = max(0, self.gallery.count(self.where) - self.total) if self.unjoined else 0
        for k, item in enumerate(self.gallery.items(self.where, offset=start + shift, limit=PAGE)):
            r = start + k
            if r < len(self.items) and self.items[r] is None and item.id not in self._rows:
                self.items[r] = item
                self._rows[item.id] = r
                self.loaded += 1

    def item_at(self, row: int):
        """The item of row `row` (its page read now if need be); None outside the rows or past the index's end."""
        if not 0 <= row < len(self.items):
            return None
        if self.items[row] is None and self.gallery is not None:
            self._load(row)
        return self.items[row]

    def take_new(self) -> int:
        """Rows for the items indexed since the view was filled, put at the top (newest first) without resetting the
        view: its scroll position, selection and thumbnails stay. How many came."""
        if self.gallery is None or self.where is None:
            return 0
        new = []
        for item in self.gallery.items(self.where, offset=0, limit=PAGE):
            if item.id in self._rows:
                break
            new.append(item)
        self.unjoined = False
        if not new:
            return 0
        if len(new) == PAGE:  # more than a page arrived at once: start again from the index
            self.set_filter(self.where)
            return len(new)
        self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
        self.items[:0] = new
        self._rows = {item.id: row for row, item in enumerate(self.items) if item is not None}
        self.total += len(new)
        self.loaded += len(new)
        self.endInsertRows()
        return len(new)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.items)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        item = self.item_at(index.row()) if index.isValid() else None
        if item is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.label(item)
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"{item.model_id}, seed {item.seed}" + (f", “{item.prompt}”" if item.prompt else "")
                    + f"\n{item.path}" + (f"\ntags: {', '.join(item.tags)}" if item.tags else ""))
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumb(item.id)
        if role == Qt.ItemDataRole.UserRole:
            return item.id
        return None

    @staticmethod
    def label(item) -> str:
        """An item's caption: its seed and its stars (✗ rejected)."""
        stars = "✗" if item.rejected else "★" * item.rating
        return f"{item.seed} {stars}".strip()

    def thumb(self, item_id: int) -> QPixmap | None:
        """The item's thumbnail when it has been read (the most recently shown are kept longest)."""
        thumb = self._thumbs.get(item_id)
        if thumb is not None:
            self._thumbs.move_to_end(item_id)
        return thumb

    def want(self, row: int):
        """Row `row` is being painted: read its thumbnail on the pool unless it is in memory or on its way. Only
        painting asks (a view also asks an item's picture when it is not shown), so only what shows is read. The
        row's item (None past the index's end), for the painter."""
        item = self.item_at(row)
        if item is None:
            return None
        if item.kind == "image" and item.id not in self._asked and item.id not in self._thumbs:
            self._asked.add(item.id)
            self.reads += 1
            job = _ThumbJob(item.id, item.path, self._signals)
            self._pending[item.id] = job
            # newest asked, first read: a fast scroll's passed rows wait behind the ones on screen now
            self.pool.start(job, min(self.reads, 2**30))
            while len(self._pending) > PENDING:  # rows scrolled past long ago: not read (asked again if shown)
                old_id, old = self._pending.popitem(last=False)
                old.cancelled = True  # if it has not started, it ends at once when it does
                self._asked.discard(old_id)
                self.dropped += 1
        return item

    def _on_loaded(self, item_id: int, image: QImage) -> None:
        self._pending.pop(item_id, None)
        if image.isNull():
            return
        self._thumbs[item_id] = QPixmap.fromImage(image)
        while len(self._thumbs) > CACHE:
            old, _ = self._thumbs.popitem(last=False)
            self._asked.discard(old)
        row = self._rows.get(item_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def refresh_items(self, item_ids) -> dict:
        """Read these items again from the index (their rating or tags changed): one query per few hundred, one
        repaint of the rows between the first and the last. The fresh items by id (those still in the index)."""
        ids = list(item_ids)
        fresh = self.gallery.items_by_id(ids) if self.gallery is not None and ids else {}
        rows = {item_id: row for item_id in fresh if (row := self._rows.get(item_id)) is not None}
        for item_id, row in rows.items():
            self.items[row] = fresh[item_id]
        if rows:
            self.dataChanged.emit(self.index(min(rows.values())), self.index(max(rows.values())))
        return fresh


class _Rows:
    """The model's items as a sequence for the viewer (its ←/→ walk): each read when it is asked for."""

    def __init__(self, model: GalleryModel):
        self.model = model

    def __len__(self) -> int:
        return self.model.rowCount()

    def __getitem__(self, row: int):
        return self.model.item_at(row)


class _ThumbDelegate(QStyledItemDelegate):
    """Paints an item: its thumbnail centred in a THUMB square, its seed and rating under it, the selection and the
    pointer's highlight behind; first asking the model for the thumbnail (see GalleryModel.want). Painted here with
    a few calls rather than through the style's item painting, which asks the model seven roles a cell and took a
    third of every scrolled frame at 10,000 items."""

    def __init__(self, model: GalleryModel, parent: QObject | None = None):
        super().__init__(parent)
        self.model = model

    def paint(self, painter, option, index) -> None:
        item = self.model.want(index.row())
        rect, state, palette = option.rect, option.state, option.palette
        selected = bool(state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect, palette.highlight())
        elif state & QStyle.StateFlag.State_MouseOver:
            hover = palette.highlight().color()
            hover.setAlpha(60)
            painter.fillRect(rect, hover)
        if item is None:
            return
        thumb = self.model.thumb(item.id)
        if thumb is not None:
            size = thumb.deviceIndependentSize().toSize()
            painter.drawPixmap(rect.x() + (rect.width() - size.width()) // 2,
                               rect.y() + 2 + max(0, THUMB - size.height()) // 2, thumb)
        text = option.fontMetrics.elidedText(self.model.label(item), Qt.TextElideMode.ElideRight, rect.width() - 4)
        painter.setPen(palette.highlightedText().color() if selected else palette.text().color())
        painter.drawText(QRect(rect.x() + 2, rect.bottom() - 19, rect.width() - 4, 18), Qt.AlignmentFlag.AlignCenter,
                         text)
        if state & QStyle.StateFlag.State_HasFocus:
            focus = QStyleOptionFocusRect()
            if option.widget is not None:
                focus.initFrom(option.widget)
            focus.rect = rect
            focus.state = state
            focus.backgroundColor = palette.highlight().color() if selected else palette.base().color()
            style = option.widget.style() if option.widget is not None else QApplication.style()
            style.drawPrimitive(QStyle.PrimitiveElement.PE_FrameFocusRect, focus, painter, option.widget)

    def sizeHint(self, option, index) -> QSize:
        return ITEM  # one size whether the thumbnail has come or not


class _GalleryView(ThumbGrid):
    """The thumbnails on a grid placed by arithmetic (studio.ui.thumb_grid): a render joining the top of 10,000
    repaints the screen's cells, where a list view laid all 10,000 out again."""

    rate = Signal(int)  # 1–5, 0 to clear, -1 to reject
    trash = Signal()
    view = Signal()  # Space: the picked item(s) large

    def __init__(self, parent: QWidget | None = None):
        super().__init__(CELL, ITEM, parent)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        keys = {Qt.Key.Key_0: 0, Qt.Key.Key_1: 1, Qt.Key.Key_2: 2, Qt.Key.Key_3: 3, Qt.Key.Key_4: 4,
                Qt.Key.Key_5: 5, Qt.Key.Key_X: -1}
        if event.modifiers() == Qt.KeyboardModifier.NoModifier and event.key() in keys and self.selectedIndexes():
            self.rate.emit(keys[Qt.Key(event.key())])
            return
        if event.key() == Qt.Key.Key_Delete and self.selectedIndexes():
            self.trash.emit()
            return
        if event.key() == Qt.Key.Key_Space and self.selectedIndexes():
            self.view.emit()
            return
        super().keyPressEvent(event)


class GalleryPanel(QWidget):
    open_folder = Signal(str)
    trash_files = Signal(list)  # [(item id, Path)]: the window moves them to the trash, then calls forget()
    pin_image = Signal(QImage, str)  # the viewer's picture: the window compares the current render with it

    def __init__(self, session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.model = GalleryModel(None, self)
        self.models = QComboBox()
        self.models.setObjectName("galleryModel")
        self.models.setToolTip("Show one model's renders")
        self.text = QLineEdit()
        self.text.setObjectName("galleryText")
        self.text.setPlaceholderText("Prompt or tag")
        self.text.setToolTip("Show the renders whose prompt or tags hold this text")
        self.rating = QComboBox()
        self.rating.setObjectName("galleryRating")
        self.rating.setToolTip("Show the renders with at least this rating, or the rejected ones")
        for text, _, _ in RATINGS:
            self.rating.addItem(text)
        self.count = QLabel()
        self.count.setObjectName("galleryCount")
        self.view = _GalleryView()
        self.view.setObjectName("galleryView")
        self.view.setIconSize(QSize(THUMB, THUMB))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setToolTip("Every finished render, newest first: 1–5 star, 0 clear, X reject, Delete moves to "
                             "the trash, Space or double-click shows it large")
        self.view.setModel(self.model)
        self.view.setItemDelegate(_ThumbDelegate(self.model, self.view))
        self.restore_button = QPushButton("Restore")
        self.restore_button.setObjectName("galleryRestore")
        self.restore_button.setToolTip("Make the picked render's exact request the current one (one undo step)")
        self.folder_button = QPushButton("Show in Folder")
        self.folder_button.setObjectName("galleryFolder")
        self.folder_button.setToolTip("Open the folder that holds the picked render")
        self.open_button = QPushButton("View")
        self.open_button.setObjectName("galleryOpen")
        self.open_button.setToolTip("The picked render large, with what made it (Space, or double-click)")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setObjectName("galleryCompare")
        self.compare_button.setToolTip("The two picked renders side by side (pick two with Ctrl+click)")
        self.tags = QLineEdit()
        self.tags.setObjectName("galleryTags")
        self.tags.setPlaceholderText("Tags, comma separated")
        self.tags.setToolTip("The picked renders' tags: type and press Enter (a tag shared by all of them can be "
                             "removed here; the filter's text finds tags)")
        self.trash_button = QPushButton("Move to Trash")
        self.trash_button.setObjectName("galleryTrash")
        self.trash_button.setToolTip("Move the picked renders' files to the system trash (Delete)")
        filters = QHBoxLayout()
        for widget in (self.models, self.text, self.rating, self.count):
            filters.addWidget(widget)
        buttons = QHBoxLayout()
        for button in (self.open_button, self.compare_button, self.restore_button, self.folder_button):
            buttons.addWidget(button)
        buttons.addWidget(self.tags, 1)
        buttons.addWidget(self.trash_button)
        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)
        self.models.currentIndexChanged.connect(lambda _i: self.reload())
        self.rating.currentIndexChanged.connect(lambda _i: self.reload())
        self.text.textChanged.connect(lambda _t: self.reload())
        self.view.rate.connect(self.rate_selected)
        self.view.trash.connect(self.trash_selected)
        self.view.view.connect(self.view_selected)
        self.view.doubleClicked.connect(lambda _index: self.view_selected())
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_context_menu)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._on_selection())
        self.open_button.clicked.connect(self.view_selected)
        self.compare_button.clicked.connect(self.view_selected)
        self.tags.returnPressed.connect(self.tag_selected)
        self.viewer: GalleryViewer | None = None
        self._shown_tags: set[str] = set()
        self._on_selection()
        self.restore_button.clicked.connect(self.restore_selected)
        self.folder_button.clicked.connect(self._show_folder)
        self.trash_button.clicked.connect(self.trash_selected)
        # after the session indexed them (the queue's own batch_done may reach this panel first)
        # new renders join at most once a second: each join reads the newest page of the index, and a fast queue
        # indexes several renders a second
        self._joining = QTimer(self)
        self._joining.setSingleShot(True)
        self._joining.setInterval(JOIN_MS)
        self._joining.timeout.connect(lambda: self.take_new() if self.isVisible() else None)
        session.gallery_changed.connect(self._on_gallery_changed)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.reload()

    def reload(self) -> None:
        """The view again from the index, with the filters shown (the newest first; thumbnails as they show)."""
        from studio.app.gallery import GalleryFilter  # (torch-free: the index module imports no torch)

        gallery = self.session.open_gallery()
        if gallery is None:
            return
        self.model.gallery = gallery
        known = [self.models.itemData(i) for i in range(self.models.count())]
        wanted = [""] + gallery.models()
        if known != wanted:
            current = self.models.currentData() or ""
            blocked = self.models.blockSignals(True)
            self.models.clear()
            for model_id in wanted:
                self.models.addItem(model_id or "All models", model_id)
            self.models.setCurrentIndex(max(0, wanted.index(current) if current in wanted else 0))
            self.models.blockSignals(blocked)
        _, least, rejected = RATINGS[self.rating.currentIndex()]
        self.model.set_filter(GalleryFilter(self.models.currentData() or "", self.text.text(), least, rejected))
        self.count.setText(f"{self.model.total:,} render{'s' if self.model.total != 1 else ''}")
        self._on_selection()  # a new filter picks nothing

    def _on_gallery_changed(self) -> None:
        self.model.unjoined = True
        if not self._joining.isActive():
            self._joining.start()

    def take_new(self) -> None:
        """Renders indexed since the view was filled join its top (the view is not reset: a user scrolling the
        gallery while a queue runs keeps their place); a new model in the index refreshes the filter's list."""
        gallery = self.session.open_gallery()
        if gallery is None or self.model.gallery is not gallery or self.model.where is None:
            self.reload()
            return
        if [self.models.itemData(i) for i in range(1, self.models.count())] != gallery.models():
            self.reload()
            return
        if self.model.take_new():
            self.count.setText(f"{self.model.total:,} render{'s' if self.model.total != 1 else ''}")

    def selected_ids(self) -> list[int]:
        """The picked items' ids, in row order (their pages read from the index if need be)."""
        return [item.id for item in self._selected_rows()]

    def _selected_rows(self) -> list:
        """The picked rows' items as the view holds them (kept fresh by this panel's own edits)."""
        rows = sorted(index.row() for index in self.view.selectedIndexes())
        return [item for row in rows if (item := self.model.item_at(row)) is not None]

    def _write(self, what: str, write) -> bool:
        """Run one write to the index; a write the index refuses (locked by another program past SQLite's wait, a
        full disk, a folder made read-only) is said in the messages, naming the index, and nothing else changes."""
        try:
            write()
            return True
        except (sqlite3.Error, StudioError, OSError) as exc:
            path = self.model.gallery.path if self.model.gallery is not None else "the gallery index"
            problem = getattr(exc, "problem", None) or str(exc)
            self.session.message.emit("error", f"Could not {what} in the gallery: {problem}", f"{path}: {exc}")
            return False

    def rate_selected(self, rating: int) -> None:
        """Rate every picked item in one write (all 10,000 picked with Ctrl+A too)."""
        ids = self.selected_ids()
        if ids:
            self._rate(ids, rating, "rate the picked renders")

    def rate_item(self, item_id: int, rating: int) -> None:
        self._rate([item_id], rating, "rate the render")

    def _rate(self, ids: list[int], rating: int, what: str) -> None:
        gallery = self.model.gallery
        if gallery is not None and self._write(what, lambda: gallery.set_ratings(ids, rating)):
            self._show_fresh(ids)

    def _show_fresh(self, ids: list[int]) -> None:
        """Items whose rating or tags were written: read once, shown in the rows and in the viewer."""
        fresh = self.model.refresh_items(ids)
        if self.viewer is not None:
            for item_id in self.viewer.shown_ids():
                if item_id in fresh:
                    self.viewer.refresh(fresh[item_id])

    def _picked(self) -> list:
        gallery = self.model.gallery
        if gallery is None:
            return []
        ids = self.selected_ids()
        found = gallery.items_by_id(ids)  # fresh from the index (ratings and tags change), a query per few hundred
        return [found[i] for i in ids if i in found]

    def _on_selection(self) -> None:
        picked = self._selected_rows()  # not read again from the index: a rubber band calls this at every move
        self.open_button.setEnabled(bool(picked))
        self.compare_button.setEnabled(len(picked) == 2)
        for button in (self.restore_button, self.folder_button, self.trash_button):
            button.setEnabled(bool(picked))
        self.tags.setEnabled(bool(picked))
        shared = set.intersection(*(set(item.tags) for item in picked)) if picked else set()
        self._shown_tags = shared
        self.tags.setText(", ".join(sorted(shared)))

    def tag_selected(self) -> None:
        """The tags typed for the picked items: added to each; a shared tag deleted from the text leaves them all."""
        gallery = self.model.gallery
        if gallery is None:
            return
        typed = {t.strip() for t in self.tags.text().split(",") if t.strip()}
        picked = self._picked()
        tags = {item.id: (set(item.tags) - self._shown_tags) | typed for item in picked}
        if not self._write("tag the picked renders", lambda: gallery.set_tags_of(tags)):
            return
        self._show_fresh([item.id for item in picked])
        self._on_selection()

    def view_selected(self) -> None:
        """The picked item large in the gallery's viewer (two picked: side by side); ←/→ walk the gallery."""
        rows = sorted(index.row() for index in self.view.selectedIndexes())
        if not rows:
            return
        other = self.model.item_at(rows[1]) if len(rows) == 2 else None
        self._viewer().show_items(_Rows(self.model), rows[0], other)

    def show_file(self, path: Path, title: str) -> None:
        """A grid or contact sheet just written, in the gallery's viewer."""
        self._viewer().show_file(path, title)

    def _viewer(self) -> GalleryViewer:
        if self.viewer is None:
            self.viewer = GalleryViewer(self)
            self.viewer.rate.connect(self.rate_item)
            self.viewer.restore.connect(self._restore_item)
            self.viewer.pin.connect(self.pin_image)
        return self.viewer

    def _restore_item(self, item_id: int) -> None:
        item = self.model.gallery.item(item_id) if self.model.gallery is not None else None
        if item is not None:
            self.session.restore_from_file(item.path)

    def restore_selected(self) -> None:
        ids = self.selected_ids()
        item = self.model.gallery.item(ids[0]) if ids and self.model.gallery is not None else None
        if item is not None:
            self.session.restore_from_file(item.path)

    def trash_selected(self) -> None:
        picked = [(item.id, item.path) for item in self._picked()]
        if picked:
            self.trash_files.emit(picked)

    def forget(self, item_ids: list[int]) -> None:
        """Drop items whose files went to the trash from the index and the view."""
        gallery = self.model.gallery
        if item_ids and gallery is not None:
            # the files are in the trash already: an index that will not forget them finds them gone next time
            self._write("forget the renders moved to the trash", lambda: gallery.forget(item_ids))
            self.reload()

    def context_menu(self, pos: QPoint) -> QMenu | None:
        """The menu a right-click at `pos` (viewport coordinates) opens: what the dock's buttons and keys do, for the
        picked renders (a right-click on a render not picked picks it alone); None between the renders."""
        index = self.view.indexAt(pos)
        if not index.isValid():
            return None
        if not self.view.selectionModel().isSelected(index):
            self.view.setCurrentIndex(index)  # picks it alone
        count = len(self.view.selectedIndexes())
        menu = QMenu(self)
        menu.setObjectName("galleryMenu")
        menu.addAction("View" + ("\tSpace" if count == 1 else ""), self.view_selected)
        menu.addAction("Compare", self.view_selected).setEnabled(count == 2)
        menu.addAction("Restore", self.restore_selected).setEnabled(count == 1)
        menu.addAction("Show in Folder", self._show_folder)
        menu.addAction("Copy Path" if count == 1 else f"Copy {count} Paths", self.copy_paths)
        menu.addSeparator()
        rate = menu.addMenu("Rate")
        for stars in range(1, 6):
            rate.addAction("★" * stars + f"\t{stars}", partial(self.rate_selected, stars))
        rate.addAction("Clear\t0", lambda: self.rate_selected(0))
        rate.addAction("Reject\tX", lambda: self.rate_selected(-1))
        menu.addAction("Tags…", self._edit_tags)
        menu.addSeparator()
        menu.addAction("Move to Trash\tDelete", self.trash_selected)
        return menu

    def _edit_tags(self) -> None:
        self.tags.setFocus()
        self.tags.selectAll()

    def _show_context_menu(self, pos: QPoint) -> None:
        menu = self.context_menu(pos)
        if menu is not None:
            menu.exec(self.view.viewport().mapToGlobal(pos))
            menu.deleteLater()

    def copy_paths(self) -> None:
        """The picked renders' file paths on the clipboard, one a line (to paste into a file manager or a shell)."""
        paths = [str(item.path) for item in self._selected_rows()]
        if paths:
            QGuiApplication.clipboard().setText("\n".join(paths))

    def _show_folder(self) -> None:
        ids = self.selected_ids()
        item = self.model.gallery.item(ids[0]) if ids and self.model.gallery is not None else None
        if item is not None:
            self.open_folder.emit(str(item.path.parent))

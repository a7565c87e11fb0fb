"""The history strip: thumbnails of the document's finished renders, newest at the right; a click restores one.

History changes after every finished preview, so the strip updates incrementally (usually only the last item
changes) and decodes each thumbnail PNG once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, QRect, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QIcon, QKeyEvent, QPainter, QPalette, QPixmap, QShowEvent
from PySide6.QtWidgets import (QAbstractItemView, QListView, QListWidget, QListWidgetItem, QStyle,
                               QStyledItemDelegate, QStyleOptionViewItem, QVBoxLayout, QWidget)

from studio.params import ParamTable
from studio.project import HistoryEntry
from studio.request import RenderRequest
from studio.ui.images import pixmap_from_png
from studio.ui.panels.thumbsize import MENU_HINT, ThumbSizeMenu

THUMB_HEIGHT = 48  # what studio.ui.images.thumbnail_png makes (the strip scales it to the size the user picks)
THUMB_MAX_WIDTH = 192
WIDTH_PER_HEIGHT = THUMB_MAX_WIDTH // THUMB_HEIGHT  # a thumbnail is at most this many times as wide as tall
PADDING = 3  # around a thumbnail, where the selection shows
TOOLTIP = f"Render history, newest at the right — click a render to restore its request (undoable); {MENU_HINT}"
PIXMAP_ROLE = Qt.ItemDataRole.UserRole + 1  # the thumbnail as decoded, drawn at the chosen height


def _seconds_text(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _created_text(created: str) -> str:
    if not created:
        return ""
    try:
        moment = datetime.fromisoformat(created[:-1] + "+00:00" if created.endswith("Z") else created)
    except ValueError:
        return created
    if moment.tzinfo is not None:
        moment = moment.astimezone()  # local time
    return moment.strftime("%Y-%m-%d %H:%M:%S")


MAX_SHOWN_TEXT = 60  # longer texts are shortened in a tooltip


def _shown(value, spec) -> str:
    """A param's value for a tooltip: numbers as the sliders show them, pictures and sounds by what they are."""
    kind = getattr(spec, "kind", None)
    if kind is not None and kind.value in ("image", "sound"):
        return f"a {'picture' if kind.value == 'image' else 'sound'}"
    if isinstance(value, float):
        default = getattr(spec, "default", 0.0)
        return f"{value:+.2f}" if not default else f"{value:.2f}"
    text = str(value)
    return text if len(text) <= MAX_SHOWN_TEXT else text[:MAX_SHOWN_TEXT - 1] + "…"


def history_tooltip(entry: HistoryEntry, model_name: str = "", table: ParamTable | None = None,
                    param_label: Callable[[str], str] | None = None) -> str:
    """A plain-text summary of a history entry's request: texts and choices by their titles, then the other params
    it sets (those at their default, such as a zero direction, left out). `table`: the model's specs, when known;
    `param_label`: a param's name for people ("Bold" for d0, a named direction), "" when it has none."""
    r: RenderRequest = entry.request
    lines = [f"Model: {model_name} ({r.model_id})" if model_name and model_name != r.model_id
             else f"Model: {r.model_id}"]
    if r.latent is not None:
        lines.append(f"Latent: explicit ({len(r.latent)} values)")
    else:
        lines.append(f"Seed: {r.seed}")
    others = []
    for name, value in r.params.items():
        spec = table.find(name) if table is not None else None
        default = spec.default if spec is not None else (0 if not isinstance(value, str) else None)
        if default is not None and value == default and not isinstance(value, str):
            continue
        kind = spec.kind.value if spec is not None else ("text" if isinstance(value, str) else "")
        if kind == "text" or (spec is None and isinstance(value, str) and len(value) <= MAX_SHOWN_TEXT):
            title = spec.title if spec is not None else name.replace("_", " ").capitalize()
            lines.append(f"{title}: “{_shown(value, spec)}”")
        elif kind == "choice" and spec is not None:  # only a spec has the choice kind
            labels: dict[object, str] = dict(spec.choices)  # looked up with any param value
            lines.append(f"{spec.title}: {labels.get(value, value)}")
        else:
            label = param_label(name) if param_label is not None else ""
            others.append(f"{label} ({name}) {_shown(value, spec)}" if label else f"{name} {_shown(value, spec)}")
    if others:
        lines.append("Params: " + ", ".join(others))
    if r.width is not None or r.height is not None:
        lines.append(f"Size: {r.width or '?'} × {r.height or '?'}")
    lines.append(f"Rendered in {_seconds_text(entry.seconds)}")
    created = _created_text(entry.created)
    if created:
        lines.append(f"Created: {created}")
    lines.append("Click to restore this request")
    return "\n".join(lines)


def thumb_size(pixmap: QPixmap | None, height: int) -> QSize:
    """A thumbnail's size drawn `height` px tall (its aspect kept, at most WIDTH_PER_HEIGHT × as wide)."""
    if pixmap is None or pixmap.isNull() or pixmap.height() <= 0:
        return QSize(height, height)
    ratio = pixmap.width() / pixmap.height()
    width = round(height * min(ratio, WIDTH_PER_HEIGHT))
    if ratio > WIDTH_PER_HEIGHT:  # a very wide one is fitted into the widest tile, less tall
        return QSize(width, max(1, round(width / ratio)))
    return QSize(max(1, width), height)


class _ThumbnailDelegate(QStyledItemDelegate):
    """Just the thumbnail, at the chosen height, on the item background (which shows hover and selection): no
    caption row."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.height = THUMB_HEIGHT

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        pixmap = index.data(PIXMAP_ROLE)
        size = thumb_size(pixmap if isinstance(pixmap, QPixmap) else None, self.height)
        return QSize(size.width(), self.height) + QSize(2 * PADDING, 2 * PADDING)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        opt.showDecorationSelected = True  # the highlight frames the whole thumbnail, not a (missing) caption
        widget = opt.widget
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, opt, painter, widget)
        inner = QRect(opt.rect).adjusted(PADDING, PADDING, -PADDING, -PADDING)
        pixmap = index.data(PIXMAP_ROLE)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            size = thumb_size(pixmap, self.height)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(inner.center())
            painter.save()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawPixmap(target, pixmap)
            painter.restore()
            return
        icon = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(icon, QIcon):
            icon.paint(painter, inner, Qt.AlignmentFlag.AlignCenter)


class HistoryStrip(QWidget):
    """A horizontal strip of the document's history; clicking item i calls `session.restore_history(i)`."""

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("historyStrip")
        self.session = session
        self._shown: list[HistoryEntry] = []  # parallel to the list's items
        self._icons: dict[bytes, QIcon] = {}  # thumbnail PNG bytes -> icon (b"": the placeholder)

        self._list = QListWidget(self)
        self._list.setObjectName("historyList")
        self._list.setViewMode(QListView.ViewMode.IconMode)
        self._list.setFlow(QListView.Flow.LeftToRight)
        self._list.setWrapping(False)
        self._list.setMovement(QListView.Movement.Static)
        self._list.setResizeMode(QListView.ResizeMode.Adjust)
        self._list.setIconSize(QSize(THUMB_MAX_WIDTH, THUMB_HEIGHT))
        self._list.setSpacing(2)
        self._delegate = _ThumbnailDelegate(self._list)
        self._list.setItemDelegate(self._delegate)
        self._list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._list.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self._list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._list.setDragEnabled(False)
        self._list.setToolTip(TOOLTIP)
        self._list.installEventFilter(self)
        self.setToolTip(TOOLTIP)
        self.thumb_menu = ThumbSizeMenu(self._list, "thumbnails")
        self.thumb_menu.chosen.connect(self.set_thumb_size)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._list)

        self._list.itemClicked.connect(self._on_item_clicked)

        session.history_changed.connect(self._on_history_changed)
        session.request_changed.connect(self._on_request_changed)

        self._on_history_changed()

    # --- public -----------------------------------------------------------------------------------------------------
    def list_widget(self) -> QListWidget:
        return self._list

    def set_thumb_size(self, name: str) -> None:
        """Show the thumbnails at size `name` (small, medium, large)."""
        self.thumb_menu.set_size(name)
        height = self.thumb_menu.height
        if height == self._delegate.height:
            return
        self._delegate.height = height
        self._list.setIconSize(QSize(height * WIDTH_PER_HEIGHT, height))
        self._list.doItemsLayout()
        self.updateGeometry()  # the strip asks for the height of its thumbnails
        self._scroll_to_newest()

    def sizeHint(self) -> QSize:
        return QSize(480, self._delegate.height + 2 * PADDING + 2 * self._list.spacing() + 2 * self._list.frameWidth()
                     + self._list.horizontalScrollBar().sizeHint().height() + 2)

    def minimumSizeHint(self) -> QSize:
        return QSize(120, self.sizeHint().height())

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self, self._scroll_to_newest)  # filled while hidden: the scroll range is known only now

    # --- session signals --------------------------------------------------------------------------------------------
    def _on_history_changed(self) -> None:
        new = list(self.session.document.history)
        old = self._shown
        # The usual changes: one entry appended, the last one replaced, the oldest dropped at the limit.
        start = next((i for i, entry in enumerate(old) if new and entry is new[0]), len(old))
        same = 0
        while start + same < len(old) and same < len(new) and old[start + same] is new[same]:
            same += 1
        for _ in range(start):
            self._list.takeItem(0)
        while self._list.count() > same:
            self._list.takeItem(self._list.count() - 1)
        for entry in new[same:]:
            self._list.addItem(self._make_item(entry))
        self._shown = new
        if len(self._icons) > len(new) + 1:  # forget thumbnails no longer shown
            live = {entry.thumbnail_png for entry in new}
            self._icons = {k: v for k, v in self._icons.items() if k in live}
        self._on_request_changed(self.session.request)
        if same < len(new):
            self._scroll_to_newest()

    def _on_request_changed(self, request: RenderRequest | None) -> None:
        row = next((i for i in range(len(self._shown) - 1, -1, -1) if self._shown[i].request == request), -1)
        if row < 0:
            self._list.clearSelection()
            self._list.setCurrentItem(None)  # type: ignore[call-overload]  # Qt takes nullptr; the stub forgot None
        elif row != self._list.currentRow() or not self._list.item(row).isSelected():
            self._list.setCurrentRow(row)

    # --- items ------------------------------------------------------------------------------------------------------
    def _make_item(self, entry: HistoryEntry) -> QListWidgetItem:
        icon = self._icon(entry.thumbnail_png)
        item = QListWidgetItem(icon, "")
        if entry.thumbnail_png:
            item.setData(PIXMAP_ROLE, icon.pixmap(icon.availableSizes()[0]) if icon.availableSizes() else None)
        model = self.session.entry_for(entry.request.model_id)
        ok = model is not None and model.ok and model.manifest is not None
        name = model.manifest.name if ok else ""
        names = self.session.directions.names  # named directions of the current model (studio.app.direction_sets)
        current = names.entry
        labels = names.label if current is not None and current.id == entry.request.model_id else None
        item.setToolTip(history_tooltip(entry, name, model.parameters if ok else None, labels))
        return item

    def _icon(self, png: bytes) -> QIcon:
        icon = self._icons.get(png)
        if icon is None:
            pixmap = pixmap_from_png(png) if png else QPixmap()
            icon = QIcon(pixmap) if not pixmap.isNull() else self._placeholder()
            self._icons[png] = icon
        return icon

    def _placeholder(self) -> QIcon:
        pixmap = QPixmap(THUMB_HEIGHT, THUMB_HEIGHT)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        palette = self.palette()
        painter.setPen(palette.color(QPalette.ColorRole.Mid))
        painter.setBrush(palette.color(QPalette.ColorRole.Base))
        painter.drawRoundedRect(QRectF(2.5, 2.5, THUMB_HEIGHT - 5, THUMB_HEIGHT - 5), 4, 4)
        painter.end()
        return QIcon(pixmap)

    def _scroll_to_newest(self) -> None:
        last = self._list.item(self._list.count() - 1)
        if last is None:
            return
        self._list.doItemsLayout()  # icon mode lays out lazily: make the scroll range include the new item now
        bar = self._list.horizontalScrollBar()
        bar.setValue(bar.maximum())

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        row = self._list.row(item)
        if 0 <= row < len(self.session.document.history):
            self.session.restore_history(row)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (watched is self._list and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent)
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)):
            item = self._list.currentItem()
            if item is not None:
                self._on_item_clicked(item)
            return True
        return super().eventFilter(watched, event)

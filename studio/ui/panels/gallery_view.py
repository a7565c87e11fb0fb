"""The gallery's full view: one render large (zoom and pan as on the preview), or two side by side to compare, with
what made them (model, seed, prompt, rating, tags, file). ←/→ step through the gallery's items in its order, 1–5
star, 0 clears, X rejects, F fits, P compares the current render with it (the main window's compare view), Enter
restores the item's request, Esc closes. Grids and contact sheets open here too
(`show_file`). Pictures are read on a thread pool, never on the GUI thread: a large PNG does not stall the window."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QImageReader, QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from studio.ui.canvas import PreviewCanvas

MAX_PIXELS = 64 * 1024 * 1024  # a picture larger than this is read scaled down (a hostile PNG's header can say 2³¹²)


class Items(Protocol):
    """What the viewer walks: the gallery's items in its order (read as they are asked for)."""

    def __len__(self) -> int: ...

    def __getitem__(self, row: int) -> Any: ...


class _Signals(QObject):
    loaded = Signal(int, QImage, str)  # token, picture (null: could not be read), the reader's error


class _ReadJob(QRunnable):
    def __init__(self, token: int, path: Path, signals: _Signals):
        super().__init__()
        self.token, self.path, self.signals = token, path, signals

    def run(self) -> None:
        reader = QImageReader(str(self.path))
        reader.setAutoTransform(True)
        size = reader.size()
        if size.isValid() and size.width() * size.height() > MAX_PIXELS:
            scale = (MAX_PIXELS / (size.width() * size.height())) ** 0.5
            reader.setScaledSize(size * scale)
        image = reader.read()
        self.signals.loaded.emit(self.token, image, reader.errorString() if image.isNull() else "")


def describe(item) -> str:
    """One line of what made a gallery item."""
    stars = "rejected" if item.rejected else ("★" * item.rating if item.rating else "unrated")
    parts = [item.model_id or "?", f"seed {item.seed}" if item.seed else item.source]
    if item.prompt:
        parts.append(f"“{item.prompt[:80]}”")
    parts.append(stars)
    if item.tags:
        parts.append("tags: " + ", ".join(item.tags))
    return " · ".join(parts)


class _Side(QWidget):
    """A label over a canvas: one of the pictures shown."""

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.label = QLabel()
        self.label.setObjectName(f"{name}Label")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.canvas = PreviewCanvas()
        self.canvas.setObjectName(f"{name}Canvas")
        self.canvas.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the viewer's keys (1–5 rate) are not the canvas's
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.canvas, 1)
        self.token = 0


class GalleryViewer(QWidget):
    """A window of its own (non-modal): the gallery's items large. Signals ask the panel to rate and restore, so the
    index is written in one place."""

    rate = Signal(int, int)  # item id, rating (-1 rejects)
    restore = Signal(int)  # item id
    pin = Signal(QImage, str)  # the picture shown and its label: compare the current render with it

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("galleryViewer")
        self.setWindowTitle("Gallery")
        self.items: Items = []  # the gallery's items, in its order (←/→ walk them; read as asked for)
        self.index = -1
        self.other = None  # the item compared with, or None
        self._tokens = 0
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self.left, self.right = _Side("viewerLeft"), _Side("viewerRight")
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setObjectName("viewerSplit")
        self.split.addWidget(self.left)
        self.split.addWidget(self.right)
        self.split.setChildrenCollapsible(False)
        self.prev_button = QPushButton("◀ Previous")
        self.prev_button.setObjectName("viewerPrevious")
        self.prev_button.setToolTip("The newer item (←)")
        self.next_button = QPushButton("Next ▶")
        self.next_button.setObjectName("viewerNext")
        self.next_button.setToolTip("The older item (→)")
        self.restore_button = QPushButton("Restore")
        self.restore_button.setObjectName("viewerRestore")
        self.restore_button.setToolTip("Make this render's exact request the current one (Enter; one undo step)")
        self.pin_button = QPushButton("Compare with Current")
        self.pin_button.setObjectName("viewerPin")
        self.pin_button.setToolTip("Pin this render in the main window's compare view, beside the current one (P)")
        self.fit_button = QPushButton("Fit")
        self.fit_button.setObjectName("viewerFit")
        self.fit_button.setToolTip("Fit the picture(s) to the window (0 on the picture)")
        self.position = QLabel()
        self.position.setObjectName("viewerPosition")
        row = QHBoxLayout()
        for widget in (self.prev_button, self.next_button, self.position):
            row.addWidget(widget)
        row.addStretch(1)
        row.addWidget(self.fit_button)
        row.addWidget(self.pin_button)
        row.addWidget(self.restore_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.split, 1)
        layout.addLayout(row)
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.restore_button.clicked.connect(self._restore)
        self.fit_button.clicked.connect(self._fit)
        self.pin_button.clicked.connect(self._pin)
        for button in (self.prev_button, self.next_button, self.fit_button, self.restore_button, self.pin_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # a focused button would take ←/→ to move the focus
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.resize(900, 640)

    # --- what is shown ----------------------------------------------------------------------------------------------
    def show_items(self, items: Items, index: int, other=None) -> None:
        """Show `items[index]` (and `other` beside it to compare); ←/→ walk `items`."""
        self.items, self.index, self.other = items, index, other
        self._show()
        self._raise()

    def show_file(self, path: Path, title: str) -> None:
        """A picture that is not (yet) a gallery item: a grid or contact sheet just written."""
        self.items, self.index, self.other = [], -1, None
        self.right.hide()
        self.left.label.setText(f"{title} · {path}")
        self._read(self.left, Path(path))
        self._update_buttons()
        self.setWindowTitle(f"Gallery — {Path(path).name}")
        self._raise()

    @property
    def current(self):
        return self.items[self.index] if 0 <= self.index < len(self.items) else None

    def step(self, delta: int) -> None:
        if self.items and 0 <= self.index + delta < len(self.items):
            self.index += delta
            self._show()

    def shown_ids(self) -> list[int]:
        """The ids of the items on screen (none while a file that is not an item shows)."""
        return [item.id for item in (self.current, self.other) if item is not None]

    def refresh(self, item) -> None:
        """An item changed in the index (its rating or tags): its labels again."""
        self._label(fresh=item)

    def _show(self) -> None:
        item = self.current
        if item is None:
            return
        self._read(self.left, item.path, item.kind)
        if self.other is not None:
            self.right.show()
            self._read(self.right, self.other.path, self.other.kind)
        else:
            self.right.hide()
        self._label()
        self._update_buttons()
        self.setWindowTitle(f"Gallery — {item.path.name}" + (f" and {self.other.path.name}" if self.other else ""))

    def _label(self, fresh=None) -> None:
        """The labels again (`fresh`: an item whose rating or tags changed; the gallery's rows hold it too)."""
        if fresh is not None and self.other is not None and self.other.id == fresh.id:
            self.other = fresh
        item = self.current
        if item is None:
            return
        if fresh is not None and item.id == fresh.id:
            item = fresh
        self.left.label.setText(describe(item))
        self.left.label.setToolTip(str(item.path))
        if self.other is not None:
            self.right.label.setText(describe(self.other))
            self.right.label.setToolTip(str(self.other.path))
        self.position.setText(f"{self.index + 1:,} of {len(self.items):,}" if self.items else "")

    def _update_buttons(self) -> None:
        self.pin_button.setEnabled(self.left.canvas.image() is not None)
        self.prev_button.setEnabled(self.index > 0)
        self.next_button.setEnabled(0 <= self.index < len(self.items) - 1)
        self.restore_button.setEnabled(self.current is not None and bool(self.current.request_json))

    def _read(self, side: _Side, path: Path, kind: str = "image") -> None:
        self._tokens += 1
        side.token = self._tokens
        if kind != "image":
            side.canvas.set_image(None)
            side.canvas.set_placeholder(f"A sound: {path.name}\nRestore it to hear it")
            return
        side.canvas.set_image(None)
        side.canvas.set_placeholder(f"Reading {path.name}…")
        self.pool.start(_ReadJob(side.token, Path(path), self._signals))

    def _on_loaded(self, token: int, image: QImage, error: str) -> None:
        for side in (self.left, self.right):
            if side.token == token:
                if image.isNull():
                    side.canvas.set_placeholder(f"Cannot read this picture: {error or 'unknown format'}")
                else:
                    side.canvas.set_image(image)
                    side.canvas.fit()
                    self._update_buttons()

    def _fit(self) -> None:
        for side in (self.left, self.right):
            side.canvas.fit()

    def _pin(self) -> None:
        image = self.left.canvas.image()
        if image is not None:
            self.pin.emit(image, self.left.label.text())

    def _restore(self) -> None:
        if self.current is not None:
            self.restore.emit(self.current.id)

    def _raise(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()
        self.setFocus()  # the viewer's keys are its own

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        ratings = {Qt.Key.Key_0: 0, Qt.Key.Key_1: 1, Qt.Key.Key_2: 2, Qt.Key.Key_3: 3, Qt.Key.Key_4: 4,
                   Qt.Key.Key_5: 5, Qt.Key.Key_X: -1}
        if key == Qt.Key.Key_Escape:
            self.close()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Up):
            self.step(-1)
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Down):
            self.step(1)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._restore()
        elif key == Qt.Key.Key_F:
            self._fit()
        elif key == Qt.Key.Key_P:
            self._pin()
        elif event.modifiers() == Qt.KeyboardModifier.NoModifier and key in ratings and self.current is not None:
            self.rate.emit(self.current.id, ratings[Qt.Key(key)])
        else:
            super().keyPressEvent(event)

"""The main window's layout: the preview gets the room, docks size to their content, the window fits the screen.

- At first start the window takes 1280 × 820 or 85 % of a bigger screen's available area, never more than that area
  (a 1280 × 720 laptop gets a window that fits, never one whose bottom is off the screen).
- The bottom docks (History, Messages, Variations, Timeline) start collapsed to their tabs (no title, no content):
  clicking a tab (or a window action that raises one: an error, Ctrl+Shift+V, Ctrl+K) opens them with room for the
  one in front; clicking the open tab again collapses them. Whether they are collapsed is remembered.
- On every model switch (and at the first show) the right column is split by content: Conditions as tall as its controls (up to what leaves
  the Latent panel its share), the rest to Latent. Both scroll when their controls do not fit, so no dock asks for
  more height than a 720-px screen has.
- A layout saved by an earlier version (before LAYOUT_VERSION) is not restored, once: those states hold the old
  200-px History dock and a right column split for other panels, and nothing tells them apart from a user's choice.
  The window's size and place are kept (fitted to the screen).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QMouseEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabBar, QWidget

LAYOUT_VERSION = 2  # 2: collapsible bottom docks, right column split by content (issue 17)
VERSION_KEY = "layoutVersion"
COLLAPSED_KEY = "bottomDocksCollapsed"
DEFAULT_SIZE = QSize(1280, 820)
SCREEN_SHARE = 0.85  # a first start on a big screen takes this much of it
OPEN_HEIGHT = 110  # a bottom dock opened from its tab gets at least this, or what its content asks for
OPEN_SHARE = 0.35  # … but never more than this share of the window's height
LATENT_SHARE = 0.4  # Conditions leaves the Latent panel at least this share of the right column when both overflow


def fit_to_screen(window: QWidget, wanted: QSize | None = None) -> None:
    """Size the window to `wanted` (None: the first-start size), bounded by its screen's available area (and moved
    inside it)."""
    # the screen the (restored) window is on, not only the primary one: a window kept on a second monitor stays there
    screen = QGuiApplication.screenAt(window.geometry().center()) or window.screen()
    if screen is None:
        window.resize(wanted or DEFAULT_SIZE)
        return
    area = screen.availableGeometry()
    if wanted is None:
        wanted = DEFAULT_SIZE.expandedTo(QSize(int(area.width() * SCREEN_SHARE), int(area.height() * SCREEN_SHARE)))
    size = wanted.boundedTo(area.size()).expandedTo(window.minimumSizeHint().boundedTo(area.size()))
    window.resize(size)
    x = min(max(window.x(), area.left()), area.right() + 1 - size.width())
    y = min(max(window.y(), area.top()), area.bottom() + 1 - size.height())
    window.move(x, y)


def saved_layout_usable(settings: QSettings) -> bool:
    """Whether the window state in `settings` was saved by this layout version (an older one is not restored)."""
    try:
        return int(str(settings.value(VERSION_KEY, 0))) >= LAYOUT_VERSION
    except ValueError:
        return False


def mark_layout_version(settings: QSettings) -> None:
    settings.setValue(VERSION_KEY, LAYOUT_VERSION)


class BottomDocks(QObject):
    """The bottom docks collapse to their tabs together, and open (with room) when one is asked for.
    `shown`: the window was first shown and laid out (the time to size docks by what they hold)."""

    shown = Signal()

    def __init__(self, window: QMainWindow, docks: Sequence[QDockWidget]):
        super().__init__(window)
        self.window = window
        self.docks = list(docks)
        self.collapsed = False
        self._armed = False  # visibility changes of the window's own first show open nothing
        self._bars: list[QTabBar] = []
        self._front = self.docks[0]  # the bottom dock in front (the window raises the first)
        for dock in self.docks:
            dock.visibilityChanged.connect(lambda visible, d=dock: self._on_visibility(d, visible))
        window.installEventFilter(self)
        self._watch_tab_bars()

    # --- public -----------------------------------------------------------------------------------------------------
    def collapse(self) -> None:
        self.collapsed = True
        for dock in self.docks:
            if dock.widget() is not None:
                dock.widget().hide()
            if dock.titleBarWidget() is None:
                dock.setTitleBarWidget(_bare_title())  # collapsed to its tab alone
        shown = [d for d in self.docks if d.isVisibleTo(self.window) and not d.isFloating()]
        if shown:
            self.window.resizeDocks(shown, [1] * len(shown), Qt.Orientation.Vertical)  # down to the tab bar

    def expand(self, dock: QDockWidget | None = None) -> None:
        """Open the bottom docks, `dock` in front, with room for its content."""
        was = self.collapsed
        self.collapsed = False
        for each in self.docks:
            if each.widget() is not None:
                each.widget().show()
            if was and isinstance(each.titleBarWidget(), _BareTitle):
                old = each.titleBarWidget()
                each.setTitleBarWidget(None)  # type: ignore[arg-type]  # Qt's own title again (Qt takes nullptr)
                old.deleteLater()
        if dock is None:
            dock = next((d for d in self.docks if not d.visibleRegion().isEmpty()), self.docks[0])
        if was and not dock.isFloating():
            height = min(max(OPEN_HEIGHT, dock.widget().sizeHint().height() if dock.widget() else 0),
                         int(self.window.height() * OPEN_SHARE))
            self.window.resizeDocks([dock], [height], Qt.Orientation.Vertical)

    def toggle(self, dock: QDockWidget) -> None:
        if self.collapsed:
            self.expand(dock)
        else:
            self.collapse()

    def arm(self) -> None:
        """From now on a bottom dock that comes forward (its tab clicked, raised by an action) opens them."""
        self._armed = True

    def _watch_tab_bars(self) -> None:
        # kept: events name a bar by the wrapper PySide made here (Qt's private QMainWindowTabBar is no QTabBar to
        # PySide when it wraps it afresh)
        self._bars = self.window.findChildren(QTabBar)
        for bar in self._bars:
            bar.removeEventFilter(self)  # (installed once)
            bar.installEventFilter(self)

    def _first_shown(self) -> None:
        if self.collapsed:
            self.collapse()  # again: sizes set before the first show are only a request
        self.arm()
        self.shown.emit()

    # --- events -----------------------------------------------------------------------------------------------------
    def _on_visibility(self, dock: QDockWidget, visible: bool) -> None:
        """Another bottom dock came forward (its tab clicked, or raised): open them. Collapsing re-lays the docks out
        and reports the one in front visible again: that opens nothing."""
        if not visible:
            return
        before, self._front = self._front, dock
        if dock is not before and self.collapsed and self._armed:
            QTimer.singleShot(0, self, lambda: self.expand(dock))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if watched is self.window and kind == QEvent.Type.Show and not self._armed:
            QTimer.singleShot(0, self, self._first_shown)
        elif watched is self.window and kind == QEvent.Type.ChildAdded:  # maybe the tabs of tabified docks, made
            QTimer.singleShot(0, self, self._watch_tab_bars)  # by the window's layout (a QTabBar once constructed)
        elif (kind in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick)
              and isinstance(event, QMouseEvent) and event.button() == Qt.MouseButton.LeftButton
              and (bar := next((b for b in self._bars if b is watched), None)) is not None):
            index = bar.tabAt(event.position().toPoint())
            dock = self._dock_of_tab(bar, index)
            if dock is not None and index == bar.currentIndex():  # the tab in front: open or collapse
                self.toggle(dock)
            elif dock is not None and self.collapsed:  # another tab comes forward (once the bar has switched)
                QTimer.singleShot(0, self, lambda: self.expand(dock))
        return False

    def _dock_of_tab(self, bar: QTabBar, index: int) -> QDockWidget | None:
        if index < 0:
            return None
        title = bar.tabText(index)
        return next((d for d in self.docks if d.windowTitle() == title), None)


class _BareTitle(QWidget):
    """The title bar of a collapsed bottom dock: nothing (the dock's tab names it)."""

    def sizeHint(self) -> QSize:
        return QSize(0, 0)  # a plain QWidget's (−1, −1) would make the dock's minimum height −1 (and Qt warn)


def _bare_title() -> QWidget:
    return _BareTitle()


def fit_right_column(window: QMainWindow, conditions: QDockWidget, latent: QDockWidget) -> None:
    """Split the right column by content: Conditions as tall as its controls (leaving Latent its share when both
    overflow), the rest to Latent (or whichever of its tab group is in front)."""
    partner = latent if latent.isVisibleTo(window) else None
    if partner is None:
        partner = next((d for d in window.tabifiedDockWidgets(latent) if d.isVisibleTo(window)), None)
    if not conditions.isVisibleTo(window) or partner is None or conditions.isFloating() or partner.isFloating():
        return
    # New controls show, and their size reaches the dock, through a chain of posted events (a queued show, then a
    # layout request per level): deliver them now, so the hints below are those of the new model's controls.
    for _ in range(4):
        QCoreApplication.sendPostedEvents()
    total = conditions.height() + partner.height()
    if total <= 0:
        return
    want = conditions.sizeHint().height()
    room_for_latent = partner.sizeHint().height()
    cap = max(int(total * (1 - LATENT_SHARE)), total - room_for_latent)
    height = max(min(want, cap), conditions.minimumSizeHint().height())
    window.resizeDocks([conditions, partner], [height, total - height], Qt.Orientation.Vertical)


def reach_report(window: QMainWindow, panels: Sequence[QWidget]) -> dict:
    """For the geometry report: where each control of `panels` is (its editor's rectangle in window coordinates) and
    how a user reaches it — "screen" (shown whole inside the window), "scroll" (inside a scroll area on screen whose
    range reaches it), or "no"."""
    from PySide6.QtWidgets import QScrollArea

    found: dict[str, dict] = {}
    inside = window.rect()
    for panel in panels:
        for name, control in getattr(panel, "controls", {}).items():
            editor = getattr(control, "editor", None) or control
            if not editor.isVisibleTo(panel):
                continue  # hidden by the panel (raw dimensions not asked for)
            top_left = editor.mapTo(window, editor.rect().topLeft())
            rect = editor.rect().translated(top_left)
            area = _scroll_area_of(editor)
            how = "no"
            if area is not None and area.widget() is not None:
                viewport = area.viewport().rect().translated(area.viewport().mapTo(window, area.viewport().rect()
                                                                                   .topLeft()))
                content = area.widget()
                at = editor.mapTo(content, editor.rect().topLeft())
                shown = viewport.contains(rect) and inside.contains(rect)
                bar = area.verticalScrollBar()
                reachable = (inside.contains(viewport)  # the scroll area itself is on screen, not cut off
                             and viewport.left() <= rect.left() and rect.right() <= viewport.right()  # its width
                             and editor.height() <= viewport.height()  # scrolled to, it shows whole
                             and 0 <= at.y() and at.y() + editor.height() <= viewport.height() + bar.maximum())
                how = "screen" if shown else "scroll" if reachable and isinstance(area, QScrollArea) else "no"
            elif inside.contains(rect) and editor.isVisible():
                how = "screen"
            found[f"{panel.objectName()}/{name}"] = {"rect": [rect.x(), rect.y(), rect.width(), rect.height()],
                                                     "reach": how}
    return found


def _scroll_area_of(widget: QWidget):
    from PySide6.QtWidgets import QScrollArea

    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    return parent


def remember_thumb_sizes(settings: QSettings, panels: dict[str, QWidget]) -> None:
    """Each panel's thumbnail size (history strip, variation tiles) from `settings`, and kept there when the user
    picks another (panels with `set_thumb_size` and a `thumb_menu`, studio.ui.panels.thumbsize)."""
    for key, panel in panels.items():
        stored = settings.value(f"thumbnails/{key}")
        if isinstance(stored, str):  # QSettings hands back whatever the file holds; unknown names are ignored
            panel.set_thumb_size(stored)  # type: ignore[attr-defined]
        panel.thumb_menu.chosen.connect(  # type: ignore[attr-defined]
            lambda name, k=key: settings.setValue(f"thumbnails/{k}", name))

"""The scroll wheel scrolls panels; it edits a value only in the widget the user chose.

Qt's sliders, spin boxes and combo boxes change their value under a passing wheel, so scrolling a panel full of them
(the Latent panel's directions, the Timeline's mapping gains) silently edits the document. One application-wide
event filter fixes that for every panel and dialog at once:

- every slider, spin box and combo box loses `Qt.WheelFocus` when it is polished (it keeps `Qt.StrongFocus`: a click
  or Tab still focuses it), so a wheel never gives it the focus;
- a wheel over such a widget that does not have the focus is refused by it (ignored, not handled) and Qt hands it on
  to the parent widgets, so the nearest scroll area that can scroll does, and one that cannot passes it further up;
- a focused one (clicked, or reached with Tab) takes the wheel as before.

Scroll bars are sliders too and always take the wheel; the preview canvas and other widgets with their own wheel
(zoom) are not value widgets and keep it.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSlider, QAbstractSpinBox, QComboBox, QScrollBar, QWidget

VALUE_WIDGETS = (QAbstractSlider, QAbstractSpinBox, QComboBox)


def is_value_widget(obj: QObject) -> bool:
    """A widget whose value a wheel would change (a scroll bar's value is its scroll position: not one)."""
    return isinstance(obj, VALUE_WIDGETS) and not isinstance(obj, QScrollBar)


class WheelGuard(QObject):
    """The application-wide filter described above (install with `install_wheel_guard`)."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind == QEvent.Type.Polish and is_value_widget(obj):
            guard_focus(obj)  # type: ignore[arg-type]
        elif kind == QEvent.Type.Wheel and is_value_widget(obj) and not obj.hasFocus():  # type: ignore[attr-defined]
            event.ignore()  # not ours: Qt goes on to the parents (the scroll area around us)
            return True
        return False


def guard_focus(widget: QWidget) -> None:
    """Keep a value widget's click and Tab focus, drop the focus a passing wheel would give it."""
    policy = widget.focusPolicy()
    if policy == Qt.FocusPolicy.WheelFocus:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)


def install_wheel_guard(app: QCoreApplication | None = None) -> WheelGuard:
    """Install the guard on the application once (again: the same guard) and return it. Widgets made before are
    guarded too."""
    app = app or QCoreApplication.instance()
    if app is None:
        raise RuntimeError("install_wheel_guard needs a QApplication")
    existing = app.findChild(WheelGuard, "wheelGuard")
    if isinstance(existing, WheelGuard):
        return existing
    guard = WheelGuard(app)
    guard.setObjectName("wheelGuard")
    app.installEventFilter(guard)
    from PySide6.QtWidgets import QApplication

    if isinstance(app, QApplication):
        for widget in app.allWidgets():
            if is_value_widget(widget):
                guard_focus(widget)
    return guard

"""Plain callbacks for the application core: what Qt signals are to the window, with no Qt.

    changed = Listeners()
    stop = changed.connect(print)
    changed("seed 5")  # print("seed 5")
    stop()

Callbacks run on the thread that notifies (the core is driven from one thread: the window's GUI thread, or the CLI's
main thread). An exception in a callback reaches the notifier: the core has no place to hide it.
"""

from __future__ import annotations

from typing import Any, Callable


class Listeners:
    """The callbacks of one event of a core object; calling it calls each of them with the same arguments."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call `callback` on every notification from now on; returns a function that disconnects it."""
        self._callbacks.append(callback)
        return lambda: self.disconnect(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def __call__(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)

    def __len__(self) -> int:
        return len(self._callbacks)

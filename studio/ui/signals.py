"""Ctrl+C in the terminal and SIGTERM quit the app cleanly.

While Qt's event loop runs, Python does not run, so a Python signal handler would wait for the next Python slot (a
KeyboardInterrupt traceback at some random moment, the app running on). Here the C-level handler also writes a byte to
a socket (`signal.set_wakeup_fd`); a QSocketNotifier on its other end wakes the loop, the Python handler has run by
then (it only records the signal), and the notifier's slot asks the window to quit for that signal: no question about
unsaved changes, the autosave slot kept when there are edits (so the next start offers to restore them) and removed
when there are none. The exit code is 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports
a process ended by it.
"""

from __future__ import annotations

import logging
import signal
import socket
from typing import Callable

from PySide6.QtCore import QObject, QSocketNotifier, Slot

log = logging.getLogger(__name__)

SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class SignalQuit(QObject):
    """Turns SIGINT / SIGTERM into `quit(signum)` on the GUI thread; `exit_code` is 128 + the first one's number."""

    def __init__(self, quit: Callable[[int], None], parent: QObject | None = None):
        super().__init__(parent)
        self._quit = quit
        self.received: int | None = None
        self._handled = False
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        self.notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read, self)
        self.notifier.activated.connect(self._wake)

    @property
    def exit_code(self) -> int | None:
        return 128 + self.received if self.received is not None else None

    def _on_signal(self, signum: int, _frame) -> None:
        """The Python handler: runs between two Python steps, so it only records; `_wake` acts."""
        if self.received is None:
            self.received = signum

    @Slot()
    def _wake(self) -> None:
        try:
            while self._reader.recv(64):
                pass
        except OSError:  # drained (BlockingIOError) or closed
            pass
        if self.received is not None and not self._handled:
            self._handled = True
            log.info("quitting on %s", signal.Signals(self.received).name)
            self._quit(self.received)

    def restore(self) -> None:
        """Put back the previous handlers and wake-up fd (after the event loop ended)."""
        self.notifier.setEnabled(False)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_fd)
        self._reader.close()
        self._writer.close()

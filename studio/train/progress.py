"""A plain-text progress bar for long training: step, loss, throughput, time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int, start: int = 0, unit: str = "img", stream: TextIO | None = None,
                 width: int = 24, min_interval: float = 0.5):
        self.total, self.step, self.unit = total, start, unit
        self.stream = stream or sys.stderr
        self.width, self.min_interval = width, min_interval
        self._t0 = time.perf_counter()
        self._start = start
        self._items = 0
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, step: int, items: int, **figures: float) -> None:
        self.step = step
        self._items += items
        now = time.perf_counter()
        if now - self._last < self.min_interval and step < self.total:
            return
        self._last = now
        elapsed = now - self._t0
        rate = self._items / elapsed if elapsed > 0 else 0.0
        done = step - self._start
        left = (self.total - step) * elapsed / done if done > 0 else float("nan")
        frac = step / self.total if self.total else 1.0
        bar = "#" * int(frac * self.width)
        shown = " ".join(f"{k} {v:.4g}" for k, v in figures.items())
        line = (f"[{bar:<{self.width}}] {step}/{self.total} {shown} | {rate:.0f} {self.unit}/s | "
                f"{_clock(elapsed)} elapsed, {_clock(left)} left")
        if self._tty:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"

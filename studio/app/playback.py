"""Playing a timeline, with no Qt: where the playhead is after some seconds of play (from a start, within the in
and out points, looping or stopping at the out point), and a meter of the frames shown against the frames due.

The window's timer asks `Playback.at(now)` for the time to preview and tells the meter when a frame it sent was
shown; renders slower than real time drop frames on the newest-wins preview lane, and the meter says so. Both take
the clock's readings as arguments, so tests and benchmarks drive them with any clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

DROPPING = 0.9  # showing fewer than this fraction of the frames due is "dropping frames"


@dataclass
class Playback:
    """Play from `start` seconds within (`low`, `high`) (the in and out points), at real time."""

    start: float
    low: float
    high: float
    loop: bool = False
    began: float = 0.0  # the clock's reading when play began

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"nothing to play between {self.low:g} s and {self.high:g} s")
        self.start = min(max(self.start, self.low), self.high)
        if self.start >= self.high:  # at the end (the out point): play again from the in point
            self.start = self.low

    def at(self, now: float) -> tuple[float, bool]:
        """(the time to show, whether play has ended): the out point ends it unless it loops to the in point."""
        t = self.start + max(0.0, now - self.began)
        if t < self.high:
            return t, False
        if not self.loop:
            return self.high, True
        return self.low + math.fmod(t - self.low, self.high - self.low), False


class PlaybackMeter:
    """Frames shown against frames due at `fps`, over the last `window` seconds of play."""

    def __init__(self, fps: float, window: float = 2.0):
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps, self.window = float(fps), float(window)
        self.began: float | None = None
        self.shown_total = 0
        self._shown: deque[float] = deque()

    def start(self, now: float) -> None:
        self.began = now
        self.shown_total = 0
        self._shown.clear()

    def shown(self, now: float) -> None:
        """A frame sent while playing was shown (its render finished) at `now`."""
        self.shown_total += 1
        self._shown.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._shown and self._shown[0] < now - self.window:
            self._shown.popleft()

    def due(self, now: float) -> int:
        """Frames that real-time play would have shown by `now` since it began."""
        if self.began is None:
            return 0
        return int(math.floor(max(0.0, now - self.began) * self.fps)) + 1

    def achieved(self, now: float) -> float:
        """Frames shown per second over the last `window` seconds (or since play began, when sooner)."""
        if self.began is None:
            return 0.0
        self._trim(now)
        span = min(self.window, now - self.began)
        if span <= 0:
            return 0.0
        return len(self._shown) / span

    def dropping(self, now: float) -> bool:
        """Whether fewer frames are shown than are due (after a first window, so that the first render's latency
        does not count)."""
        return self.began is not None and now - self.began >= min(self.window, 1.0) \
            and self.achieved(now) < DROPPING * self.fps

    def text(self, now: float) -> str:
        """"playing 24 fps · showing 9 fps (dropping frames)" or "playing 24 fps · showing 24 fps"."""
        shown = self.achieved(now)
        note = " (dropping frames)" if self.dropping(now) else ""
        return f"playing {self.fps:g} fps · showing {shown:.0f} fps{note}"

"""What a trainer reports while it runs, and how it is asked to stop.

Every training loop takes a `Monitor` (studio.train.common.Run drives it). It calls `step` after every optimiser step
(loss figures), `sample` every so often with a preview of what the network makes by then, and asks `stop_requested`
after every step: on "pause" or "cancel" it saves a checkpoint and raises `TrainingStopped`, so a paused run resumes
where it stopped (the same run folder, `resume=True`). The default monitor prints a progress bar; the app's training
dialog implements the same calls on its worker thread (no Qt here).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from studio.errors import StudioError
from studio.train.progress import ProgressBar

STOP_REASONS = ("pause", "cancel")


class TrainingStopped(StudioError):
    """The run stopped when asked, after saving a checkpoint at `step` (resume it with resume=True)."""

    def __init__(self, step: int, reason: str, checkpoint=None):
        super().__init__(f"training {'paused' if reason == 'pause' else 'cancelled'} at step {step}", checkpoint)
        self.step, self.reason = step, reason


class Monitor:
    """Prints a progress bar and log lines; never asks to stop. Subclass it to watch a run from elsewhere."""

    wants_samples = False  # whether `sample` looks at what it gets: previews are made only for monitors that do

    def __init__(self, log: Callable[[str], None] = print):
        self._log = log
        self._bar: ProgressBar | None = None

    def log(self, text: str) -> None:
        self._log(text)

    def start(self, total: int, start: int, unit: str = "img") -> None:
        """The run begins (or resumes) at step `start` of `total`."""
        self._bar = ProgressBar(total, start=start, unit=unit)

    def step(self, step: int, items: int, **figures: float) -> None:
        """Step `step` (1-based) is done; `items` examples went through it; figures such as loss=…."""
        if self._bar is not None:
            self._bar.update(step, items, **figures)

    def sample(self, step: int, output: np.ndarray, kind: str = "image", sample_rate: int = 0) -> None:
        """A preview at `step`: uint8 (H, W[, C]) for images, float32 (samples,) for sounds."""

    def stop_requested(self) -> str | None:
        """None to go on; "pause" or "cancel" to save a checkpoint and stop."""
        return None

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def check_stop(monitor: Monitor, step: int, save: Callable[[int], None], checkpoint=None) -> None:
    """After step `step`: when the monitor asks to stop, save a checkpoint at `step` and raise TrainingStopped."""
    reason = monitor.stop_requested()
    if reason is None:
        return
    if reason not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {reason!r}")
    save(step)
    monitor.finish()
    raise TrainingStopped(step, reason, checkpoint)

"""What long work yields and returns, with no torch: `Progress` (a step, and a cancel point), `Preview` (a step with
something to look at) and `Output` (a finished image, sound or latent). Renders, encodings, exports and training all
speak these, so the engine's scheduler, the CLI and the window can follow any of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, TypeVar

import numpy as np

_T = TypeVar("_T")


@dataclass(frozen=True)
class Progress:
    """A step of long work. Every yield is a cancel point."""

    step: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class Preview(Progress):
    """An intermediate output an artist can look at while the work goes on."""

    output: "Output | None" = None


@dataclass(frozen=True)
class Output:
    """A finished render. Images are uint8 (H, W, C); audio float32 (samples, channels); latents float32 (n,)."""

    kind: str
    data: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        if self.kind == "image":
            return int(self.data.shape[1]), int(self.data.shape[0])
        return int(self.data.shape[0]), int(self.data.shape[1] if self.data.ndim > 1 else 1)


RenderSteps = Generator[Progress, None, Output]
Steps = Generator[Progress, None, _T]


def run_steps(steps: Generator[Progress, None, _T]) -> _T:
    """Drive long work (a generator that yields progress) to its end on this thread; what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value

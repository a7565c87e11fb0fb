"""A stand-in for the application core's tests, with no Qt: `StubRunner`, the core's Runner (what the window's
bridge is), running every task on the calling thread when asked (`settle`), so a test sees the order of events the
window sees. Work functions run on the fake engine's `FakeModel` (a package's manifest and specs, a `FakeFamily`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from studio.request import RenderRequest
from studio.steps import Output, run_steps

from fake_engine import FakeModel


@dataclass
class StubHandle:
    request: RenderRequest
    label: str
    kind: str
    job: "StubHandle" = None  # type: ignore[assignment]  (a handle is its own job)
    cancelled: bool = False
    run: Callable[[], Output] | None = None
    on_done: Any = None
    on_error: Any = None
    on_cancelled: Any = None

    def __post_init__(self) -> None:
        self.job = self

    def cancel(self) -> None:
        self.cancelled = True


class StubRunner:
    """The core's Runner: records previews; queues tasks and runs them (work functions on `model_for(request)`) in
    order when `settle()` is called, calling back as the window's bridge does."""

    def __init__(self, model_for: Callable[[RenderRequest], FakeModel]):
        self.model_for = model_for
        self.previews: list[RenderRequest] = []
        self.pending: list[StubHandle] = []
        self.handles: list[StubHandle] = []

    def preview(self, request: RenderRequest) -> int:
        self.previews.append(request)
        return len(self.previews)

    def _queue(self, handle: StubHandle) -> StubHandle:
        self.pending.append(handle)
        self.handles.append(handle)
        return handle

    def run(self, request, label, on_done=None, on_error=None, then=None, kind="render", images=None, labels=None,
            on_cancelled=None) -> StubHandle:
        assert kind == "latent", "the core asks the runner for latents only; the rest are work functions"
        values = np.arange(8, dtype=np.float32) + request.seed
        return self._queue(StubHandle(request, label, kind, run=lambda: Output("latent", values), on_done=on_done,
                                      on_error=on_error, on_cancelled=on_cancelled))

    def run_work(self, request, label, work, on_done=None, on_error=None, on_cancelled=None) -> StubHandle:
        model = self.model_for(request)
        run = lambda: run_steps(work(model, model.checked(request)))  # noqa: E731
        return self._queue(StubHandle(request, label, "work", run=run, on_done=on_done, on_error=on_error,
                                      on_cancelled=on_cancelled))

    def run_animation(self, frames, path, fps, label, audio=None, metadata="", size=None, on_done=None, on_error=None,
                      on_cancelled=None, output_size=None) -> StubHandle:
        handle = StubHandle(frames[0], label, "animation", on_done=on_done, on_error=on_error,
                            on_cancelled=on_cancelled)
        handle.run = lambda: Output("video", np.zeros(0), {"path": str(path), "frames": len(frames), "fps": fps,
                                                           "audio": audio is not None, "metadata": metadata})
        return self._queue(handle)

    def settle(self) -> None:
        """Run every queued task (and those they queue), oldest first, with their callbacks."""
        while self.pending:
            self.step()

    def step(self) -> StubHandle:
        """Run the oldest queued task with its callbacks; the handle."""
        handle = self.pending.pop(0)
        if handle.cancelled:
            if handle.on_cancelled is not None:
                handle.on_cancelled()
            elif handle.on_error is not None:
                handle.on_error(f"{handle.label} was cancelled", "")
            return handle
        try:
            output = handle.run()
        except Exception as exc:  # what the bridge reports as the job's error
            if handle.on_error is not None:
                handle.on_error(str(exc), f"Traceback (stub)\n{exc}")
            return handle
        if handle.on_done is not None:
            handle.on_done(output)
        return handle

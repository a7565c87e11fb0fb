"""Stand-ins for the application core's tests, with no Qt and no network to run:

- `StubModel`: what the engine hands a work function (studio.engine.work), over a real package's manifest and
  parameter specs, with a family that "renders" the fake engine's grey images and "encodes" to the images' mean;
- `StubRunner`: the core's Runner (the window's bridge) that runs every task on the calling thread when asked
  (`settle`), so a test sees the order of events the window sees;
- `WorkingFakeEngine`: the UI tests' fake engine with work functions run on a StubModel (the fake engine hands a
  work job no model that can render).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from studio.library import PackageEntry
from studio.params import Capability
from studio.request import RenderRequest
from studio.steps import Output, Preview, Progress, run_steps

from fake_engine import FakeEngine, fake_image

STUB_SHA = "f" * 64


class StubFamily:
    """Renders `fake_image(request)` (a half-bright preview first); encodes to the images' mean / 255 (with
    `project_steps`, as a projection: a generator of that many steps)."""

    name = "stub"

    def __init__(self, project_steps: int = 0, sample_rate: int | None = None):
        self.project_steps, self.sample_rate = project_steps, sample_rate
        self.capabilities = Capability.SAMPLE | Capability.ENCODE | (Capability.PROJECT if project_steps else
                                                                      Capability.NONE)
        self.rendered: list[RenderRequest] = []
        self.encoded: list[tuple[np.ndarray, list[str] | None]] = []

    def render(self, model, request: RenderRequest):
        yield Progress(0, 2, "drawing")
        if self.sample_rate:
            wave = np.full((64, 1), (int(fake_image(request)[0, 0]) - 128) / 256, np.float32)
            self.rendered.append(request)
            return Output("audio", wave, {"sample_rate": self.sample_rate})
        yield Preview(1, 2, "drawing", Output("image", fake_image(request) // 2))
        self.rendered.append(request)
        return Output("image", fake_image(request), {})

    def encode(self, model, images, labels=None):
        images = np.asarray(images)
        self.encoded.append((images, labels))
        z = torch.full((8,), float(images.mean()) / 255.0)
        if not self.project_steps:
            return z

        def projection():
            for step in range(self.project_steps):
                yield Progress(step + 1, self.project_steps, f"projecting: step {step + 1}")
            return z

        return projection()


@dataclass
class StubModel:
    """A loaded model as work functions see it: the package's manifest and specs, a StubFamily."""

    entry: PackageEntry
    family: StubFamily = field(default_factory=StubFamily)
    sha256: str = STUB_SHA

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def manifest(self):
        return self.entry.manifest

    def checked(self, request: RenderRequest) -> RenderRequest:
        return self.entry.parameters.check(request)


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

    def __init__(self, model_for: Callable[[RenderRequest], StubModel]):
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
                      on_cancelled=None) -> StubHandle:
        handle = StubHandle(frames[0], label, "animation", on_done=on_done, on_error=on_error,
                            on_cancelled=on_cancelled)
        handle.run = lambda: Output("video", np.zeros(0), {"path": str(path), "frames": len(frames), "fps": fps,
                                                           "audio": audio is not None, "metadata": metadata})
        return self._queue(handle)

    def settle(self) -> None:
        """Run every queued task (and those they queue), oldest first, with their callbacks."""
        while self.pending:
            handle = self.pending.pop(0)
            if handle.cancelled:
                if handle.on_cancelled is not None:
                    handle.on_cancelled()
                elif handle.on_error is not None:
                    handle.on_error(f"{handle.label} was cancelled", "")
                continue
            try:
                output = handle.run()
            except Exception as exc:  # what the bridge reports as the job's error
                if handle.on_error is not None:
                    handle.on_error(str(exc), f"Traceback (stub)\n{exc}")
                continue
            if handle.on_done is not None:
                handle.on_done(output)


class WorkingFakeEngine(FakeEngine):
    """The fake engine, with `submit(work=…)` run on a StubModel of the request's package (one the app added): the
    fake's own render (its delay, steps and cancel points) comes first, then the work function on the worker."""

    def __init__(self, *args, family: StubFamily | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.family = family or StubFamily()

    def submit(self, request, lane="preview", on_event=None, then=None, work=None, kind="render", payload=None):
        if work is None:
            return super().submit(request, lane, on_event, then=then, kind=kind, payload=payload)
        entry = next(e for e in reversed(self.packages) if e.id == request.model_id)
        model = StubModel(entry, self.family)
        return super().submit(request, lane, on_event, then=lambda _output: run_steps(work(model, request)),
                              kind=kind, payload=payload)

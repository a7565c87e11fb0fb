"""A fake engine for the UI tests: the real scheduler (`studio.engine.scheduler.Scheduler`: its lanes, newest-wins,
FIFO, cancel and events) with a fake renderer that "renders" a grey image whose pixels encode the request, with no
torch. The UI tests drive the app with it, as krita-ai-diffusion does with its fake client; only the rendering is
fake, so what the tests see of scheduling is what the app gets."""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from studio.engine.scheduler import Event, Job, JobSteps, Scheduler
from studio.errors import StudioError
from studio.steps import Output, Preview
from studio.request import RenderRequest


def fake_image(request: RenderRequest, height: int = 16) -> np.ndarray:
    """A (height, 8·len(prompt)) uint8 image; its value is a hash of the whole request (equal requests, equal
    images; any change of the request changes the value)."""
    value = int(hashlib.sha256(request.to_json().encode()).hexdigest()[:2], 16)
    width = 8 * max(1, len(str(request.param("prompt") or "x")))
    return np.full((height, width), value, dtype=np.uint8)


def request_value(request: RenderRequest) -> int:
    return int(fake_image(request)[0, 0])


FAKE_SHA256 = "f" * 64


@dataclass(frozen=True)
class FakeModel:
    """What a job's `work(model, request)` gets from the fake renderer in place of a loaded model."""

    id: str
    sha256: str = FAKE_SHA256
    device: str = "fake"


class FakeRenderer:
    """Renders on the scheduler's worker: `delay` seconds per job (split into `steps`, each a cancel point, with a
    half-bright preview between them); prompts in `fail_prompts` fail. Records what it rendered, in order."""

    def __init__(self, delay: float = 0.0, steps: int = 1, fail_prompts: tuple[str, ...] = ()):
        self.delay, self.steps, self.fail_prompts = delay, steps, fail_prompts
        self.rendered: list[RenderRequest] = []

    @contextlib.contextmanager
    def worker(self) -> Iterator[None]:
        yield  # no per-thread setup: no torch

    def run(self, job: Job) -> JobSteps:
        request: RenderRequest = job.request
        job.info.update(device="fake", dtype="float32", model_sha256=FAKE_SHA256, model_name="Fake")
        for step in range(1, self.steps + 1):
            time.sleep(self.delay / self.steps)
            yield None  # a cancel point after each step
            if step < self.steps:
                yield Preview(step, self.steps, output=Output("image", fake_image(request) // 2))
        if request.param("prompt") in self.fail_prompts:
            raise StudioError(f"cannot render {request.param('prompt')!r}")
        if job.work is not None:
            output = yield from job.work(FakeModel(request.model_id), request)
        elif job.kind == "encode":
            images, _ = job.payload
            output = Output("latent", np.full(8, float(images.mean()) / 255.0, dtype=np.float32))
        elif job.kind == "latent":
            output = Output("latent", np.arange(8, dtype=np.float32) + request.seed)
        else:
            output = Output("image", fake_image(request), {"model_sha256": FAKE_SHA256})
            self.rendered.append(request)
        if job.then is not None:
            output = job.then(output) or output
        return output


class FakeEngine(Scheduler):
    """The engine API (`studio.engine.api.EngineAPI`) as the real scheduler over a FakeRenderer.

    `delay` seconds per render (split into `steps` progress steps); `fail_prompts`: prompts that fail to render.
    `submitted` lists every job in the order submitted, `rendered` the requests the worker actually rendered,
    `packages` what the app added.
    """

    renderer: FakeRenderer

    def __init__(self, delay: float = 0.0, steps: int = 1, fail_prompts: tuple[str, ...] = ()):
        super().__init__(FakeRenderer(delay, steps, fail_prompts), name="fake-engine")
        self.device = "fake"
        self.submitted: list[Job] = []
        self.packages: list = []
        self.subscribe(self._on_event)

    @property
    def rendered(self) -> list[RenderRequest]:
        return self.renderer.rendered

    def add_package(self, entry) -> None:
        self.packages.append(entry)

    def wait_idle(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.busy:
                return
            time.sleep(0.002)
        raise TimeoutError("the fake engine is still busy")

    def _on_event(self, event: Event) -> None:
        if event.kind == "queued":  # the first event of every job, sent before the worker can see it
            self.submitted.append(event.job)

"""A fake engine for the UI tests: the real scheduler (`studio.engine.scheduler.Scheduler`: its lanes, newest-wins,
FIFO, cancel and events) with a fake renderer that "renders" a grey image whose pixels encode the request, with no
torch. The UI tests drive the app with it, as krita-ai-diffusion does with its fake client; only the rendering is
fake, so what the tests see of scheduling is what the app gets."""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from studio.engine.scheduler import Event, Job, JobSteps, Scheduler
from studio.errors import StudioError
from studio.library import PackageEntry
from studio.params import Capability
from studio.request import RenderRequest
from studio.steps import Output, Preview, Progress


def fake_image(request: RenderRequest, height: int = 16) -> np.ndarray:
    """A (height, 8·len(prompt)) uint8 image; its value is a hash of the whole request (equal requests, equal
    images; any change of the request changes the value)."""
    value = int(hashlib.sha256(request.to_json().encode()).hexdigest()[:2], 16)
    width = 8 * max(1, len(str(request.param("prompt") or "x")))
    return np.full((height, width), value, dtype=np.uint8)


def request_value(request: RenderRequest) -> int:
    return int(fake_image(request)[0, 0])


FAKE_SHA256 = "f" * 64


class FakeFamily:
    """What work functions find as a fake model's family: renders `fake_image(request)` (a half-bright preview
    first; with `sample_rate`, a sound of its value instead); encodes to the images' mean / 255 (with `project_steps`,
    as a projection: a generator of that many steps)."""

    name = "fake"

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
class FakeModel:
    """What a job's `work(model, request)` gets from the fake renderer in place of a loaded model: the package's
    manifest and parameter specs (when the app added the package) and a FakeFamily."""

    id: str
    entry: PackageEntry | None = None
    family: FakeFamily = field(default_factory=FakeFamily)
    sha256: str = FAKE_SHA256
    device: str = "fake"

    @property
    def manifest(self):
        return self.entry.manifest if self.entry is not None else None

    def checked(self, request: RenderRequest) -> RenderRequest:
        return self.entry.parameters.check(request) if self.entry is not None else request

    def params(self, request: RenderRequest) -> dict:
        """As LoadedModel.params: the request's params with the defaults of those it leaves unset."""
        return self.entry.parameters.values(self.checked(request)) if self.entry is not None else dict(request.params)


class FakeRenderer:
    """Renders on the scheduler's worker: `delay` seconds per job (split into `steps`, each a cancel point, with a
    half-bright preview between them); prompts in `fail_prompts` fail. Records what it rendered, in order."""

    def __init__(self, delay: float = 0.0, steps: int = 1, fail_prompts: tuple[str, ...] = (),
                 family: FakeFamily | None = None):
        self.delay, self.steps, self.fail_prompts = delay, steps, fail_prompts
        self.family = family or FakeFamily()
        self.packages: dict[str, PackageEntry] = {}  # by id: what the app added
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
            model = FakeModel(request.model_id, self.packages.get(request.model_id), self.family)
            output = yield from job.work(model, model.checked(request))
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

    def __init__(self, delay: float = 0.0, steps: int = 1, fail_prompts: tuple[str, ...] = (),
                 family: FakeFamily | None = None):
        super().__init__(FakeRenderer(delay, steps, fail_prompts, family), name="fake-engine")
        self.device = "fake"
        self.submitted: list[Job] = []
        self.packages: list = []
        self.subscribe(self._on_event)

    @property
    def rendered(self) -> list[RenderRequest]:
        return self.renderer.rendered

    @property
    def family(self) -> FakeFamily:
        """What work functions find as every fake model's family (what it encoded, say)."""
        return self.renderer.family

    def add_package(self, entry) -> None:
        self.packages.append(entry)
        self.renderer.packages[entry.id] = entry

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

"""A fake engine with the real engine's API (submit, encode, latent, cancel_all, shutdown, add_package, device):
a worker thread "renders" a grey image whose pixels encode the request, with no torch. The UI tests drive the app
with it, as krita-ai-diffusion does with its fake client."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections import deque

import numpy as np

from studio.engine.engine import Event
from studio.steps import Output
from studio.request import RenderRequest


def fake_image(request: RenderRequest, height: int = 16) -> np.ndarray:
    """A (height, 8·len(prompt)) uint8 image; its value is a hash of the whole request (equal requests, equal
    images; any change of the request changes the value)."""
    value = int(hashlib.sha256(request.to_json().encode()).hexdigest()[:2], 16)
    width = 8 * max(1, len(str(request.param("prompt") or "x")))
    return np.full((height, width), value, dtype=np.uint8)


def request_value(request: RenderRequest) -> int:
    return int(fake_image(request)[0, 0])


class FakeJob:
    def __init__(self, request, lane, stamp, on_event, then=None, kind="render", payload=None):
        self.request, self.lane, self.stamp, self.on_event = request, lane, stamp, on_event
        self.then, self.kind, self.payload = then, kind, payload
        self.state, self.output, self.error, self.seconds, self.info = "queued", None, None, 0.0, {}
        self._cancel = threading.Event()
        self._done = threading.Event()

    def cancel(self):
        self._cancel.set()

    @property
    def done(self):
        return self._done.is_set()


class FakeEngine:
    """Renders on a worker thread with a newest-wins preview lane and a FIFO export lane, like the real one.

    `delay` seconds per render (split into `steps` progress steps); `fail_prompts`: prompts that fail to render.
    """

    def __init__(self, delay: float = 0.0, steps: int = 1, fail_prompts: tuple[str, ...] = ()):
        self.device = "fake"
        self.delay, self.steps, self.fail_prompts = delay, steps, fail_prompts
        self.submitted: list[FakeJob] = []
        self.rendered: list[RenderRequest] = []  # what the worker actually rendered, in order
        self.packages: list = []
        self._stamps = itertools.count(1)
        self._lock = threading.Condition()
        self._preview: FakeJob | None = None
        self._exports: deque[FakeJob] = deque()
        self._current: FakeJob | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="fake-engine", daemon=True)
        self._thread.start()
        self.worker_thread = self._thread

    # --- the engine API -------------------------------------------------------------------------------------------
    def add_package(self, entry) -> None:
        self.packages.append(entry)

    def submit(self, request, lane="preview", on_event=None, then=None, kind="render", payload=None):
        job = FakeJob(request, lane, next(self._stamps), on_event, then, kind, payload)
        self.submitted.append(job)
        self._emit(job, "queued")
        superseded = None
        with self._lock:
            if lane == "preview":
                superseded, self._preview = self._preview, job
            else:
                self._exports.append(job)
            self._lock.notify_all()
        if superseded is not None:
            self._finish(superseded, "cancelled")
        return job

    def encode(self, request, images, labels=None, on_event=None):
        return self.submit(request, "export", on_event, kind="encode", payload=(np.asarray(images), labels))

    def latent(self, request, on_event=None):
        return self.submit(request, "export", on_event, kind="latent")

    def cancel_all(self):
        with self._lock:
            pending = ([self._preview] if self._preview else []) + list(self._exports)
            self._preview = None
            self._exports.clear()
            current = self._current
        if current is not None:
            current.cancel()
        for job in pending:
            self._finish(job, "cancelled")

    def shutdown(self, wait=True, timeout=5.0):
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self.cancel_all()
        if wait:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self._preview is None and not self._exports and self._current is None:
                    return
            time.sleep(0.002)
        raise TimeoutError("the fake engine is still busy")

    # --- worker ---------------------------------------------------------------------------------------------------
    def _run(self):
        while True:
            with self._lock:
                while not self._stop and self._preview is None and not self._exports:
                    self._lock.wait()
                if self._stop:
                    return
                if self._preview is not None:
                    job, self._preview = self._preview, None
                else:
                    job = self._exports.popleft()
                self._current = job
            try:
                self._execute(job)
            finally:
                with self._lock:
                    self._current = None

    def _execute(self, job: FakeJob):
        if job._cancel.is_set():
            self._finish(job, "cancelled")
            return
        self._emit(job, "started")
        t0 = time.perf_counter()
        for step in range(1, self.steps + 1):
            time.sleep(self.delay / self.steps)
            if job._cancel.is_set():
                self._finish(job, "cancelled")
                return
            if step < self.steps:
                partial = Output("image", fake_image(job.request) // 2)
                self._emit(job, "preview", step=step, total=self.steps, output=partial)
        try:
            if job.request.param("prompt") in self.fail_prompts:
                raise RuntimeError(f"cannot render {job.request.param('prompt')!r}")
            if job.kind == "encode":
                images, _ = job.payload
                output = Output("latent", np.full(8, float(images.mean()) / 255.0, dtype=np.float32))
            elif job.kind == "latent":
                output = Output("latent", np.arange(8, dtype=np.float32) + job.request.seed)
            else:
                output = Output("image", fake_image(job.request), {"model_sha256": "f" * 64})
                self.rendered.append(job.request)
            if job.then is not None:
                output = job.then(output) or output
        except Exception as exc:
            self._finish(job, "error", error=exc, message=str(exc), detail=f"Traceback (fake)\n{exc}")
            return
        job.seconds = time.perf_counter() - t0
        job.info = {"device": "fake", "dtype": "float32", "model_sha256": "f" * 64, "model_name": "Fake"}
        job.output = output
        self._finish(job, "finished", output=output)

    def _finish(self, job, state, output=None, error=None, message="", detail=""):
        if job.done:
            return
        job.state, job.error = state, error
        job._done.set()
        self._emit(job, state, output=output, error=error, message=message, detail=detail)

    def _emit(self, job, kind, step=0, total=0, output=None, error=None, message="", detail=""):
        if job.on_event is not None:
            job.on_event(Event(kind, job, step, total, message, output, error, detail))

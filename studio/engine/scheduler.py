"""The engine's scheduler: jobs, two lanes, one worker thread and events, with no torch.

    scheduler = Scheduler(renderer)
    job = scheduler.submit(request, lane="preview", on_event=print)
    output = job.wait()

Events (queued, started, progress, preview, finished, cancelled, error) reach plain callbacks, called on the worker
thread (or on the submitting thread for `queued` and for jobs superseded before they start). The Qt bridge turns them
into queued signals; nothing here knows about Qt.

The preview lane is newest-wins: a newer preview supersedes a waiting one, so a burst of requests renders at most the
one in flight and the newest. The export lane is a FIFO queue. Previews go before waiting exports.

What a job does is the renderer's business (`Renderer`): the scheduler asks it for the job's steps, a generator, and
drives it on the worker thread; every yield is a cancel point. A failing job becomes an error event; the worker lives
on. The torch renderer is `studio.engine.renderer.TorchRenderer`; the UI tests plug a fake one in.

This module imports no torch (an import contract in pyproject.toml and tests/engine/test_scheduler.py hold it to that), so
the scheduler runs, and is tested, where torch is not loaded.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Generator, Protocol

import numpy as np

from studio.errors import StudioError
from studio.request import RenderRequest
from studio.steps import Output, Preview, Progress, RenderSteps

log = logging.getLogger(__name__)

PREVIEW = "preview"
EXPORT = "export"
LANES = (PREVIEW, EXPORT)


_BUSY: set[threading.Thread] = set()  # workers of shut-down schedulers that had not ended when shutdown returned
_BUSY_LOCK = threading.Lock()


def busy_workers() -> list[threading.Thread]:
    """Worker threads of shut-down schedulers that are still running a job. Ending the process normally while one is
    inside torch aborts it: at interpreter finalization the thread is killed when it next takes the GIL, from a C++
    frame that may not unwind, and the C++ runtime calls terminate() (exit status 134). The entry points hard-exit
    instead (`studio.cli.entry`)."""
    with _BUSY_LOCK:
        _BUSY.difference_update([t for t in _BUSY if not t.is_alive()])
        return sorted(_BUSY, key=lambda t: t.name)


class Cancelled(Exception):
    """Raised by Job.wait() when the job was cancelled or superseded."""


@dataclass
class Event:
    kind: str  # queued | started | progress | preview | finished | cancelled | error
    job: "Job"
    step: int = 0
    total: int = 0
    message: str = ""
    output: Output | None = None
    error: BaseException | None = None
    detail: str = ""  # traceback text for errors that are not StudioErrors


EventCallback = Callable[[Event], None]

# `work(model, request)` replaces the family's render for other tasks on the request's model (encoding, a grid): the
# renderer calls it on the worker with the model it loaded for the request.
Work = Callable[[Any, Any], RenderSteps]

# `then(output)` runs on the worker after the render (writing the file of an export, say).
Then = Callable[[Output], Output | None]

# What a renderer yields for a job: Progress and Preview become events; None is a cancel point with nothing to report.
JobSteps = Generator[Progress | None, None, Output]


class Job:
    """One piece of work on a lane: what to do (`request`, `kind`, `payload`, `work`, `then`) and how it went
    (`state`, `output`, `error`, `seconds`, and `info`, which the renderer fills: device, dtype, model hash…)."""

    def __init__(self, request: RenderRequest, lane: str, stamp: int, on_event: EventCallback | None,
                 work: Work | None = None, kind: str = "render", then: Then | None = None, payload: Any = None):
        self.request, self.lane, self.stamp = request, lane, stamp
        self.on_event = on_event
        self.kind = kind  # "render", or another task on the request's model: "encode", "latent", "work"…
        self.payload = payload  # what the task needs besides the request: the (images, labels) of an "encode"
        self.work = work
        self.then = then
        self.state = "queued"
        self.output: Output | None = None
        self.error: BaseException | None = None
        self.seconds: float = 0.0
        self.info: dict = {}
        self._cancel = threading.Event()
        self._done = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next cancel point (or never start)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Output:
        """Block until the job ends; its output, or raise its error / Cancelled / TimeoutError."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.stamp} still {self.state} after {timeout} s")
        if self.state == "finished":
            assert self.output is not None
            return self.output
        if self.state == "cancelled":
            raise Cancelled(f"job {self.stamp} was cancelled")
        assert self.error is not None
        raise self.error

    def __repr__(self) -> str:
        return f"<Job {self.stamp} {self.lane} {self.state} {self.request.model_id}>"


class Renderer(Protocol):
    """What the scheduler needs from whatever executes its jobs (the torch renderer, or a fake one in tests)."""

    def worker(self) -> ContextManager[object]:
        """Entered on the worker thread around all the jobs it runs: per-thread setup, such as torch's thread count
        and inference mode."""
        ...

    def run(self, job: Job) -> JobSteps:
        """The job's steps, run on the worker thread: a generator that yields Progress and Preview (each becomes an
        event) or None (a cancel point with nothing to report), and returns the job's Output.

        `job.kind` says what to do: "render" the request, "encode" the (images, labels) in `job.payload`, the
        "latent" of the request; with `job.work`, that work on the request's model. `job.then(output)`, when set,
        runs last; what it returns (or the output, if None) is the result. Failures are raised; recovering from
        them (the torch renderer's out-of-memory fallback) is the renderer's business, inside `run`. Every yield is
        a cancel point: the scheduler closes the generator there when the job is cancelled.
        """
        ...


class Scheduler:
    """Jobs on two lanes, run one at a time by a worker thread that asks `renderer` for each job's steps."""

    def __init__(self, renderer: Renderer, name: str = "latent-studio-engine"):
        self.renderer = renderer
        self._name = name  # the worker thread's name
        self._listeners: list[EventCallback] = []
        self._lock = threading.Condition()
        self._preview: Job | None = None
        self._exports: deque[Job] = deque()
        self._current: Job | None = None
        self._stamps = itertools.count(1)
        self._stop = False
        self._thread: threading.Thread | None = None

    # --- public API ---------------------------------------------------------------------------------------------
    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call `callback` for every event of every job; returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def submit(self, request: RenderRequest, lane: str = PREVIEW, on_event: EventCallback | None = None,
               then: Then | None = None, work: Work | None = None, kind: str = "render",
               payload: Any = None) -> Job:
        """Queue `request` on `lane`.

        `then(output)` runs on the worker after the render (writing the file of an export, say); what it returns
        (or the output, if None) finishes the job, and what it raises is the job's error. `work(model, request)`
        replaces the family's render for other tasks on the request's model (encoding, say), with the same events.
        `kind` and `payload` name another task the renderer knows (see `Renderer.run`).
        """
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r} (use {' or '.join(LANES)})")
        superseded = None
        with self._lock:
            if self._stop:
                raise RuntimeError("the engine has been shut down")
            job = Job(request, lane, next(self._stamps), on_event, work, kind, then, payload)
        self._emit(Event("queued", job))  # before the worker can see the job, so `queued` always comes first
        with self._lock:
            refused = self._stop  # shut down while the queued event ran
            if not refused:
                if lane == PREVIEW:
                    superseded, self._preview = self._preview, job
                else:
                    self._exports.append(job)
                self._ensure_thread()
                self._lock.notify_all()
        if refused:
            self._finish(job, "cancelled", message="the engine is shutting down")
        if superseded is not None:
            self._finish(superseded, "cancelled", message="superseded by a newer preview")
        return job

    def render(self, request: RenderRequest, lane: str = EXPORT, timeout: float | None = None) -> Output:
        """Submit and wait: the blocking form for scripts and the CLI."""
        return self.submit(request, lane).wait(timeout)

    def encode(self, request: RenderRequest, images: np.ndarray, labels: list[str] | None = None,
               on_event: EventCallback | None = None) -> Job:
        """Encode `images` (N, H, W[, C] uint8) with the request's model on the worker; the job's output is an
        Output of kind "latent" holding the float32 latent. Runs on the export lane (never superseded)."""
        images = np.ascontiguousarray(images)
        labels = list(labels) if labels is not None else None
        return self.submit(request, EXPORT, on_event, kind="encode", payload=(images, labels))

    def latent(self, request: RenderRequest, on_event: EventCallback | None = None) -> Job:
        """The request's latent values (seed or explicit values, then edits) as an Output of kind "latent", computed
        on the worker (export lane)."""
        return self.submit(request, EXPORT, on_event, kind="latent")

    def cancel_all(self) -> None:
        """Cancel every waiting job and ask the running one to stop at its next cancel point."""
        with self._lock:
            pending = ([self._preview] if self._preview else []) + list(self._exports)
            self._preview = None
            self._exports.clear()
            current = self._current
        if current is not None:
            current.cancel()
        for job in pending:
            self._finish(job, "cancelled", message="cancelled")

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._current is not None or self._preview is not None or bool(self._exports)

    @property
    def worker_thread(self) -> threading.Thread | None:
        """The thread that runs the jobs and sends their events (None until the first job is submitted)."""
        return self._thread

    def shutdown(self, wait: bool = True, timeout: float = 10.0) -> bool:
        """Refuse new work, cancel what is there, and (with `wait`) join the worker. Returns whether the worker has
        ended (True when there never was one). A worker still busy after `timeout` (a job between two cancel points,
        such as loading a large model) is listed by `busy_workers()` until it ends."""
        with self._lock:  # refuse new work first, then cancel what is there
            self._stop = True
            self._lock.notify_all()
            thread = self._thread
        self.cancel_all()
        if thread is None or thread is threading.current_thread():
            return True
        if wait:
            thread.join(timeout)
        if thread.is_alive():
            with _BUSY_LOCK:
                _BUSY.add(thread)
            return False
        return True

    def __enter__(self) -> "Scheduler":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # --- worker ---------------------------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _next_job(self) -> Job | None:
        with self._lock:
            while not self._stop and self._preview is None and not self._exports:
                self._lock.wait()
            if self._stop:
                return None
            if self._preview is not None:  # interactive work first
                job, self._preview = self._preview, None
            else:
                job = self._exports.popleft()
            self._current = job
            return job

    def _run(self) -> None:
        with self.renderer.worker():
            while True:
                job = self._next_job()
                if job is None:
                    return
                try:
                    self._execute(job)
                except BaseException as exc:  # never let a job kill the worker
                    self._finish(job, "error", error=exc, detail=traceback.format_exc())
                finally:
                    with self._lock:
                        self._current = None

    def _execute(self, job: Job) -> None:
        if job.cancel_requested:
            self._finish(job, "cancelled", message="cancelled before it started")
            return
        job.state = "running"
        self._emit(Event("started", job))
        t0 = time.perf_counter()
        steps = self.renderer.run(job)
        while True:
            if job.cancel_requested:
                steps.close()
                self._finish(job, "cancelled", message="cancelled")
                return
            try:
                step = next(steps)
            except StopIteration as stop:
                output = stop.value
                break
            if isinstance(step, Preview):
                self._emit(Event("preview", job, step.step, step.total, step.message, output=step.output))
            elif isinstance(step, Progress):
                self._emit(Event("progress", job, step.step, step.total, step.message))
        job.seconds = time.perf_counter() - t0
        job.output = output
        self._finish(job, "finished", output=output)

    # --- events ---------------------------------------------------------------------------------------------------
    def _finish(self, job: Job, state: str, output: Output | None = None, error: BaseException | None = None,
                message: str = "", detail: str = "") -> None:
        if job.done:
            return
        job.state = state
        job.error = error
        if state == "cancelled":
            job.cancel()
        job._done.set()
        kind = {"finished": "finished", "cancelled": "cancelled", "error": "error"}[state]
        if error is not None and not message:
            message = str(error) if isinstance(error, StudioError) else f"render failed: {type(error).__name__}: {error}"
        self._emit(Event(kind, job, message=message, output=output, error=error, detail=detail))

    def _emit(self, event: Event) -> None:
        for callback in ([event.job.on_event] if event.job.on_event else []) + list(self._listeners):
            try:
                callback(event)
            except Exception:  # a broken listener must not break rendering
                log.exception("event callback failed")

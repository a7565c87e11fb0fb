"""The render engine: a worker thread that owns the device, a model cache, and two lanes.

    engine = Engine()
    job = engine.submit(request, lane="preview", on_event=print)
    output = job.wait()

Events (queued, started, progress, preview, finished, cancelled, error) reach plain callbacks, called on the worker
thread (or on the submitting thread for `queued` and for jobs superseded before they start). The Qt bridge turns them
into queued signals; nothing here knows about Qt.

The preview lane is newest-wins: a newer preview supersedes a waiting one, so a burst of requests renders at most the
one in flight and the newest. The export lane is a FIFO queue. Each job's render is a generator; every yield is a
cancel point. A failing job becomes an error event; the worker lives on.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from studio.engine.cache import ModelCache
from studio.engine.device import (default_threads, is_out_of_memory, memory_budget, pick_device, release_memory,
                                  resolve_dtype)
from studio.errors import StudioError
from studio.families.base import LoadedModel
from studio.steps import Output, Preview, Progress, RenderSteps
from studio.library import PackageEntry, load_model, resolve
from studio.params import Capability
from studio.request import RenderRequest

log = logging.getLogger(__name__)

PREVIEW = "preview"
EXPORT = "export"
LANES = (PREVIEW, EXPORT)


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


Work = Callable[[LoadedModel, RenderRequest], RenderSteps]


class Job:
    def __init__(self, request: RenderRequest, lane: str, stamp: int, on_event: EventCallback | None,
                 work: Work | None = None, kind: str = "render"):
        self.request, self.lane, self.stamp = request, lane, stamp
        self.on_event = on_event
        self.kind = kind  # "render", or another task on the request's model such as "encode"
        self._work = work
        self._then: Callable[[Output], Output | None] | None = None
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


def _package_stamp(entry: PackageEntry) -> tuple:
    """Where a package is and which weights it has, from the file system alone (no hashing)."""
    try:
        st = entry.manifest.weights_path.stat() if entry.manifest is not None else None
    except OSError:
        st = None
    return (str(entry.folder), st.st_size if st else None, st.st_mtime_ns if st else None)


class Engine:
    def __init__(self, device: str | None = "auto", roots: Iterable[str | Path] | None = None,
                 cache_bytes: int | None = None, threads: int | None = None, oom_fallback: bool = True):
        self.device = pick_device(device)
        self.roots = list(roots) if roots is not None else None
        self.cache = ModelCache(cache_bytes if cache_bytes is not None else memory_budget(self.device))
        self.threads = threads or default_threads()
        self.oom_fallback = oom_fallback
        self._entries: dict[str, PackageEntry] = {}
        self._stamps_by_id: dict[str, tuple] = {}  # where each added package is and its weights file's size/time
        self._stale: set[str] = set()  # ids whose cached networks are out of date
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

    def add_package(self, entry: PackageEntry) -> None:
        """Make a package (e.g. a folder opened by the user) renderable by its id. When the id's package has moved
        or its weights file changed (retrained under the same id, say), its cached networks are dropped before the
        next render, so the new weights are what renders."""
        stamp = _package_stamp(entry)
        with self._lock:
            old = self._stamps_by_id.get(entry.id)
            if old is not None and old != stamp:
                self._stale.add(entry.id)
            self._stamps_by_id[entry.id] = stamp
            self._entries[entry.id] = entry

    def submit(self, request: RenderRequest, lane: str = PREVIEW, on_event: EventCallback | None = None,
               then: Callable[[Output], Output | None] | None = None, work: Work | None = None,
               kind: str = "render") -> Job:
        """Queue `request` on `lane`.

        `then(output)` runs on the worker after the render (writing the file of an export, say); what it returns
        (or the output, if None) finishes the job, and what it raises is the job's error. `work(model, request)`
        replaces the family's render for other tasks on the request's model (encoding, say), with the same events.
        """
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r} (use {' or '.join(LANES)})")
        superseded = None
        with self._lock:
            if self._stop:
                raise RuntimeError("the engine has been shut down")
            job = Job(request, lane, next(self._stamps), on_event, work, kind)
            job._then = then
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
        return self.submit(request, EXPORT, on_event, work=lambda model, _: _encode_steps(model, images, labels),
                           kind="encode")

    def latent(self, request: RenderRequest, on_event: EventCallback | None = None) -> Job:
        """The request's latent values (seed or explicit values, then edits) as an Output of kind "latent", computed
        on the worker (export lane)."""
        return self.submit(request, EXPORT, on_event, work=_latent_steps, kind="latent")

    def cancel_all(self) -> None:
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

    def shutdown(self, wait: bool = True, timeout: float = 10.0) -> None:
        with self._lock:  # refuse new work first, then cancel what is there
            self._stop = True
            self._lock.notify_all()
            thread = self._thread
        self.cancel_all()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # --- worker ---------------------------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="latent-studio-engine", daemon=True)
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
        torch.set_num_threads(self.threads)  # per process: the worker takes all cores but the GUI's
        with torch.inference_mode():
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
        try:
            output = self._render_with_fallback(job)
        except _CancelledRun:
            self._finish(job, "cancelled", message="cancelled")
            return
        job.seconds = time.perf_counter() - t0
        job.output = output
        self._finish(job, "finished", output=output)

    def _render_with_fallback(self, job: Job) -> Output:
        """Render on the engine's device; out of memory there: free the model cache and retry once, then
        fall back to the CPU (noted in job.info)."""
        device = self.device
        try:
            return self._render_on(job, device)
        except Exception as exc:
            if not (self.oom_fallback and is_out_of_memory(exc) and device.type != "cpu"):
                raise
        log.warning("out of memory on %s; retrying after freeing the model cache", device)
        self.cache.drop()
        release_memory(device)
        try:
            return self._render_on(job, device)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        release_memory(device)
        job.info["fallback"] = f"out of memory on {device}; rendered on the CPU"
        return self._render_on(job, torch.device("cpu"))

    def _model(self, request: RenderRequest, device: torch.device, dtype: torch.dtype) -> LoadedModel:
        key = (request.model_id, device, dtype)
        with self._lock:
            stale = request.model_id in self._stale
            self._stale.discard(request.model_id)
        if stale:
            for cached in [k for k in self.cache.keys() if k[0] == request.model_id]:
                self.cache.drop(cached)
        model = self.cache.get(key, lambda: self._load(request, device, dtype))
        if request.model_hash and model.sha256 != request.model_hash:
            # The package may have changed on disk since it was cached: read it again from its folder. If the
            # weights still differ, loading raises an error that names both hashes.
            self.cache.drop(key)
            model = self.cache.get(key, lambda: self._load(request, device, dtype, reread=True))
        return model

    def _load(self, request: RenderRequest, device: torch.device, dtype: torch.dtype,
              reread: bool = False) -> LoadedModel:
        entry = self._entries.get(request.model_id)
        if entry is None:
            entry = resolve(request.model_id, self.roots)
        elif reread:
            entry = resolve(str(entry.folder))
        self._entries[request.model_id] = entry
        return load_model(entry, device, dtype, expected_sha256=request.model_hash or None)

    def _render_on(self, job: Job, device: torch.device) -> Output:
        dtype, note = resolve_dtype(job.request.dtype, device)
        if note:
            job.info["dtype_note"] = note
        model = self._model(job.request, device, dtype)
        job.info.update(device=str(device), dtype=str(dtype).replace("torch.", ""), model_sha256=model.sha256,
                        model_name=model.manifest.name, model_version=model.manifest.version)
        request = model.checked(job.request)  # every param known to the model and in range, or a RequestError
        steps = job._work(model, request) if job._work else model.family.render(model, request)
        while True:
            if job.cancel_requested:
                steps.close()
                raise _CancelledRun()
            try:
                step = next(steps)
            except StopIteration as stop:
                output = stop.value
                # what made it travels with it (an export's `then` writes the weights' hash into the file)
                output.info.setdefault("model_sha256", model.sha256)
                output.info.setdefault("model_name", model.manifest.name)
                if job._then is None:
                    return output
                return job._then(output) or output
            if isinstance(step, Preview):
                self._emit(Event("preview", job, step.step, step.total, step.message, output=step.output))
            elif isinstance(step, Progress):
                self._emit(Event("progress", job, step.step, step.total, step.message))

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


class _CancelledRun(Exception):
    pass


def _latent_steps(model: LoadedModel, request: RenderRequest) -> RenderSteps:
    z = model.family.latent(model, request)
    yield Progress(1, 1, "latent")
    return Output("latent", z.reshape(-1).float().numpy(), {"shape": list(z.shape)})


def _encode_steps(model: LoadedModel, images: np.ndarray, labels: list[str] | None) -> RenderSteps:
    if Capability.ENCODE not in model.family.capabilities:
        raise StudioError(f"{model.id} ({model.family.name} family) cannot encode images")
    yield Progress(0, 1, "encoding")
    z = model.family.encode(model, images, labels)
    if inspect.isgenerator(z):  # long encodings (projection by optimisation) yield progress and cancel points
        z = yield from z
    return Output("latent", z.reshape(-1).float().cpu().numpy(), {"images": int(images.shape[0]),
                                                                  "shape": list(z.shape)})

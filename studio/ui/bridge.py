"""The Qt bridge to the engine: engine callbacks (on the worker thread) become queued signals whose slots run on
the GUI thread. Preview frames whose stamp is not the newest are dropped, so a slider burst never shows stale
frames and never builds a backlog.

The engine is anything with the `studio.engine.api.EngineAPI` protocol: the real `studio.engine.Engine`, or the UI
tests' fake one (the same scheduler with a renderer that needs no torch).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal, Slot

from studio.engine.api import EngineAPI
from studio.engine.scheduler import EXPORT, PREVIEW, Event, Work
from studio.steps import Output
from studio.request import RenderRequest

log = logging.getLogger(__name__)


@dataclass
class Task:
    """A job on the export lane (an export, an encode, a latent) with GUI-thread completion callbacks."""

    label: str
    on_done: Callable[[Output], None] | None = None
    on_error: Callable[[str, str], None] | None = None
    on_cancelled: Callable[[], None] | None = None  # default: on_error("<label> was cancelled")
    job: Any = None
    step: int = 0  # the newest progress (long tasks such as a projection report it)
    total: int = 0
    started: float = field(default_factory=time.monotonic)

    def seconds_left(self) -> float | None:
        """The time left at the pace so far (None until a step is done)."""
        if self.step <= 0 or self.total <= self.step:
            return None if self.step <= 0 else 0.0
        return (time.monotonic() - self.started) / self.step * (self.total - self.step)


class EngineBridge(QObject):
    """Submits work to the engine; re-emits its events on the GUI thread."""

    frame = Signal(object, object)  # request, Output: an intermediate (per-step) preview of the newest request
    rendered = Signal(object, object, float, object)  # request, Output, seconds, info: the newest preview finished
    progress = Signal(int, int, str)  # step, total, message of the newest preview
    failed = Signal(object, str, str)  # request, message, detail: the newest preview failed
    started = Signal(object)  # request: the newest preview started rendering
    cancelled = Signal(object)  # request: the newest preview was cancelled (Esc) before it finished
    busy_changed = Signal(bool)
    task_progress = Signal(str, int, int)  # task label, step, total
    tasks_changed = Signal()  # a task started or ended (`tasks` lists those in flight)
    _event = Signal(object)  # internal: carries engine events from the worker to the GUI thread

    def __init__(self, engine: EngineAPI, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self._newest = 0  # stamp of the newest preview asked for
        self._tasks: dict[int, Task] = {}
        self._busy = False
        self._preview_running = False
        self.dropped_frames = 0  # stale preview events dropped (tests and benchmarks read it)
        self._event.connect(self._on_event, Qt.ConnectionType.QueuedConnection)

    # --- submitting (GUI thread) ---------------------------------------------------------------------------------
    def preview(self, request: RenderRequest) -> int:
        """Render `request` on the newest-wins preview lane; returns its stamp."""
        job = self.engine.submit(request, PREVIEW, self._forward)
        self._newest = job.stamp
        self._preview_running = True
        self._update_busy()
        return job.stamp

    def run(self, request: RenderRequest, label: str, on_done: Callable[[Output], None] | None = None,
            on_error: Callable[[str, str], None] | None = None, then: Callable[[Output], Any] | None = None,
            kind: str = "render", images=None, labels=None,
            on_cancelled: Callable[[], None] | None = None) -> Task:
        """A task on the export lane: a render (with `then` run on the worker, e.g. writing a file), an "encode" of
        `images`, or the "latent" of `request`. The callbacks run on the GUI thread."""
        if kind == "encode":
            job = self.engine.encode(request, images, labels, self._forward)
        elif kind == "latent":
            job = self.engine.latent(request, self._forward)
        else:
            job = self.engine.submit(request, EXPORT, self._forward, then=then)
        return self._track(Task(label, on_done, on_error, on_cancelled, job))

    def _track(self, task: Task) -> Task:
        """Follow a submitted task's events (on the GUI thread: they are queued, so none arrives before this)."""
        self._tasks[task.job.stamp] = task
        self._update_busy()
        self.tasks_changed.emit()
        return task

    def run_work(self, request: RenderRequest, label: str, work: Work, on_done: Callable[[Output], None] | None = None,
                 on_error: Callable[[str, str], None] | None = None,
                 on_cancelled: Callable[[], None] | None = None) -> Task:
        """Other long work on the request's model, on the export lane: `work(model, request)` is a generator that
        yields Progress (each a cancel point) and returns an Output (the real engine's `work=`)."""
        job = self.engine.submit(request, EXPORT, self._forward, work=work, kind="work")
        return self._track(Task(label, on_done, on_error, on_cancelled, job))

    def run_animation(self, frames: list[RenderRequest], path, fps: float, label: str, audio=None, metadata: str = "",
                      size: tuple[int, int] | None = None, on_done: Callable[[Output], None] | None = None,
                      on_error: Callable[[str, str], None] | None = None,
                      on_cancelled: Callable[[], None] | None = None, output_size=None) -> Task:
        """A video export on the export lane: the frames rendered in batches on the worker while an encoder thread
        writes them (`studio.engine.animate`); progress per frame, cancellable. `output_size` (an
        studio.export.OutputSize) scales every frame."""
        from studio.engine.animate import export_animation

        job = export_animation(self.engine, frames, path, fps, audio=audio, metadata=metadata, size=size,
                               on_event=self._forward, output_size=output_size)
        return self._track(Task(label, on_done, on_error, on_cancelled, job))

    def cancel(self) -> None:
        """Stop everything in flight (Esc)."""
        self.engine.cancel_all()

    def cancel_tasks(self) -> None:
        """Stop the export-lane tasks (an export, an encode or projection) and leave the preview alone."""
        for task in list(self._tasks.values()):
            task.job.cancel()  # the worker stops at its next cancel point (a queued job never starts)

    @property
    def tasks(self) -> list[Task]:
        """The export-lane tasks in flight, oldest first."""
        return list(self._tasks.values())

    @property
    def busy(self) -> bool:
        return self._busy

    # --- events ---------------------------------------------------------------------------------------------------
    def _forward(self, event: Event) -> None:
        """Engine callback, on the worker thread (or the submitting one): queue it to the GUI thread."""
        if event.kind == "queued":
            return
        self._event.emit(event)

    @Slot(object)
    def _on_event(self, event: Event) -> None:
        job = event.job
        task = self._tasks.get(job.stamp)
        if task is not None:
            self._on_task_event(task, event)
        elif job.lane == PREVIEW:
            self._on_preview_event(event)

    def _on_preview_event(self, event: Event) -> None:
        job = event.job
        if job.stamp != self._newest:
            self.dropped_frames += event.kind in ("preview", "finished")
            return
        if event.kind == "started":
            self.started.emit(job.request)
        elif event.kind == "progress":
            self.progress.emit(event.step, event.total, event.message)
        elif event.kind == "preview":
            self.progress.emit(event.step, event.total, event.message)
            if event.output is not None:
                self.frame.emit(job.request, event.output)
        elif event.kind == "finished":
            self._preview_running = False
            self._update_busy()
            self.rendered.emit(job.request, event.output, job.seconds, dict(job.info))
        elif event.kind in ("error", "cancelled"):
            self._preview_running = False
            self._update_busy()
            if event.kind == "error":
                self.failed.emit(job.request, event.message, event.detail)
            else:
                self.cancelled.emit(job.request)

    def _on_task_event(self, task: Task, event: Event) -> None:
        if event.kind in ("progress", "preview"):
            task.step, task.total = event.step, event.total
            self.task_progress.emit(task.label, event.step, event.total)
            return
        if event.kind not in ("finished", "error", "cancelled"):
            return
        del self._tasks[event.job.stamp]
        self._update_busy()
        self.tasks_changed.emit()
        try:
            if event.kind == "finished" and task.on_done is not None:
                assert event.output is not None  # the scheduler finishes a job with its output (or then's)
                task.on_done(event.output)
            elif event.kind == "error" and task.on_error is not None:
                task.on_error(event.message, event.detail)
            elif event.kind == "cancelled" and task.on_cancelled is not None:
                task.on_cancelled()
            elif event.kind == "cancelled" and task.on_error is not None:
                task.on_error(f"{task.label} was cancelled", "")
        except Exception:  # a broken handler must not take the bridge down
            log.exception("task handler failed")

    def _update_busy(self) -> None:
        busy = self._preview_running or bool(self._tasks)
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    def shutdown(self) -> bool:
        """Cancel, and join the engine's worker for at most 5 s; whether it has ended."""
        return bool(self.engine.shutdown(wait=True, timeout=5.0))

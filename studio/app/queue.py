"""The render queue, with no Qt: jobs of batch count × batch size over seeds, run one batch at a time on the export
lane, in order, with front / back / replace modes and per-job cancel.

    queue = RenderQueue(runner, folder)
    queue.add(request, count=10, batch_size=4, seeds=job_seeds(request.seed, 40, "increment"), mode="back")

Each batch is one engine job (`studio.engine.work.render_batch`), so the preview lane, which goes before waiting
exports, keeps answering slider moves while a queue runs, and a job added to the front runs as soon as the batch in
flight ends. Files are written into `folder` as they finish (a cancelled job keeps what it had written).
Listeners: changed() when a job is added, starts, advances or ends; batch_done(job, items) for every batch that
wrote files (items: the (request, path) of each, a cancelled batch's too); the message(level, text, detail) of the
document.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from studio.app.document import OpenDocument
from studio.app.listeners import Listeners
from studio.app.models import ERROR, INFO
from studio.app.tasks import Handle, Runner, file_stem, renders_folder
from studio.engine import work
from studio.errors import StudioError
from studio.export import check_writable_folder
from studio.paths import user_data_dir
from studio.request import MAX_SEED, SEED_MODES, RenderRequest
from studio.steps import Output

ADD_MODES = ("back", "front", "replace")  # where a new job goes: after the others, next, or instead of them
MAX_IMAGES = 10_000  # the most pictures or sounds one job may ask for
WAITING, RUNNING, DONE, CANCELLED, FAILED = "waiting", "running", "done", "cancelled", "failed"


def job_seeds(seed: int, total: int, mode: str, draw: Callable[[], int] | None = None) -> list[int]:
    """The seeds of a job of `total` renders from `seed`: one after another (fixed and increment: the modes differ in
    what the document's seed does afterwards, see `seed_after`), or each drawn by `draw` (random; a fresh
    `random.SystemRandom` by default)."""
    if mode not in SEED_MODES:
        raise StudioError(f"unknown seed mode {mode!r} (use {', '.join(SEED_MODES)})")
    if not 1 <= total <= MAX_IMAGES:
        raise StudioError(f"a job renders 1 to {MAX_IMAGES} times, asked for {total}")
    if mode == "random":
        draw = draw or partial(random.SystemRandom().randrange, MAX_SEED + 1)
        return [draw() for _ in range(total)]
    return [(seed + k) % (MAX_SEED + 1) for k in range(total)]


def seed_after(seed: int, total: int, mode: str) -> int:
    """The document's seed once a job of `total` renders from `seed` is queued: past the job's seeds (increment), so
    the next job continues; unchanged otherwise."""
    return (seed + total) % (MAX_SEED + 1) if mode == "increment" else seed


@dataclass
class QueuedJob:
    """A job in the queue: `request` at `seeds` in batches of `batch_size`, written into `folder`."""

    id: int
    request: RenderRequest
    seeds: list[int]
    batch_size: int
    folder: Path
    suffix: str
    label: str
    state: str = WAITING
    done: int = 0  # renders written
    paths: list[Path] = field(default_factory=list)
    error: str = ""
    added: float = field(default_factory=time.time)
    handle: Handle | None = field(default=None, repr=False)
    in_flight: list[tuple[int, Path]] = field(default_factory=list, repr=False)  # the running batch's seeds, paths

    @property
    def total(self) -> int:
        return len(self.seeds)

    @property
    def batches(self) -> int:
        return -(-self.total // self.batch_size)

    @property
    def finished(self) -> bool:
        return self.state in (DONE, CANCELLED, FAILED)

    @property
    def rendering(self) -> bool:
        return self.state == RUNNING

    def next_batch(self) -> tuple[list[int], list[Path]]:
        seeds = self.seeds[self.done:self.done + self.batch_size]
        names = [self.folder / f"{file_stem(self.request.model_id)}-{self.id:04d}-{self.done + k + 1:04d}-s{s}"
                 f"{self.suffix}" for k, s in enumerate(seeds)]
        return seeds, names

    def status(self) -> str:
        """One line for the queue's list: what, how far, how it ended."""
        shown = {WAITING: "waiting", RUNNING: "rendering", DONE: "done", CANCELLED: "cancelled", FAILED: "failed"}
        text = f"{self.label}: {self.done}/{self.total} {shown[self.state]}"
        return f"{text} ({self.error})" if self.error else text


class RenderQueue:
    """Jobs run by `runner` one batch at a time, in order; files go into a folder per day inside `folder`."""

    MODES = ADD_MODES  # (for the window, whose panels do not import this module)

    def __init__(self, runner: Runner, folder: Path | None = None,
                 message: Callable[[str, str, str], None] | None = None):
        self.runner, self.folder = runner, Path(folder) if folder is not None else renders_folder()
        self.message = message or (lambda level, text, detail: None)
        self.jobs: list[QueuedJob] = []  # every job of this session, in the order they run (finished ones first)
        self.changed = Listeners()
        self.batch_done = Listeners()
        self._ids = itertools.count(1)
        self._running: QueuedJob | None = None

    # --- what the window and the tests see ----------------------------------------------------------------------
    @property
    def waiting(self) -> list[QueuedJob]:
        return [job for job in self.jobs if job.state == WAITING]

    @property
    def running(self) -> QueuedJob | None:
        return self._running

    @property
    def active(self) -> list[QueuedJob]:
        """The running job, then the waiting ones in the order they will run."""
        return ([self._running] if self._running is not None else []) + self.waiting

    def job(self, job_id: int) -> QueuedJob | None:
        return next((job for job in self.jobs if job.id == job_id), None)

    # --- adding and cancelling ----------------------------------------------------------------------------------
    def add(self, request: RenderRequest, seeds: Sequence[int], batch_size: int = 1, mode: str = "back",
            kind: str = "image", label: str = "") -> QueuedJob:
        """Queue `request` at `seeds`, `batch_size` renders to an engine job; `mode` back (after the others), front
        (next, once the batch in flight ends) or replace (cancel every other job first). Raises StudioError for a
        bad mode or size, or an output folder that cannot be written."""
        if mode not in ADD_MODES:
            raise StudioError(f"unknown queue mode {mode!r} (use {', '.join(ADD_MODES)})")
        if not 1 <= batch_size <= 64:
            raise StudioError(f"the batch size must be 1 to 64, got {batch_size}")
        if not 1 <= len(seeds) <= MAX_IMAGES:
            raise StudioError(f"a job renders 1 to {MAX_IMAGES} times, asked for {len(seeds)}")
        folder = self.folder / time.strftime("%Y-%m-%d")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudioError(f"cannot make the output folder: {exc.strerror or exc}", folder) from None
        check_writable_folder(folder / "probe.png")
        job_id = next(self._ids)
        prompt = str(request.param("prompt") or "").strip().replace("\n", " ")
        label = label or f"#{job_id} {request.model_id}" + (f" “{prompt[:24]}”" if prompt else "")
        job = QueuedJob(job_id, request.with_(latent=None), [int(s) for s in seeds], int(batch_size), folder,
                        ".wav" if kind == "audio" else ".png", label)
        if mode == "replace":
            self.cancel_all()
        if mode == "front":  # before the running job too: it goes on after this one
            head = next((i for i, j in enumerate(self.jobs) if j.state in (WAITING, RUNNING)), len(self.jobs))
            self.jobs.insert(head, job)
        else:
            self.jobs.append(job)
        self.changed()
        self._pump()
        return job

    def cancel(self, job_id: int) -> None:
        """Cancel a job: a waiting one never starts; the running one stops at its next cancel point and keeps the
        files it had written."""
        job = self.job(job_id)
        if job is None or job.finished:
            return
        if job is self._running and job.handle is not None:
            job.handle.job.cancel()  # its batch's on_cancelled ends it and starts the next
            job.state = CANCELLED
            self.changed()
            return
        job.state = CANCELLED
        self.changed()

    def cancel_all(self) -> None:
        for job in self.active:
            self.cancel(job.id)

    def clear_finished(self) -> None:
        """Forget the finished jobs (their files stay)."""
        self.jobs = [job for job in self.jobs if not job.finished or job is self._running]
        self.changed()

    def move(self, job_id: int, index: int) -> None:
        """Move a waiting job to `index` among the waiting ones (0: next)."""
        job = self.job(job_id)
        if job is None or job.state != WAITING:
            return
        self.jobs.remove(job)
        waiting = [i for i, j in enumerate(self.jobs) if j.state == WAITING]
        where = waiting[index] if 0 <= index < len(waiting) else (waiting[-1] + 1 if waiting else len(self.jobs))
        self.jobs.insert(where, job)
        self.changed()

    # --- running --------------------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Start the next batch when none is in flight: the running job's next one, or the first waiting job's
        (a job added to the front since goes first)."""
        if self._running is not None and self._running.handle is not None:
            return
        job = self._running if self._running is not None and self._running.state == RUNNING else None
        waiting = self.waiting
        if waiting and (job is None or self.jobs.index(waiting[0]) < self.jobs.index(job)):
            if job is not None:  # a job added to the front goes first; the interrupted one waits behind it
                job.state = WAITING
            job = waiting[0]
        self._running = job
        if job is None:
            return
        job.state = RUNNING
        seeds, paths = job.next_batch()
        job.in_flight = list(zip(seeds, paths))
        batch = partial(work.render_batch, seeds=seeds, paths=paths, done=job.done, total=job.total)
        job.handle = self.runner.run_work(
            job.request, job.label, batch, on_done=lambda output: self._batch_finished(job, output),
            on_error=lambda text, detail: self._batch_failed(job, text, detail),
            on_cancelled=lambda: self._batch_cancelled(job))
        self.changed()

    def _record(self, job: QueuedJob, items: list[tuple[RenderRequest, Path]]) -> None:
        job.handle, job.in_flight = None, []
        job.done += len(items)
        job.paths.extend(path for _, path in items)
        if items:
            self.batch_done(job, items)

    def _written(self, job: QueuedJob) -> list[tuple[RenderRequest, Path]]:
        """The files the batch in flight wrote before it stopped (each is written whole or not at all)."""
        return [(job.request.with_(seed=seed), path) for seed, path in job.in_flight if path.is_file()]

    def _batch_finished(self, job: QueuedJob, output: Output) -> None:
        self._record(job, [(request, Path(path)) for request, path in output.info.get("items", [])])
        if job.state == RUNNING and job.done >= job.total:
            job.state = DONE
            self.message(INFO, f"Queue: {job.label} finished ({job.total} in {job.folder})", str(job.folder))
        if job.finished or job.state == WAITING:
            self._running = None
        self.changed()
        self._pump()

    def _batch_failed(self, job: QueuedJob, text: str, detail: str) -> None:
        self._record(job, self._written(job))
        job.state, job.error = FAILED, text
        self._running = None
        self.message(ERROR, f"Queue: {job.label} failed after {job.done} of {job.total}: {text}", detail or text)
        self.changed()
        self._pump()

    def _batch_cancelled(self, job: QueuedJob) -> None:
        self._record(job, self._written(job))
        job.state = CANCELLED
        self._running = None
        self.changed()
        self._pump()


def generate(queue: RenderQueue, document: OpenDocument, count: int = 1, batch_size: int = 1,
             mode: str = "back") -> QueuedJob | None:
    """*Generate*: queue the document's request, `count` batches of `batch_size`, over the seeds its seed mode gives
    (increment then moves the document's seed past them, one undo step). None, with the reason in the document's
    messages, when there is nothing to render or the job is refused."""
    request = document.request
    if request is None:
        return None
    try:
        seeds = job_seeds(request.seed, count * batch_size, document.seed_mode, document.draw_seed)
        job = queue.add(request, seeds, batch_size, mode, kind=document.output_kind)
    except StudioError as exc:
        document.message(ERROR, f"Cannot queue the render: {exc.problem}", str(exc))
        return None
    after = seed_after(request.seed, len(seeds), document.seed_mode)
    if after != request.seed:
        document.change("Next seed", seed=after, latent=None)
    return job

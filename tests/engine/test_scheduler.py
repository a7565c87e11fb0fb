"""The engine's scheduler on its own: lanes, newest-wins, FIFO, cancel, errors and events, driven by a minimal renderer
with no torch and no model. A gate the test holds decides what is in flight and what waits, never timing.

The torch renderer is tested through the Engine in test_engine.py; the UI tests drive the same scheduler through
the fake engine (tests/fake_engine.py).
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from studio.engine.api import EngineAPI
from studio.engine.scheduler import EXPORT, PREVIEW, Cancelled, Job, Scheduler
from studio.errors import RequestError
from studio.steps import Output, Preview, Progress

from conftest import Recorder

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


# --- a minimal renderer ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """All the scheduler needs of a request is its model_id; `mode` picks what GateRenderer does: "" (block on the
    gate), "raise" (ValueError mid-job), "studio" (a RequestError mid-job)."""

    seed: int
    mode: str = ""
    model_id: str = "gate"


class GateRenderer:
    """Each job yields progress and a bare cancel point, then blocks on `gate` until the test releases it, yields a
    preview and returns an Output holding its seed (and the job's kind and payload in its info)."""

    def __init__(self):
        self.gate = threading.Event()
        self.entered: queue.Queue[int] = queue.Queue()  # seeds whose job reached the gate
        self.calls: list[int] = []  # seeds whose job started
        self.closed: list[int] = []  # seeds whose job saw GeneratorExit
        self.completed: list[int] = []  # seeds whose job ran to its end
        self.worker_threads: list[threading.Thread] = []  # threads that entered worker()
        self.run_threads: set[threading.Thread] = set()

    @contextlib.contextmanager
    def worker(self):
        self.worker_threads.append(threading.current_thread())
        yield

    def run(self, job: Job):
        seed, mode = job.request.seed, job.request.mode
        self.calls.append(seed)
        self.run_threads.add(threading.current_thread())
        yield Progress(0, 2, "started")
        yield None  # a cancel point with nothing to report: no event
        if mode == "raise":
            raise ValueError("kaboom in the renderer")
        if mode == "studio":
            raise RequestError("this prompt cannot be drawn", field="prompt")
        try:
            self.entered.put(seed)
            assert self.gate.wait(TIMEOUT), "the test never released the gate"
            yield Preview(1, 2, "half way", Output("image", np.zeros((1, 1, 1), np.uint8)))
        except GeneratorExit:
            self.closed.append(seed)
            raise
        self.completed.append(seed)
        return Output("image", np.full((1, 1, 1), seed, np.uint8), {"kind": job.kind, "payload": job.payload})

    def wait_entered(self, seed: int) -> None:
        got = self.entered.get(timeout=TIMEOUT)
        assert got == seed, f"job of seed {got} reached the gate, expected {seed}"


@pytest.fixture
def gated():
    """(renderer, scheduler): a scheduler over a fresh GateRenderer; the gate is opened and the scheduler shut down
    afterwards."""
    renderer = GateRenderer()
    scheduler = Scheduler(renderer)
    try:
        yield renderer, scheduler
    finally:
        renderer.gate.set()
        scheduler.shutdown()


# --- no torch -------------------------------------------------------------------------------------------------------


def test_the_scheduler_and_the_engine_api_import_no_torch():
    code = ("import sys; import studio.engine.scheduler, studio.engine.api, studio.engine; "
            "print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- events ---------------------------------------------------------------------------------------------------------


def test_events_arrive_in_order_on_the_worker_thread(gated):
    renderer, scheduler = gated
    renderer.gate.set()
    per_job, everything = Recorder(), Recorder()
    scheduler.subscribe(everything)
    job = scheduler.submit(Req(3), PREVIEW, on_event=per_job)
    output = job.wait(TIMEOUT)
    assert per_job.wait_end(job) == "finished"
    assert per_job.kinds(job) == ["queued", "started", "progress", "preview", "finished"]  # None made no event
    assert per_job.of(job, "finished")[0].output is output and output.data[0, 0, 0] == 3
    preview = per_job.of(job, "preview")[0]
    assert (preview.step, preview.total, preview.message) == (1, 2, "half way") and preview.output is not None
    everything.wait_end(job)
    assert everything.kinds(job) == per_job.kinds(job)
    assert job.state == "finished" and job.output is output and job.seconds > 0
    assert renderer.worker_threads == [scheduler.worker_thread] != [threading.main_thread()]
    assert renderer.run_threads == {scheduler.worker_thread}


def test_the_worker_context_is_entered_once_for_many_jobs(gated):
    renderer, scheduler = gated
    renderer.gate.set()
    for seed in range(4):
        scheduler.submit(Req(seed), EXPORT).wait(TIMEOUT)
    assert len(renderer.worker_threads) == 1 and renderer.calls == [0, 1, 2, 3]


def test_encode_and_latent_reach_the_renderer_as_kind_and_payload(gated):
    renderer, scheduler = gated
    renderer.gate.set()
    images = np.zeros((2, 4, 4), np.uint8)[:, ::2]  # not contiguous: the scheduler hands on a contiguous copy
    encoded = scheduler.encode(Req(1), images, ("A", "b"))
    assert encoded.lane == EXPORT and encoded.kind == "encode"
    info = encoded.wait(TIMEOUT).info
    got_images, labels = info["payload"]
    assert info["kind"] == "encode" and labels == ["A", "b"]
    assert got_images.flags.c_contiguous and np.array_equal(got_images, images)
    latent = scheduler.latent(Req(2))
    assert latent.lane == EXPORT and latent.wait(TIMEOUT).info == {"kind": "latent", "payload": None}


def test_unknown_lane_is_refused(gated):
    _, scheduler = gated
    with pytest.raises(ValueError, match="lane"):
        scheduler.submit(Req(1), lane="background")


# --- lanes ----------------------------------------------------------------------------------------------------------


def test_preview_lane_is_newest_wins(gated):
    renderer, scheduler = gated
    rec = Recorder()
    scheduler.subscribe(rec)
    first = scheduler.submit(Req(0), PREVIEW)
    renderer.wait_entered(0)
    burst = [scheduler.submit(Req(seed), PREVIEW) for seed in range(1, 50)]
    newest, superseded = burst[-1], burst[:-1]
    for job in superseded:  # superseded at once, on the submitting thread
        assert job.state == "cancelled"
        with pytest.raises(Cancelled):
            job.wait(0)
        assert "superseded" in rec.of(job, "cancelled")[0].message
    renderer.gate.set()
    assert first.wait(TIMEOUT).data[0, 0, 0] == 0
    assert newest.wait(TIMEOUT).data[0, 0, 0] == 49
    rec.wait_end(newest)
    assert renderer.calls == [0, 49]  # the one in flight and the newest
    assert all(rec.kinds(job) == ["queued", "cancelled"] for job in superseded)


def test_export_lane_is_fifo_and_never_superseded(gated):
    renderer, scheduler = gated
    blocker = scheduler.submit(Req(100), EXPORT)
    renderer.wait_entered(100)
    exports = [scheduler.submit(Req(seed), EXPORT) for seed in range(1, 6)]
    assert all(job.state == "queued" for job in exports) and scheduler.busy
    renderer.gate.set()
    blocker.wait(TIMEOUT)
    assert [job.wait(TIMEOUT).data[0, 0, 0] for job in exports] == [1, 2, 3, 4, 5]
    assert renderer.completed == [100, 1, 2, 3, 4, 5]


def test_preview_goes_before_waiting_exports(gated):
    renderer, scheduler = gated
    scheduler.submit(Req(50), EXPORT)
    renderer.wait_entered(50)
    export = scheduler.submit(Req(1), EXPORT)
    preview = scheduler.submit(Req(2), PREVIEW)
    renderer.gate.set()
    export.wait(TIMEOUT)
    preview.wait(TIMEOUT)
    assert renderer.calls == [50, 2, 1]


# --- cancel ---------------------------------------------------------------------------------------------------------


def test_cancel_while_running_closes_the_steps_at_their_next_yield(gated):
    renderer, scheduler = gated
    rec = Recorder()
    job = scheduler.submit(Req(7), EXPORT, on_event=rec)
    renderer.wait_entered(7)
    job.cancel()
    renderer.gate.set()  # the job yields once more: the scheduler closes it there
    with pytest.raises(Cancelled):
        job.wait(TIMEOUT)
    assert rec.wait_end(job) == "cancelled" and "finished" not in rec.kinds(job)
    assert renderer.closed == [7] and renderer.completed == []
    assert job.state == "cancelled" and job.output is None
    assert scheduler.submit(Req(8), EXPORT).wait(TIMEOUT).data[0, 0, 0] == 8  # the worker carries on


def test_cancel_before_start_never_runs_the_job(gated):
    renderer, scheduler = gated
    rec = Recorder()
    scheduler.subscribe(rec)
    running = scheduler.submit(Req(1), EXPORT)
    renderer.wait_entered(1)
    waiting = scheduler.submit(Req(2), EXPORT)
    after = scheduler.submit(Req(3), EXPORT)
    waiting.cancel()
    renderer.gate.set()
    running.wait(TIMEOUT)
    after.wait(TIMEOUT)
    assert rec.wait_end(waiting) == "cancelled"
    assert rec.kinds(waiting) == ["queued", "cancelled"] and renderer.calls == [1, 3]


def test_cancel_all_cancels_waiting_and_running(gated):
    renderer, scheduler = gated
    running = scheduler.submit(Req(1), EXPORT)
    renderer.wait_entered(1)
    waiting = [scheduler.submit(Req(s), EXPORT) for s in (2, 3)]
    preview = scheduler.submit(Req(4), PREVIEW)
    scheduler.cancel_all()
    renderer.gate.set()
    for job in [running, *waiting, preview]:
        with pytest.raises(Cancelled):
            job.wait(TIMEOUT)
    assert renderer.calls == [1] and renderer.closed == [1]


# --- errors ---------------------------------------------------------------------------------------------------------


def test_a_failing_job_is_an_error_event_and_the_worker_lives_on(gated):
    renderer, scheduler = gated
    renderer.gate.set()
    rec = Recorder()
    bad = scheduler.submit(Req(1, "raise"), EXPORT, on_event=rec)
    with pytest.raises(ValueError, match="kaboom"):
        bad.wait(TIMEOUT)
    assert rec.wait_end(bad) == "error" and bad.state == "error"
    event = rec.of(bad, "error")[0]
    assert event.message == "render failed: ValueError: kaboom in the renderer"
    assert isinstance(event.error, ValueError) and "Traceback" in event.detail
    studio = scheduler.submit(Req(2, "studio"), EXPORT, on_event=rec)
    with pytest.raises(RequestError):
        studio.wait(TIMEOUT)
    rec.wait_end(studio)
    assert rec.of(studio, "error")[0].message == "prompt: this prompt cannot be drawn"  # passed through unchanged
    assert scheduler.submit(Req(3), EXPORT).wait(TIMEOUT).data[0, 0, 0] == 3  # the same worker


def test_raising_callbacks_do_not_stop_the_job(gated, caplog):
    renderer, scheduler = gated
    renderer.gate.set()

    def broken(event):
        raise RuntimeError(f"broken listener on {event.kind}")

    scheduler.subscribe(broken)
    rec = Recorder()
    scheduler.subscribe(rec)
    job = scheduler.submit(Req(5), EXPORT, on_event=broken)
    assert job.wait(TIMEOUT).data[0, 0, 0] == 5
    assert rec.wait_end(job) == "finished" and rec.kinds(job)[:2] == ["queued", "started"]
    assert "event callback failed" in caplog.text


# --- shutdown -------------------------------------------------------------------------------------------------------


def test_shutdown_cancels_the_running_job_joins_and_refuses_new_work(gated):
    renderer, scheduler = gated
    running = scheduler.submit(Req(1), EXPORT)
    renderer.wait_entered(1)
    waiting = scheduler.submit(Req(2), EXPORT)
    scheduler.subscribe(lambda e: renderer.gate.set() if e.job is waiting and e.kind == "cancelled" else None)
    scheduler.shutdown()
    for job in (running, waiting):
        with pytest.raises(Cancelled):
            job.wait(TIMEOUT)
    assert renderer.calls == [1] and not scheduler.worker_thread.is_alive()
    with pytest.raises(RuntimeError, match="shut down"):
        scheduler.submit(Req(3))
    assert scheduler.shutdown() is True  # twice is harmless


def test_a_worker_busy_past_the_timeout_is_reported_until_it_ends(gated):
    """A job between two cancel points (a large model loading) outlives shutdown's join: shutdown says so and
    busy_workers lists the thread, so the entry point can end the process without finalizing under it."""
    from studio.engine.scheduler import busy_workers

    renderer, scheduler = gated
    scheduler.submit(Req(1), EXPORT)
    renderer.wait_entered(1)  # blocked on the gate: cancel cannot reach it
    assert scheduler.shutdown(timeout=0.05) is False
    assert scheduler.worker_thread in busy_workers()
    renderer.gate.set()
    scheduler.worker_thread.join(TIMEOUT)
    assert scheduler.worker_thread not in busy_workers()
    assert scheduler.shutdown() is True


def test_a_scheduler_that_never_ran_a_job_shuts_down_ended():
    assert Scheduler(GateRenderer()).shutdown(timeout=0) is True


# --- the UI tests' fake engine is this scheduler ----------------------------------------------------------------------


def test_the_fake_engine_is_the_real_scheduler_with_a_fake_renderer():
    from fake_engine import FakeEngine, FakeRenderer

    fake = FakeEngine()
    try:
        assert isinstance(fake, Scheduler) and isinstance(fake.renderer, FakeRenderer)
        assert isinstance(fake, EngineAPI)
        for name in ("submit", "encode", "latent", "cancel_all", "shutdown", "_next_job", "_execute", "_finish",
                     "_emit"):  # no scheduling of its own
            assert getattr(FakeEngine, name) is getattr(Scheduler, name), name
    finally:
        fake.shutdown()

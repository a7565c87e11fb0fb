"""The render queue (studio.app.queue) through the stub runner, which runs each engine job when told: seeds by mode,
batches, the order of back / front / replace, per-job cancel, failures, and the files with their requests inside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from studio.app.models import ModelLibrary
from studio.app.queue import CANCELLED, DONE, FAILED, RUNNING, WAITING, RenderQueue, job_seeds, seed_after
from studio.errors import StudioError
from studio.export import read_request
from studio.request import MAX_SEED, RenderRequest

from app_stubs import StubRunner
from fake_engine import FakeFamily, FakeModel


class FailingFamily(FakeFamily):
    """Fails to render seed 13."""

    def render(self, model, request):
        if request.seed == 13:
            raise StudioError("seed 13 is unlucky")
        return (yield from super().render(model, request))


@pytest.fixture
def queue(models_dir, tmp_path):
    models = ModelLibrary([models_dir])
    models.refresh()
    family = FailingFamily()
    runner = StubRunner(lambda request: FakeModel(request.model_id, models.entry_for(request.model_id), family))
    heard: list = []
    q = RenderQueue(runner, tmp_path / "out", message=lambda *args: heard.append(args))
    batches: list = []
    q.batch_done.connect(lambda job, items: batches.append((job.id, [r.seed for r, _ in items])))
    return q, runner, family, heard, batches


def request(seed: int = 0, prompt: str = "hi") -> RenderRequest:
    return RenderRequest("tiny", seed=seed, params={"prompt": prompt})


def test_seeds_follow_on_from_the_seed_or_are_drawn_and_the_document_seed_moves_only_for_increment():
    assert job_seeds(5, 4, "increment") == job_seeds(5, 4, "fixed") == [5, 6, 7, 8]
    assert job_seeds(MAX_SEED, 2, "increment") == [MAX_SEED, 0]
    draws = iter([42, 7, 42])
    assert job_seeds(5, 3, "random", draw=lambda: next(draws)) == [42, 7, 42]
    fresh = job_seeds(5, 50, "random")
    assert len(set(fresh)) > 40 and all(0 <= s <= MAX_SEED for s in fresh)
    assert seed_after(5, 4, "increment") == 9 and seed_after(5, 4, "fixed") == seed_after(5, 4, "random") == 5
    with pytest.raises(StudioError, match="seed mode"):
        job_seeds(0, 1, "sideways")
    with pytest.raises(StudioError, match="1 to"):
        job_seeds(0, 0, "increment")


def test_a_job_runs_batch_by_batch_and_writes_every_seed_with_its_request(queue):
    q, runner, family, heard, batches = queue
    job = q.add(request(3), job_seeds(3, 5, "increment"), batch_size=2)
    assert job.batches == 3 and q.running is job and job.state == RUNNING
    assert len(runner.pending) == 1  # one batch in flight at a time
    runner.step()
    assert job.done == 2 and batches == [(job.id, [3, 4])] and len(runner.pending) == 1
    runner.settle()
    assert job.state == DONE and job.done == 5 and q.running is None
    assert batches == [(job.id, [3, 4]), (job.id, [5, 6]), (job.id, [7])]
    assert [r.seed for r in family.rendered] == [3, 4, 5, 6, 7]
    assert len(job.paths) == 5 and all(p.is_file() and p.parent.parent == q.folder for p in job.paths)
    assert [read_request(p).seed for p in job.paths] == [3, 4, 5, 6, 7]
    assert read_request(job.paths[0]).param("prompt") == "hi"
    assert sorted(p.name for p in job.paths) == [p.name for p in job.paths]  # names sort in render order
    assert heard[-1][1].startswith("Queue: ") and "finished" in heard[-1][1]


def test_back_jobs_run_in_order_and_a_front_job_runs_after_the_batch_in_flight(queue):
    q, runner, family, _, _ = queue
    a = q.add(request(0), [0, 1, 2, 3], batch_size=2)
    b = q.add(request(100), [100], mode="back")
    c = q.add(request(200), [200], mode="front")
    assert [j.id for j in q.active] == [a.id, c.id, b.id]
    runner.step()  # a's first batch
    assert q.running is c and a.state == WAITING
    runner.settle()
    assert [r.seed for r in family.rendered] == [0, 1, 200, 2, 3, 100]
    assert a.state == b.state == c.state == DONE


def test_replace_cancels_the_others_and_keeps_what_they_wrote(queue):
    q, runner, family, _, _ = queue
    a = q.add(request(0), [0, 1, 2, 3], batch_size=2)
    b = q.add(request(100), [100, 101])
    runner.step()  # a wrote 0 and 1 and starts its second batch
    c = q.add(request(200), [200], mode="replace")
    runner.settle()
    assert a.state == b.state == CANCELLED and c.state == DONE
    assert [r.seed for r in family.rendered] == [0, 1, 200]
    assert a.done == 2 and all(p.is_file() for p in a.paths) and b.done == 0


def test_cancelling_one_job_leaves_the_others(queue):
    q, runner, family, _, _ = queue
    a = q.add(request(0), [0, 1])
    b = q.add(request(100), [100])
    c = q.add(request(200), [200])
    q.cancel(b.id)
    assert [j.id for j in q.active] == [a.id, c.id]
    q.cancel(a.id)  # the running one: its batch in flight stops
    runner.settle()
    assert [r.seed for r in family.rendered] == [200]
    assert (a.state, b.state, c.state) == (CANCELLED, CANCELLED, DONE)
    q.cancel(c.id)  # a finished job stays finished
    assert c.state == DONE
    q.clear_finished()
    assert q.jobs == []


def test_a_cancelled_batch_keeps_the_files_it_had_written(queue, tmp_path):
    q, runner, _, _, batches = queue
    job = q.add(request(0), [0, 1, 2], batch_size=3)
    seeds, paths = zip(*job.in_flight)
    paths[0].write_bytes(b"a finished render")  # the engine wrote the first before the cancel reached it
    q.cancel(job.id)
    runner.settle()
    assert job.state == CANCELLED and job.done == 1 and job.paths == [paths[0]]
    assert batches == [(job.id, [0])]


def test_a_failing_render_fails_its_job_says_so_and_the_queue_goes_on(queue):
    q, runner, family, heard, _ = queue
    a = q.add(request(11), [11, 12, 13, 14])
    b = q.add(request(100), [100])
    runner.settle()
    assert a.state == FAILED and a.done == 2 and "unlucky" in a.error and b.state == DONE
    assert any("failed after 2 of 4" in text and "unlucky" in text for _, text, _ in heard)
    assert "failed" in a.status() and "2/4" in a.status()


def test_moving_a_waiting_job(queue):
    q, _, _, _, _ = queue
    a, b, c = (q.add(request(s), [s]) for s in (0, 1, 2))
    q.move(c.id, 0)
    assert [j.id for j in q.active] == [a.id, c.id, b.id]
    q.move(c.id, 5)
    assert [j.id for j in q.active] == [a.id, b.id, c.id]


def test_bad_sizes_modes_and_an_unwritable_folder_are_refused_with_the_reason(queue, tmp_path):
    q, runner, _, _, _ = queue
    with pytest.raises(StudioError, match="queue mode"):
        q.add(request(), [0], mode="middle")
    with pytest.raises(StudioError, match="batch size"):
        q.add(request(), [0], batch_size=0)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    q.folder = blocked
    with pytest.raises(StudioError) as caught:
        q.add(request(), [0])
    assert "blocked" in str(caught.value)
    if os.name != "nt" and os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        q.folder = ro
        with pytest.raises(StudioError):
            q.add(request(), [0])
    assert runner.pending == [] and q.jobs == []


def test_an_explicit_latent_gives_way_to_the_job_seeds(queue):
    q, runner, family, _, _ = queue
    q.add(request(0).with_(latent=[0.5] * 8), [7])
    runner.settle()
    assert family.rendered[-1].seed == 7 and family.rendered[-1].latent is None
    assert Path(q.jobs[0].paths[0]).suffix == ".png"


def test_generate_queues_the_document_over_its_seed_mode_and_moves_the_seed_for_increment(queue, models_dir):
    from studio.app.document import OpenDocument
    from studio.app.queue import generate

    q, runner, family, _, _ = queue
    models = ModelLibrary([models_dir])
    doc = OpenDocument(models)
    doc.start("tiny")
    doc.change("Seed", seed=20)
    doc.set_seed_mode("increment")
    job = generate(q, doc, count=2, batch_size=3)
    assert job is not None and job.seeds == [20, 21, 22, 23, 24, 25] and doc.request.seed == 26
    doc.undo.undo()  # the seed's move is one undo step
    assert doc.request.seed == 20
    doc.set_seed_mode("fixed")
    assert generate(q, doc, count=2).seeds == [20, 21] and doc.request.seed == 20
    doc.set_seed_mode("random")
    drawn = generate(q, doc, count=3).seeds
    assert len(set(drawn)) == 3 and 20 not in drawn and doc.request.seed == 20
    heard: list = []
    doc.message.connect(lambda *args: heard.append(args))
    assert generate(q, doc, count=0) is None and "Cannot queue" in heard[-1][1]
    runner.settle()
    got, want = sorted(r.seed for r in family.rendered), sorted([20, 21, 22, 23, 24, 25, 20, 21, *drawn])
    assert got == want, (got, want)

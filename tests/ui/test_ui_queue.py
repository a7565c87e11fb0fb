"""The Queue dock in the window (fake engine): Ctrl+Enter queues batch count × batch size renders over the seed
mode's seeds, the files land in the user data folder with their requests, previews keep coming while the queue runs,
and jobs are cancelled one by one (Delete) or all at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from studio.app.queue import CANCELLED, DONE
from studio.export import read_request

from fake_engine import FakeEngine
from test_ui_window import _no_blocking_dialogs, window  # noqa: F401  (fixtures)


@pytest.fixture
def engine():
    """Each engine job (a preview, a batch of the queue) takes 0.1 s."""
    fake = FakeEngine(delay=0.1)
    yield fake
    fake.shutdown()


def rendered_files() -> list[Path]:
    return sorted((Path(os.environ["LATENT_STUDIO_DATA"]) / "renders").rglob("*.png"))


def test_ctrl_enter_queues_count_times_size_over_the_seeds_and_writes_each(qtbot, window):
    session, panel = window.session, window.queue
    session.set_seed_mode("increment")
    seed = session.request.seed
    panel.count.setValue(2)
    panel.batch_size.setValue(3)
    window.activateWindow()
    QTest.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    queue = session.render_queue
    assert len(queue.jobs) == 1 and queue.jobs[0].seeds == list(range(seed, seed + 6))
    assert session.request.seed == seed + 6  # increment: the next Generate continues
    assert window.docks["Queue"].isVisible()
    qtbot.waitUntil(lambda: queue.jobs[0].state == DONE, timeout=10000)
    files = rendered_files()
    assert [read_request(f).seed for f in files] == list(range(seed, seed + 6))
    assert panel.jobs.count() == 1 and "6/6 done" in panel.jobs.item(0).text()
    assert panel.summary.text() == "Queue: idle"
    # every render is in the gallery, newest first (the index is written on its own thread: the last batch's
    # write can land just after the job is done)
    gallery = session.open_gallery()
    qtbot.waitUntil(lambda: gallery.count() == 6, timeout=10000)
    indexed = gallery.items()
    assert sorted(int(i.seed) for i in indexed) == list(range(seed, seed + 6))
    assert {i.path for i in indexed} == {f.resolve() for f in files} and indexed[0].source == "queue"


def test_previews_keep_rendering_while_the_queue_runs(qtbot, window):
    session, panel = window.session, window.queue
    panel.count.setValue(12)
    panel.generate_button.click()
    job = session.render_queue.jobs[0]
    qtbot.waitUntil(lambda: job.done >= 1, timeout=5000)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.random_seed()  # a preview goes before the queue's waiting batches
    assert not job.finished and job.done < job.total
    panel.cancel_all_button.click()
    qtbot.waitUntil(lambda: job.state == CANCELLED and session.render_queue.running is None, timeout=5000)
    assert 1 <= job.done < 12 and len(rendered_files()) == job.done


def test_delete_cancels_the_picked_job_and_the_others_go_on(qtbot, window):
    session, panel = window.session, window.queue
    for _ in range(3):
        window.act_generate.trigger()
    a, b, c = session.render_queue.jobs
    rows = [panel.jobs.item(i).data(Qt.ItemDataRole.UserRole) for i in range(panel.jobs.count())]
    assert rows == [a.id, b.id, c.id]
    assert window.docks["Queue"].isVisible()  # Generate brings the queue forward
    panel.jobs.item(1).setSelected(True)
    QTest.keyClick(panel.jobs, Qt.Key.Key_Delete)
    assert b.state == CANCELLED and a.state != CANCELLED
    qtbot.waitUntil(lambda: not session.render_queue.active, timeout=10000)
    assert (a.state, b.state, c.state) == (DONE, CANCELLED, DONE), (a.status(), b.status(), c.status())
    assert "cancelled" in next(panel.jobs.item(i).text() for i in range(3)
                               if panel.jobs.item(i).data(Qt.ItemDataRole.UserRole) == b.id)
    panel.clear_button.click()
    assert panel.jobs.count() == 0 and len(rendered_files()) == 2

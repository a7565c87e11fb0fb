"""The app's timeline with the real engine and a tiny seeded model: keyframes from what is on screen, a video export
with progress that decodes back, Cancel that leaves nothing, and an export that cannot start saying why."""

from __future__ import annotations

import av
import pytest
from PySide6.QtCore import QSettings

from studio.engine.engine import Engine
from studio.project.timeline import Timeline
from studio.ui import dialogs
from studio.ui.main_window import MainWindow
from studio.ui.session import Session


@pytest.fixture(autouse=True)
def _no_blocking_dialogs(monkeypatch):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)


@pytest.fixture
def window(qtbot, models_dir, tmp_path):
    engine = Engine(device="cpu", roots=[models_dir])
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat), None)
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=10000):
        session.start("tiny")
    w.show()
    yield w
    session.undo.setClean()
    w.close()
    session.shutdown()


def add_keyframes(qtbot, window, seeds) -> None:
    session = window.session
    for seed in seeds:
        session.change("Seed", seed=seed)
        with qtbot.waitSignal(session.timeline_changed, timeout=10000):
            window.act_keyframe.trigger()
    assert len(session.timeline.keyframes) == len(seeds)


def test_keyframes_from_the_screen_export_to_a_video_with_progress(qtbot, window, tmp_path, monkeypatch):
    from studio.ui import main_window

    monkeypatch.setattr(main_window, "PROGRESS_DELAY_S", 0.0)  # (a short export shows its progress too)
    session = window.session
    add_keyframes(qtbot, window, [1, 2, 3])
    key = session.timeline.keyframes[1]
    assert key.request.latent is not None and key.request.seed == 2  # the exact latent that was on screen
    session.edit_timeline(fps=8)
    out = tmp_path / "walk.mp4"
    steps, shown = [], []
    session.bridge.task_progress.connect(lambda label, step, total: steps.append((step, total)))
    window.statusBar().messageChanged.connect(shown.append)
    labels: list[str] = []
    set_text = window.task_label.setText
    window.task_label.setText = lambda text: (labels.append(text), set_text(text))
    with qtbot.waitSignal(session.message, timeout=20000,
                          check_params_cb=lambda level, text, detail: "Exported walk.mp4" in text):
        session.export_video(out)
    assert steps and steps[-1] == (32, 32)  # 2 segments of 2 s at 8 fps
    # the one progress display says where the export is and the time left; the status message does not repeat it
    assert any(text.startswith("Export walk.mp4: ") and " left" in text for text in labels), labels
    assert not any(text.startswith("Export walk.mp4: ") for text in shown), shown
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 32


def test_cancel_leaves_nothing_and_the_document_as_it_was(qtbot, window, tmp_path):
    session = window.session
    add_keyframes(qtbot, window, [4, 5])
    session.edit_keyframe(0, duration=600.0)
    session.edit_timeline(fps=60)  # 36,000 frames: it cannot finish before the cancel
    before = session.timeline
    out = tmp_path / "long.webm"
    session.bridge.task_progress.connect(lambda *_: session.bridge.cancel_tasks())
    with qtbot.waitSignal(session.message, timeout=20000,
                          check_params_cb=lambda level, text, detail: "cancelled" in text):
        session.export_video(out)
    qtbot.waitUntil(lambda: not session.bridge.tasks, timeout=10000)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".long")]
    assert session.timeline == before


def test_an_export_that_cannot_start_says_why(qtbot, window, tmp_path):
    session = window.session
    assert session.timeline == Timeline()
    with qtbot.waitSignal(session.message, timeout=5000) as blocker:
        session.export_video(tmp_path / "none.mp4")
    assert blocker.args[0] == "error" and "two keyframes" in blocker.args[2]
    add_keyframes(qtbot, window, [1, 2])
    with qtbot.waitSignal(session.message, timeout=5000) as blocker:
        session.export_video(tmp_path / "missing" / "x.mp4")
    assert blocker.args[0] == "error" and "missing" in blocker.args[2]


def test_a_sound_with_a_quiet_intro_is_accepted_and_a_silent_one_refused(qtbot, window, tmp_path):
    import numpy as np
    import soundfile as sf

    rate = 8000
    intro = np.concatenate([np.zeros(3 * rate), 0.5 * np.sin(np.arange(rate) / rate * 2 * np.pi * 220)])
    sf.write(str(tmp_path / "intro.wav"), intro.astype(np.float32), rate)
    sf.write(str(tmp_path / "silent.wav"), np.zeros(rate, np.float32), rate)
    session = window.session
    assert session.set_timeline_audio(tmp_path / "intro.wav")
    assert session.timeline.audio.endswith("intro.wav")
    with qtbot.waitSignal(session.message, timeout=5000) as blocker:
        assert not session.set_timeline_audio(tmp_path / "silent.wav")
    assert blocker.args[0] == "error" and "silent" in blocker.args[2]
    assert session.timeline.audio.endswith("intro.wav")  # unchanged


def test_use_last_sound_without_one_says_so(qtbot, window):
    assert not window.timeline.last_sound.isEnabled()
    with qtbot.waitSignal(window.session.message, timeout=5000) as blocker:
        assert not window.session.use_last_sound()
    assert blocker.args[0] == "warning" and "No sound" in blocker.args[1]


def test_export_grid_renders_every_cell_on_the_worker_and_writes_labels(qtbot, window, tmp_path, monkeypatch):
    from PIL import Image

    from studio.export import read_request

    out = tmp_path / "plot.png"
    monkeypatch.setattr(dialogs, "ask_grid", lambda parent, seed, suggestion: (str(out), "seed=1,2", "d0=-1,0,1"))
    with qtbot.waitSignal(window.session.message, timeout=20000,
                          check_params_cb=lambda level, text, detail: "Exported the grid plot.png (2 × 3)" in text):
        window.act_export_grid.trigger()
    with Image.open(out) as image:
        assert image.width > 3 * 32 and image.height > 2 * 16
    assert read_request(out).model_id == "tiny"
    with qtbot.waitSignal(window.session.message, timeout=5000) as blocker:
        window.session.export_grid(tmp_path / "bad.png", "seed=1,2", "wobble=1")
    assert blocker.args[0] == "error" and "wobble" in blocker.args[2]
    assert not (tmp_path / "bad.png").exists()

"""The app with a sound model, on the offscreen platform with the real engine and a tiny seeded audio VAE: the audio
preview replaces the canvas, export writes every audio format with the request inside, dropping the file restores it,
a sound file (at another rate) is encoded into the latent, the variations grid auditions and continues, and with no
audio device everything but playback works."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QSettings

from conftest import make_tiny_audio_package, make_tiny_package
from studio.engine.engine import Engine
from studio.export import read_any_request
from studio.train.sounds import synthesize
from studio.ui import dialogs
from studio.ui.main_window import MainWindow
from studio.ui.session import Session
from dialog_guard import block_dialogs

AUDIO, IMAGE = "tiny-audio", "tiny"


@pytest.fixture(autouse=True)
def _no_blocking_dialogs(monkeypatch):
    block_dialogs(monkeypatch, "ask_export_sound", "ask_sound")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    make_tiny_audio_package(root / AUDIO)
    make_tiny_package(root / IMAGE)
    return root


@contextlib.contextmanager
def sound_window(qtbot, root: Path, model: str, settings: Path, timeout: int = 10000) -> Iterator[MainWindow]:
    """The main window on the real engine with the models in `root`, sound model `model` open and rendered."""
    engine = Engine(device="cpu", roots=[root])
    session = Session(engine, roots=[root])
    session.refresh_models()
    w = MainWindow(session, QSettings(str(settings), QSettings.Format.IniFormat), None)
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.sound_changed, timeout=timeout):
        session.start(model)
    session.undo.setClean()
    w.show()
    try:
        yield w
    finally:
        session.undo.setClean()
        w.close()
        session.shutdown()


@pytest.fixture
def window(qtbot, models, tmp_path):
    with sound_window(qtbot, models, AUDIO, tmp_path / "window.ini") as w:
        yield w


def settle(qtbot, window, timeout: int = 10000):
    qtbot.waitUntil(lambda: not window.session.bridge.busy, timeout=timeout)
    window.session.flush_history()


def message(qtbot, session, want: str, timeout: int = 10000):
    return qtbot.waitSignal(session.message, timeout=timeout, check_params_cb=lambda level, text, d: want in text)


def test_a_sound_model_shows_the_audio_view_and_sound_actions(qtbot, window):
    assert window.views.currentWidget() is window.audio_view
    assert window.act_export.text().replace("&", "") == "Export Sound…"
    assert window.act_encode.text().replace("&", "") == "Encode Sound…"
    assert window.act_play.isEnabled() and not window.act_copy.isEnabled()
    assert not window.act_export_grid.isEnabled() and not window.act_export_video.isEnabled()  # images only
    assert window.latent.encode_button.text() == "Encode Sound…" and window.latent.encode_button.isEnabled()
    sound = window.audio_view.sound()
    assert sound is not None and sound.shape == (1024, 1)
    assert np.array_equal(sound, window.session.last_output.data)
    settle(qtbot, window)
    assert window.session.document.history[-1].thumbnail_png  # a waveform thumbnail
    with qtbot.waitSignal(window.session.rendered, timeout=10000):
        window.session.use_model(IMAGE)
    assert window.views.currentWidget() is window.canvas
    assert window.act_export.text().replace("&", "") == "Export Image…" and window.act_copy.isEnabled()


def test_without_an_audio_device_the_app_says_so_and_renders(qtbot, window):
    view = window.audio_view
    assert not view.playback_available  # no sound device on the test machines
    assert "playback is off" in view.status_text().lower()
    with qtbot.waitSignal(window.session.sound_changed, timeout=10000):
        window.session.set_param("label", "kick", "Class")
    window.act_play.trigger()  # does nothing, raises nothing
    assert not view.is_playing()


@pytest.mark.parametrize("name, subtype, expected", [
    ("hit.wav", "PCM_24", "PCM_24"), ("hit.wav", "FLOAT", "FLOAT"), ("hit.flac", None, "PCM_16"),
    ("hit.ogg", None, "VORBIS"), ("hit.mp3", None, "MPEG_LAYER_III"),
])
def test_export_writes_the_sound_with_its_request_and_dropping_it_restores(qtbot, window, tmp_path, monkeypatch,
                                                                          name, subtype, expected):
    session = window.session
    session.set_param("d0", 1.5, "d0")
    settle(qtbot, window)
    wanted = session.request
    out = tmp_path / "exports" / name
    out.parent.mkdir()
    monkeypatch.setattr(dialogs, "ask_export_sound", lambda parent, suggestion: (str(out), subtype))
    with message(qtbot, session, "Exported"):
        window.act_export.trigger()
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, expected)
    stored = read_any_request(out)
    assert stored.with_(model_hash="") == wanted and len(stored.model_hash) == 64
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left
    if expected == "FLOAT":
        data, _ = sf.read(str(out), dtype="float32", always_2d=True)
        assert np.array_equal(data, session.last_output.data)
    session.change("Seed", seed=99)
    settle(qtbot, window)
    window.open_path(out)  # what a drop does
    assert session.request == stored
    session.undo.undo()
    assert session.request.seed == 99


def test_exporting_a_sound_as_an_image_name_is_refused(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.session.message, timeout=5000) as blocker:
        window.session.export(tmp_path / "x.png")
    assert blocker.args[0] == "error" and ".wav" in blocker.args[2]
    assert not list(tmp_path.glob("x.*"))


def test_export_into_a_missing_folder_reports_and_keeps_nothing(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.session.message, timeout=10000,
                          check_params_cb=lambda level, *_: level == "error") as blocker:
        window.session.export(tmp_path / "gone" / "x.wav")
    assert "Export failed" in blocker.args[1] and "gone" in blocker.args[2]
    assert not (tmp_path / "gone").exists()


def test_dropping_a_sound_file_encodes_it_at_the_models_rate(qtbot, window, tmp_path):
    session = window.session
    path = tmp_path / "snare.wav"
    sf.write(str(path), synthesize("snare", 2, 16000, 2048), 16000)
    before = session.request
    with message(qtbot, session, "Encoded snare.wav") as blocker:
        window.open_path(path)
    assert "resampled from 16000 Hz" in blocker.args[1]
    assert session.request.latent is not None and len(session.request.latent) == 4
    session.undo.undo()
    assert session.request == before


def test_a_file_that_is_not_a_sound_is_named_and_nothing_changes(qtbot, window, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    before = window.session.request
    with qtbot.waitSignal(window.session.message, timeout=5000) as blocker:
        window.open_path(bad)
    assert blocker.args[0] == "error" and "broken.wav" in blocker.args[1] + blocker.args[2]
    assert window.session.request == before


def test_encode_sound_action_asks_for_a_file(qtbot, window, tmp_path, monkeypatch):
    path = tmp_path / "kick.flac"
    sf.write(str(path), synthesize("kick", 1, 8000, 1024), 8000)
    monkeypatch.setattr(dialogs, "ask_sound", lambda parent: str(path))
    with message(qtbot, window.session, "Encoded kick.flac"):
        window.act_encode.trigger()
    assert window.session.request.latent is not None


def test_variations_grid_auditions_and_continues(qtbot, window):
    session, panel = window.session, window.variations
    panel.count.setValue(3)
    before = session.request
    window.act_variations.trigger()
    qtbot.waitUntil(lambda: panel.tiles.count() == 3, timeout=10000)
    assert "3 variations" in panel.status.text()
    sounds = [output.data for _, output in session.variations]
    assert not np.array_equal(sounds[0], sounds[1])
    assert all(r.param("variation_strength") == pytest.approx(0.35) for r, _ in session.variations)
    panel.tiles.setCurrentRow(1)  # audition: the view shows that sound
    assert np.array_equal(window.audio_view.sound(), sounds[1])
    assert session.request == before  # auditioning changes nothing
    with qtbot.waitSignal(session.sound_changed, timeout=10000) as blocker:
        panel.use_button.click()
    assert session.request.latent is not None and session.request.model_id == AUDIO
    assert np.allclose(blocker.args[0].data, sounds[1], atol=1e-5)  # the continued sound is the picked one
    session.undo.undo()
    assert session.request == before


def test_a_new_model_clears_the_variations(qtbot, window):
    panel = window.variations
    panel.count.setValue(2)
    panel.render_variations()
    qtbot.waitUntil(lambda: panel.tiles.count() == 2, timeout=10000)
    with qtbot.waitSignal(window.session.rendered, timeout=10000):
        window.session.use_model(IMAGE)
    assert panel.tiles.count() == 0 and window.session.variations == []


def test_saved_sound_latents_interpolate_and_render(qtbot, window):
    session = window.session
    for seed in (1, 2):
        with qtbot.waitSignal(session.sound_changed, timeout=10000):
            session.change("Seed", seed=seed)
        with qtbot.waitSignal(session.latents_changed, timeout=10000):
            session.save_latent(f"s{seed}")
    assert [entry.name for entry in session.document.latents] == ["s1", "s2"]
    assert all(entry.thumbnail_png for entry in session.document.latents)  # waveform thumbnails
    with qtbot.waitSignal(session.sound_changed, timeout=10000) as blocker:
        session.interpolate_latents(0, 1, 0.5)
    halfway = session.request.latent
    ends = [np.array(entry.latent) for entry in session.document.latents]
    assert halfway is not None and not np.allclose(halfway, ends[0]) and not np.allclose(halfway, ends[1])
    assert blocker.args[0].data.shape == (1024, 1)


def test_the_last_sound_can_drive_a_timeline(qtbot, window):
    session, panel = window.session, window.timeline
    assert panel.last_sound.isEnabled()  # a sound was rendered when the window opened
    wanted = session.last_sound[1].data
    assert session.use_last_sound()
    path = session.timeline.audio
    import soundfile as sf

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == 8000 and np.abs(data - wanted).max() < 1e-3  # kept as a 16-bit WAV
    from studio.export import read_any_request

    assert read_any_request(path).model_id == AUDIO  # with the request that made it
    session.undo.undo()
    assert session.timeline.audio == ""

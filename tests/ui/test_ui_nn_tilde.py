"""The app with an nn~ (RAVE-style) model, offscreen, with the real engine (the model runs in the worker process): the
audio view shows its sound, the per-channel sliders and the sound picker are in the latent panel, a slider move
renders a new sound, a sound param makes a timbre transfer, a dropped sound file is encoded into the trajectory,
export writes the sound with its request, saved trajectories interpolate, and the last sound drives the timeline."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from nn_tilde_models import package_of, tiny
from studio.export import read_any_request
from studio.ui.panels.param_panel import sound_param
from studio.ui import dialogs
from dialog_guard import block_dialogs
from test_ui_sound import settle as sound_settle, sound_window

MODEL = "rave"


@pytest.fixture(autouse=True)
def _no_blocking_dialogs(monkeypatch):
    block_dialogs(monkeypatch, "ask_export_sound", "ask_sound")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("nn")
    package_of(tiny(root / "rave.ts", seed=1), root / "models" / MODEL, seconds=0.5)
    return root / "models"


@pytest.fixture
def window(qtbot, models, tmp_path):
    with sound_window(qtbot, models, MODEL, tmp_path / "window.ini", timeout=60000) as w:  # the sandbox starts
        yield w


def settle(qtbot, window):
    sound_settle(qtbot, window, timeout=30000)


def test_an_nn_tilde_model_renders_edits_transfers_exports_and_feeds_the_timeline(qtbot, window, tmp_path,
                                                                                  monkeypatch):
    session = window.session
    assert window.views.currentWidget() is window.audio_view
    assert window.act_export.text().replace("&", "") == "Export Sound…" and window.act_encode.isEnabled()
    first = window.audio_view.sound()
    assert first is not None and first.shape == (8000, 1) and np.abs(first).max() > 0.01
    latent = window.latent
    for name in ("offset0", "offset3", "scale2", "glide1", "sound", "temperature", "curve_channel", "curve15"):
        assert latent.control(name) is not None, name

    with qtbot.waitSignal(session.sound_changed, timeout=30000) as moved:  # a slider move: a new sound
        session.set_param("offset0", 1.5, "offset0")
    assert not np.allclose(moved.args[0].data, first)
    settle(qtbot, window)

    voice = tmp_path / "voice.wav"
    t = np.arange(6000) / 12000
    sf.write(str(voice), (0.6 * np.sin(2 * np.pi * 180 * t) * np.exp(-3 * t)).astype(np.float32), 12000)
    with qtbot.waitSignal(session.sound_changed, timeout=30000) as transfer:  # audio to audio: the sound param
        session.set_param("sound", sound_param(voice), "Sound")
    assert not np.allclose(transfer.args[0].data, moved.args[0].data)
    settle(qtbot, window)

    with qtbot.waitSignal(session.message, timeout=30000,
                          check_params_cb=lambda level, text, d: "Encoded voice.wav" in text) as encoded:
        window.open_path(voice)  # a dropped sound file: encoded into the trajectory
    assert "resampled from 12000 Hz" in encoded.args[1]
    assert session.request.latent is not None and len(session.request.latent) == 4 * 125
    settle(qtbot, window)

    out = tmp_path / "exports" / "rave.wav"
    out.parent.mkdir()
    monkeypatch.setattr(dialogs, "ask_export_sound", lambda parent, suggestion: (str(out), "FLOAT"))
    with qtbot.waitSignal(session.message, timeout=30000, check_params_cb=lambda level, text, d: "Exported" in text):
        window.act_export.trigger()
    data, rate = sf.read(str(out), dtype="float32", always_2d=True)
    assert rate == 16000 and np.array_equal(data, session.last_output.data)
    assert read_any_request(out).with_(model_hash="") == session.request.with_(model_hash="")

    for seed in (1, 2):  # saved trajectories (their latents come from the worker) interpolate, as one-shots' do
        with qtbot.waitSignal(session.sound_changed, timeout=30000):
            session.change("Seed", seed=seed, latent=None)
        settle(qtbot, window)
        with qtbot.waitSignal(session.latents_changed, timeout=30000):
            session.save_latent(f"s{seed}")
    ends = [np.array(entry.latent) for entry in session.document.latents]
    assert len(ends) == 2 and ends[0].size == 500 and not np.allclose(ends[0], ends[1])
    with qtbot.waitSignal(session.sound_changed, timeout=30000) as halfway:
        session.interpolate_latents(0, 1, 0.5)
    middle = np.array(session.request.latent)
    assert not np.allclose(middle, ends[0]) and not np.allclose(middle, ends[1])
    assert halfway.args[0].data.shape == (8000, 1)
    settle(qtbot, window)

    assert session.use_last_sound()  # the timeline's sound, as the shipped sound model's
    kept, kept_rate = sf.read(session.timeline.audio, dtype="float32", always_2d=True)
    assert kept_rate == 16000 and np.abs(kept - session.last_sound[1].data).max() < 1e-3


def test_import_checkpoint_offers_nn_tilde_and_opens_the_new_package(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from studio.ui.import_model import NN_TILDE_CHOICE

    session, browser = window.session, window.models
    source = tiny(tmp_path / "drone.ts", seed=7, latent=3)
    asked = []

    def pick(parent, title, label, items, current, editable):
        asked.append((list(items), current))
        return NN_TILDE_CHOICE, True

    monkeypatch.setattr(QInputDialog, "getItem", pick)
    monkeypatch.setattr(browser, "import_file_dialog", lambda: str(source))
    with qtbot.waitSignal(session.message, timeout=60000,
                          check_params_cb=lambda level, text, d: "drone.ts" in text) as done:
        window.act_import.trigger()
    assert done.args[0] == "info" and "Imported drone.ts as drone" in done.args[1]
    items, current = asked[0]
    assert items[current] == NN_TILDE_CHOICE  # a .ts file: the nn~ choice is offered first
    assert not any("(rave, nn-tilde)" in item for item in items)  # a module file is no checkpoint's template
    entry = session.entry_for("drone")
    assert entry is not None and entry.ok and entry.manifest.latent.shape[0] == 3
    assert browser.selected_entry().id == "drone"

"""NVIDIA network pickles in the window (offscreen, real engine on the CPU): File → Open Model File on a .pkl converts
it on the importer's thread and uses the package; Import Checkpoint takes a network pickle without asking for an
architecture. The StyleGAN controls come from the family's parameter specs: truncation, cutoff, mixing and noise mode
(StyleGAN2), the input transform (StyleGAN3); changing one renders again. A hostile pickle ends in the message area
naming the global."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QComboBox

from sg_pickles import SystemCall, fixture_snapshot
from studio.engine.engine import Engine
from studio.paths import user_models_dir
from studio.ui.main_window import MainWindow
from studio.ui.session import Session


@pytest.fixture
def app(qtbot, tmp_path, monkeypatch, models_dir):
    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    engine = Engine(device="cpu", roots=[models_dir], threads=1)
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    with qtbot.waitSignal(session.rendered, timeout=60000):
        session.start("tiny")
    window = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    yield window, session
    session.undo.setClean()
    window.close()
    engine.shutdown()


def _never(*_args):
    raise AssertionError("a network pickle brings its own architecture: nothing to ask")


def test_open_model_file_on_a_network_pickle_converts_and_uses_it(qtbot, app, tmp_path, monkeypatch):
    window, session = app
    pkl = fixture_snapshot("sg2_uncond", tmp_path / "network-snapshot-000040.pkl")
    monkeypatch.setattr(window.models, "open_file_dialog", lambda: str(pkl))
    monkeypatch.setattr(window.models, "choose_architecture", _never)
    with qtbot.waitSignal(session.rendered, timeout=120000,
                          check_params_cb=lambda request, *_: request.model_id == "network-snapshot-000040"):
        window.act_open_model_file.trigger()
    assert session.entry.folder == user_models_dir() / "network-snapshot-000040"
    assert session.entry.manifest.family == "stylegan"
    latent = window.latent
    for name in ("truncation", "truncation_cutoff", "mix_seed", "noise_mode"):
        assert latent.editor(name) is not None and latent.editor(name).isVisibleTo(window), name
    assert latent.editor("translate_x") is None  # StyleGAN2 has no input transform
    noise = window.findChild(QComboBox, "noiseModeCombo")
    assert [noise.itemData(i) for i in range(noise.count())] == ["const", "random", "none"]
    before = session.last_output.data.copy()
    assert before.shape == (32, 32, 3)
    with qtbot.waitSignal(session.rendered, timeout=60000):
        noise.activated.emit(noise.findData("none"))
    assert session.request.param("noise_mode") == "none"
    assert not np.array_equal(before, session.last_output.data)
    truncation = latent.control("truncation")
    with qtbot.waitSignal(session.rendered, timeout=60000):
        truncation.slider.setValue(truncation.slider.minimum())
    assert session.request.param("truncation") is not None and session.request.param("truncation") < 1
    # GANSpace directions were computed at import: their sliders are there
    assert latent.editor("d0") is not None and latent.editor("d0").isVisibleTo(window)
    # a picture dropped on the window is projected into w+ (no characters asked), with progress, as one undo step
    from PIL import Image

    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask_chars", _never)
    picture = tmp_path / "photo.png"
    Image.fromarray(session.last_output.data).resize((96, 96)).save(picture)  # any size: fitted by the family
    undo_before = session.undo.index()
    with qtbot.waitSignal(session.rendered, timeout=300000,
                          check_params_cb=lambda request, *_: request.latent is not None):
        window.open_path(picture)
    assert len(session.request.latent) == 8 * 64  # w+: one w per layer
    assert session.undo.index() == undo_before + 1


def test_import_checkpoint_takes_a_stylegan3_pickle_and_shows_its_transform(qtbot, app, tmp_path, monkeypatch):
    window, session = app
    pkl = fixture_snapshot("sg3t", tmp_path / "sg3-faces.pkl")
    monkeypatch.setattr(window.models, "import_file_dialog", lambda: str(pkl))
    monkeypatch.setattr(window.models, "choose_architecture", _never)
    with qtbot.waitSignal(window.models.importer.finished, timeout=120000):
        window.act_import.trigger()
    assert window.models.selected_entry().id == "sg3-faces"
    with qtbot.waitSignal(session.rendered, timeout=60000):
        session.use_model("sg3-faces")
    latent = window.latent
    for name in ("truncation", "mix_seed", "translate_x", "translate_y", "rotate"):
        assert latent.editor(name) is not None and latent.editor(name).isVisibleTo(window), name
    assert latent.editor("noise_mode") is None  # StyleGAN3 has no noise inputs
    before = session.last_output.data.copy()
    rotate = latent.control("rotate")
    with qtbot.waitSignal(session.rendered, timeout=60000):
        rotate.slider.setValue(rotate.slider.maximum())
    assert session.request.param("rotate") not in (None, 0.0)
    assert not np.array_equal(before, session.last_output.data)


def test_a_hostile_network_pickle_is_refused_in_the_message_area(qtbot, app, tmp_path, monkeypatch):
    window, session = app
    marker = tmp_path / "PWNED"
    pkl = fixture_snapshot("sg2_uncond", tmp_path / "evil.pkl", extra={"x": SystemCall(f"touch {marker}")})
    messages = []
    session.message.connect(lambda level, title, detail: messages.append((level, title, detail)))
    monkeypatch.setattr(window.models, "open_file_dialog", lambda: str(pkl))
    with qtbot.waitSignal(window.models.importer.failed, timeout=120000):
        window.act_open_model_file.trigger()
    qtbot.waitUntil(lambda: bool(messages), timeout=10000)
    level, title, detail = messages[-1]
    assert level == "error" and "evil.pkl" in title and f"{os.system.__module__}.system" in detail
    assert not marker.exists() and not (user_models_dir() / "evil").exists()
    assert session.entry.id == "tiny"  # still on the model it had


def test_a_snapshot_without_g_ema_is_imported_with_a_warning(qtbot, app, tmp_path, monkeypatch):
    window, session = app
    pkl = fixture_snapshot("sg2_uncond", tmp_path / "early.pkl", g_ema=False)
    messages = []
    session.message.connect(lambda level, title, detail: messages.append((level, title, detail)))
    monkeypatch.setattr(window.models, "import_file_dialog", lambda: str(pkl))
    monkeypatch.setattr(window.models, "choose_architecture", _never)
    with qtbot.waitSignal(window.models.importer.finished, timeout=120000):
        window.act_import.trigger()
    qtbot.waitUntil(lambda: any(level == "warning" for level, *_ in messages), timeout=10000)
    assert any(level == "warning" and "no G_ema" in detail for level, _title, detail in messages), messages
    assert window.models.selected_entry().id == "early"

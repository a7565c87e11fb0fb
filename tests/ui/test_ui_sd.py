"""Bring-your-own models in the app (offscreen): a Stable Diffusion pipeline folder rendered through the real engine
with a free-text prompt and a negative prompt; Open Model Folder / Open Model File from the File menu; Import
Checkpoint for a pickled SD checkpoint, for weights of an installed package's architecture, and for a malicious
pickle (refused, nothing run, the app goes on)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QComboBox, QLineEdit, QPushButton, QSpinBox  # noqa: E402

from conftest import make_tiny_package  # noqa: E402
from sd_tiny import make_parts, make_pipeline_folder, write_single_file  # noqa: E402
from studio.engine import Engine  # noqa: E402
from studio.ui.main_window import MainWindow  # noqa: E402
from studio.ui.panels.models import ModelBrowser  # noqa: E402
from studio.ui.session import Session  # noqa: E402


@pytest.fixture(scope="module")
def sd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd-ui")
    parts = make_parts(1)
    make_pipeline_folder(root / "models" / "tiny-pipe", parts=parts)
    write_single_file(root / "tiny-single.safetensors", parts)
    return root


@pytest.fixture
def app(qtbot, sd_root, tmp_path, monkeypatch):
    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    engine = Engine(device="cpu", roots=[sd_root / "models"], threads=1)
    session = Session(engine, roots=[sd_root / "models"])
    session.refresh_models()
    window = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    yield window, session
    session.undo.setClean()
    window.close()
    engine.shutdown()


def test_a_pipeline_folder_renders_in_the_app_with_free_text_prompts(qtbot, app):
    window, session = app
    with qtbot.waitSignal(session.rendered, timeout=60000):
        session.start("tiny-pipe")
    assert session.entry.manifest.family == "stable-diffusion"
    negative = window.findChild(QLineEdit, "negativePromptEdit")
    prompt = window.findChild(QLineEdit, "promptEdit")
    assert negative.isVisibleTo(window) and prompt.isVisibleTo(window)
    combo = window.findChild(QComboBox, "samplerCombo")
    assert [combo.itemData(i) for i in range(combo.count())] == ["ddpm", "ddim", "euler", "euler_a", "dpmpp"]
    assert combo.currentData() == "dpmpp"  # the family's default
    first = session.last_output.data.copy()
    assert first.shape == (16, 16, 3)
    with qtbot.waitSignal(session.rendered, timeout=60000):
        prompt.setText("A lighthouse, at dusk! (oil painting)")
        prompt.textEdited.emit(prompt.text())
    # any text, punctuation included
    assert session.request.param("prompt") == "A lighthouse, at dusk! (oil painting)"
    with qtbot.waitSignal(session.rendered, timeout=60000):
        negative.setText("blurry")
        negative.textEdited.emit("blurry")
    assert session.request.param("negative_prompt") == "blurry"
    assert session.last_output.data.shape == (16, 16, 3) and not np.array_equal(first, session.last_output.data)
    assert session.last_info.get("model_sha256") or session.last_output.info.get("model_sha256")
    width, height = window.findChild(QSpinBox, "widthSpin"), window.findChild(QSpinBox, "heightSpin")
    assert width.isVisibleTo(window) and (width.value(), height.value()) == (16, 16)  # the model's own size
    with qtbot.waitSignal(session.rendered, timeout=60000):
        width.setValue(67)  # snapped to whole latent cells: this tiny pipeline's VAE halves (2 px; SD 1.x's 8 px)
    assert width.value() == 66 and session.request.width == 66 and session.request.height is None
    assert session.last_output.data.shape == (16, 66, 3)
    session.undo.undo()
    assert session.request.width is None and width.value() == 16


def test_ensd_is_set_only_with_an_a1111_noise_source(qtbot, app):
    window, session = app
    with qtbot.waitSignal(session.rendered, timeout=60000):
        session.start("tiny-pipe")
    noise, ensd = window.findChild(QComboBox, "rngCombo"), window.findChild(QSpinBox, "ensdSpin")
    assert noise is not None and ensd is not None and ensd.isVisibleTo(window)
    assert not ensd.isEnabled() and ensd.value() == 0  # our own noise: no delta
    with qtbot.waitSignal(session.rendered, timeout=60000):
        noise.setCurrentIndex(noise.findData("cpu"))
        noise.activated.emit(noise.findData("cpu"))  # as a person's choice
    assert ensd.isEnabled()
    with qtbot.waitSignal(session.rendered, timeout=60000):
        ensd.setValue(31337)
    assert session.request.param("ensd") == 31337 and session.request.param("rng") == "cpu"


def test_the_menu_opens_model_folders_and_files(qtbot, app, tmp_path, monkeypatch):
    window, session = app
    other = tmp_path / "elsewhere"
    make_tiny_package(other / "extra", "extra", seed=3, conditional=False)
    monkeypatch.setattr(window.models, "open_folder_dialog", lambda: str(other))
    window.act_open_models.trigger()  # the menu item adds the folder, not only asks for it
    assert "extra" in [e.id for e in session.entries if e.ok]
    monkeypatch.setattr(window.models, "open_file_dialog", lambda: str(app_root(session) / "tiny-single.safetensors"))
    window.act_open_model_file.trigger()
    entry = session.entry_for("tiny-single")
    assert entry is not None and entry.ok and entry.manifest.architecture["config"] == "sd-v1"
    assert window.models.selected_entry().id == "tiny-single"


def app_root(session):
    return session.roots[0].parent


def test_import_checkpoint_converts_sd_and_maps_other_weights(qtbot, app, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    window, session = app
    browser: ModelBrowser = window.models
    root = app_root(session)
    ckpt = tmp_path / "tiny-sd.ckpt"
    torch.save({"state_dict": load_file(str(root / "tiny-single.safetensors"))}, ckpt)
    monkeypatch.setattr(browser, "import_file_dialog", lambda: str(ckpt))
    monkeypatch.setattr(browser, "choose_architecture", lambda source: None)  # "Stable Diffusion 1.x checkpoint"
    with qtbot.waitSignal(browser.importer.finished, timeout=30000):
        window.act_import.trigger()
    assert (tmp_path / "tiny-sd.safetensors").is_file()
    assert session.entry_for("tiny-sd") is not None and session.entry_for("tiny-sd").ok
    assert browser.findChild(QPushButton, "importCheckpointButton").isEnabled()

    # weights of an installed package's architecture → a new package in the user models folder
    pkg = make_tiny_package(tmp_path / "src" / "tiny", "tiny", seed=5)
    session.add_model_folder(pkg)
    template = session.entry_for("tiny")
    weights = load_file(str(pkg / "weights.safetensors"))
    mine = tmp_path / "my-vae.pt"
    torch.save({"model": weights}, mine)
    monkeypatch.setattr(browser, "import_file_dialog", lambda: str(mine))
    monkeypatch.setattr(browser, "choose_architecture", lambda source: template)
    with qtbot.waitSignal(browser.importer.finished, timeout=30000):
        browser.import_checkpoint()
    assert session.entry_for("my-vae") is not None and session.entry_for("my-vae").ok

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"model": weights, "x": Payload()}, evil)
    messages = []
    session.message.connect(lambda *args: messages.append(args))
    monkeypatch.setattr(browser, "import_file_dialog", lambda: str(evil))
    with qtbot.waitSignal(browser.importer.failed, timeout=30000):
        browser.import_checkpoint()
    assert not (tmp_path / "pwned").exists()
    assert any(level == "error" and "evil.pt" in title and "needs code to load" in detail
               for level, title, detail in messages)
    assert browser.findChild(QPushButton, "importCheckpointButton").isEnabled()


def test_the_browser_describes_a_pipeline(qtbot, app):
    from PySide6.QtWidgets import QTextBrowser

    window, session = app
    window.models.select("tiny-pipe")
    details = window.findChild(QTextBrowser, "modelDetails").toPlainText()
    assert "stable-diffusion" in details and "text prompt (any text) and negative prompt" in details
    assert "characters" not in details

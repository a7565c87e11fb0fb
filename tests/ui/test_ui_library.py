"""The library panel and the Encode dialog's offer, bound to a real Session over the fake engine: the Interpolate
combos offer only latents the current model can use and pairs that interpolate (a GAN's w with its w+), a drag of
t renders without a message, and the characters offered for a strip are its own cells."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402

from conftest import make_tiny_gan_package, make_tiny_package  # noqa: E402
from fake_engine import FakeEngine  # noqa: E402
from studio.export import save_image  # noqa: E402
from studio.project import SavedLatent  # noqa: E402
from studio.ui import dialogs  # noqa: E402
from studio.ui.panels.library import STEPS, LibraryPanel  # noqa: E402
from studio.ui.session import Session  # noqa: E402


@pytest.fixture
def gan_session(qtbot, tmp_path):
    root = tmp_path / "models"
    make_tiny_gan_package(root / "tiny-gan", "tiny-gan")  # 4 style layers of w = 8 values: w+ has 32
    make_tiny_package(root / "tiny", "tiny")
    engine = FakeEngine()
    s = Session(engine, roots=[root])
    s.refresh_models()
    with qtbot.waitSignal(s.rendered, timeout=5000):
        s.start("tiny-gan")
    yield s
    s.undo.clear()
    engine.shutdown()


def combo_items(combo) -> list[tuple[str, int]]:
    return [(combo.itemText(k), combo.itemData(k)) for k in range(combo.count())]


def test_interpolate_offers_only_pairs_that_work_and_a_drag_says_nothing(qtbot, gan_session):
    s = gan_session
    heard: list = []
    s.message.connect(lambda *args: heard.append(args))
    w, w_plus = tuple(np.linspace(-1, 1, 8)), tuple(np.linspace(1, -1, 32))
    s.document.latents.extend([SavedLatent("seed 43", "tiny-gan", "", w),
                               SavedLatent("a VAE style", "tiny", "", (0.0,) * 8),
                               SavedLatent("odd", "tiny-gan", "", (0.0,) * 7),
                               SavedLatent("projected from my-letters.png", "tiny-gan", "", w_plus)])
    panel = LibraryPanel(s)
    qtbot.addWidget(panel)
    # only this model's latents of a kind it takes; the target is the newest, and never the source itself
    assert combo_items(panel.first) == [("seed 43", 0), ("projected from my-letters.png", 3)]
    assert combo_items(panel.second) == [("projected from my-letters.png", 3)]
    assert panel.t_slider.isEnabled()
    assert "w+ (4 × 8 values)" in panel.list.item(3).toolTip()
    for value in range(0, STEPS + 1, STEPS // 25):  # a drag of t, one gesture
        panel.t_slider.setValue(value)
    assert heard == [] and s.request.latent == pytest.approx(w_plus, abs=1e-6)
    panel.t_slider.setValue(0)
    assert s.request.latent == pytest.approx(w * 4)  # the w on every layer
    # the other way round: w+ → w
    panel.first.setCurrentIndex(1)
    assert combo_items(panel.second) == [("seed 43", 0)]
    # on the VAE, its own latent only: nothing to pair with, so nothing to drag
    s.use_model("tiny")
    assert combo_items(panel.first) == [("a VAE style", 1)] and panel.second.count() == 0
    assert not panel.t_slider.isEnabled()


def test_a_latent_saved_after_a_projection_is_named_after_it(qtbot, gan_session):
    s = gan_session
    panel = LibraryPanel(s)
    qtbot.addWidget(panel)
    s.core.use_encoded_latent("Project my-letters.png", np.ones(32), origin="projected from my-letters.png")
    with qtbot.waitSignal(s.latents_changed, timeout=5000):
        panel.save_current()
    assert panel.list.item(0).text() == "projected from my-letters.png"


def test_the_encode_dialog_offers_the_strips_own_cells(qtbot, session, tmp_path, monkeypatch):
    asked: list = []
    monkeypatch.setattr(dialogs, "ask_chars",
                        lambda parent, image, default, cells=0: asked.append((default, cells)) or default)
    session.change("Prompt", params={"prompt": "Latent Studio"})
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((16, 16 * 8), 255, np.uint8)).save(strip)
    assert dialogs.chars_for(None, session, str(strip)) == (str(strip), "Latent S")
    assert asked[-1] == ("Latent S", 8)  # the prompt's first 8 characters, the space kept (it skips a cell)
    exported = tmp_path / "made.png"
    save_image(exported, np.full((16, 16 * 4), 255, np.uint8), session.request.with_params({"prompt": "A bc"}))
    dialogs.chars_for(None, session, str(exported))
    assert asked[-1] == ("A bc", 4)  # the prompt the picture was drawn from


def test_every_message_shown_goes_to_the_log_too(qtbot, gan_session, caplog):
    with caplog.at_level(logging.INFO, logger="studio.messages"):
        gan_session.use_model("tiny")
    assert "message: Switched to Tiny tiny: kept seed, prompt" in caplog.text

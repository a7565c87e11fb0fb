"""An inpainting checkpoint in the app (offscreen): its Mask picker is offered beside the init image, a picked mask
goes into the request and the render uses it; an ordinary Stable Diffusion model offers no mask."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QPushButton  # noqa: E402

from sd_tiny import make_parts, make_pipeline_folder, make_variant_parts  # noqa: E402
from studio.engine import Engine  # noqa: E402
from studio.ui.main_window import MainWindow  # noqa: E402
from studio.ui.session import Session  # noqa: E402


@pytest.fixture(scope="module")
def sd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd-inpaint-ui")
    make_pipeline_folder(root / "models" / "tiny-inpaint", parts=make_variant_parts(2, unet={"in_channels": 9}))
    make_pipeline_folder(root / "models" / "tiny-plain", parts=make_parts(1))
    gen = np.random.default_rng(3)
    Image.fromarray(gen.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "photo.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(root / "mask.png")
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


def test_an_inpainting_model_offers_a_mask_and_renders_with_it(qtbot, app, sd_root, monkeypatch):
    from studio.ui import dialogs

    window, session = app
    messages = []
    session.message.connect(lambda *args: messages.append(args))
    with qtbot.waitSignal(session.rendered, timeout=60000):
        session.start("tiny-inpaint")
    with qtbot.waitSignal(session.rendered, timeout=60000):
        assert session.set_init_image(sd_root / "photo.png")
    whole_picture_repainted = session.last_output.data.copy()  # no mask: all of it is repainted
    button = window.findChild(QPushButton, "maskButton")
    assert button is not None and button.text() == "Mask…"
    monkeypatch.setattr(dialogs, "ask_init_image", lambda parent: str(sd_root / "mask.png"))
    with qtbot.waitSignal(session.rendered, timeout=60000):
        button.click()
    assert session.request.param("mask") is not None
    assert session.last_output.data.shape == (16, 16, 3)
    assert not np.array_equal(session.last_output.data, whole_picture_repainted)  # the mask reached the UNet
    assert not [m for m in messages if m[0] == "error"], messages
    with qtbot.waitSignal(session.rendered, timeout=60000):
        session.start("tiny-plain")
    assert window.findChild(QPushButton, "maskButton") is None or not window.findChild(
        QPushButton, "maskButton").isVisibleTo(window)

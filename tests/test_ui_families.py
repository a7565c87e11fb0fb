"""Family-specific controls on the offscreen platform, with the fake engine: the style-based GAN's layer mixing, layer
range, noise and projection (progress and Cancel); the diffusion family's sampler and image-to-image; and that none
of them shows for the VAE. Only manifests and capabilities matter here: the packages carry placeholder weights."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QSettings

from studio.families.diffusion import DiffusionFamily
from studio.io.images import decode_init_image
from studio.families.gan.family import num_style_layers
from studio.nets.samplers import SAMPLER_NAMES
from studio.latent.directions import principal_directions
from studio.latent.edits import RENDER_ONLY_EDITS
from studio.project import SavedLatent
from studio.train.package import write_package
from studio.ui import dialogs
from studio.ui.main_window import MainWindow
from studio.ui.session import DEFAULT_STRENGTH, Session

from conftest import TINY_ALPHABET, make_tiny_package
from fake_engine import FakeEngine

GAN, DIFFUSION, VAE = "tiny-gan", "tiny-diffusion", "tiny"
CELL = 32  # both test packages draw 32-px cells


def _manifest(model_id: str, family: str, latent: list[int], architecture: dict) -> dict:
    return {
        "format": 1, "id": model_id, "name": f"Tiny {family}", "family": family, "version": "0.0.1",
        "license": "CC0-1.0", "description": f"a placeholder {family} package for UI tests",
        "output": {"kind": "image", "width": CELL, "height": CELL, "channels": 1},
        "latent": {"shape": latent, "prior": "normal"},
        "conditions": {"kind": "text", "alphabet": TINY_ALPHABET, "default": "Ab"},
        "architecture": {"ink_on_paper": True, **architecture},
        "training": {"quality": {"note": "untrained"}},
    }


@pytest.fixture
def family_models(tmp_path):
    root = tmp_path / "models"
    make_tiny_package(root / VAE, VAE)
    placeholder = {"placeholder": torch.zeros(1)}
    directions = principal_directions(torch.randn(64, 16, generator=torch.Generator().manual_seed(0)), k=3)
    write_package(root / GAN, _manifest(GAN, "gan", [16], {"image_size": CELL, "widths": [16, 16, 8, 8]}),
                  placeholder, directions.to_tensors())
    write_package(root / DIFFUSION, _manifest(DIFFUSION, "diffusion", [1, CELL, CELL], {"base": 8, "mults": [1, 2]}),
                  placeholder)
    return root


@pytest.fixture(autouse=True)
def _no_blocking_dialogs(monkeypatch):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    for name in ("ask_open_project", "ask_save_project", "ask_export_image", "ask_model_folder", "ask_chars",
                 "ask_recover", "ask_encode_image", "ask_init_image"):
        monkeypatch.setattr(dialogs, name, lambda *args, _n=name: pytest.fail(f"unexpected dialog {_n}"))


def open_window(qtbot, engine, models, tmp_path, model_id):
    session = Session(engine, roots=[models])
    session.refresh_models()
    assert all(e.ok for e in session.entries), [str(e.error) for e in session.entries if not e.ok]
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start(model_id)
    session.undo.setClean()
    w.show()
    return w


@pytest.fixture
def make_window(qtbot, family_models, tmp_path):
    windows, engines = [], []

    def make(model_id: str, engine: FakeEngine | None = None) -> MainWindow:
        engine = engine or FakeEngine()
        engines.append(engine)
        windows.append(open_window(qtbot, engine, family_models, tmp_path, model_id))
        return windows[-1]

    yield make
    for w in windows:
        w.session.undo.setClean()
        w.close()
    for engine in engines:
        engine.shutdown()


def settle(qtbot, window):
    qtbot.waitUntil(lambda: not window.session.bridge.busy, timeout=5000)


def steps_of(window) -> int:
    return window.session.undo.index()


def strip_png(path, chars: int = 2, value: int = 200):
    Image.fromarray(np.full((CELL, CELL * chars), value, dtype=np.uint8)).save(path)
    return path


# --- which controls show -----------------------------------------------------------------------------------------


def test_gan_controls_show_only_for_the_gan(qtbot, make_window):
    w = make_window(GAN)
    latent, prompt = w.latent, w.prompt
    assert latent.mix_layer.isVisibleTo(w) and latent.layer_row.isVisibleTo(w)
    assert latent.noise_check.isVisibleTo(w) and latent.noise.isVisibleTo(w) and latent.noise_check.isChecked()
    assert latent.encode_button.text() == "Project Image…" and latent.encode_button.isEnabled()
    assert "style w" in latent.encode_button.toolTip()
    assert "Pro&ject" in w.act_encode.text()
    num_ws = num_style_layers(w.session.entry.manifest)
    assert num_ws == 8
    assert latent.mix_layer.maximum() == num_ws and latent.mix_layer.value() == num_ws // 2
    assert (latent.layer_start.value(), latent.layer_end.value()) == (0, num_ws)
    assert latent.mix_strength.default == 1.0 and latent.mix_strength.value() == 1.0
    assert not prompt.sampler.isVisibleTo(w) and not prompt.init_box.isVisibleTo(w)
    # a switch to the VAE hides them all again
    w.session.use_model(VAE)
    assert not latent.mix_layer.isVisibleTo(w) and not latent.layer_row.isVisibleTo(w)
    assert not latent.noise_check.isVisibleTo(w) and not latent.noise.isVisibleTo(w)
    assert latent.encode_button.text() == "Encode Image…" and "E&ncode" in w.act_encode.text()
    assert latent.mix_strength.default == 0.5
    assert not prompt.sampler.isVisibleTo(w) and not prompt.init_box.isVisibleTo(w)


def test_the_vae_shows_no_family_controls(qtbot, make_window):
    w = make_window(VAE)
    hidden = (w.latent.mix_layer, w.latent.layer_row, w.latent.noise_check, w.latent.noise, w.prompt.sampler,
              w.prompt.sampler_combo, w.prompt.init_box, w.prompt.init_button, w.prompt.strength)
    assert [x.objectName() for x in hidden if x.isVisibleTo(w)] == []


def test_diffusion_shows_sampler_and_image_to_image_but_no_gan_controls(qtbot, make_window):
    w = make_window(DIFFUSION)
    p = w.prompt
    assert p.sampler.isVisibleTo(w) and p.sampler_combo.isVisibleTo(w) and p.init_box.isVisibleTo(w)
    assert not w.latent.mix_layer.isVisibleTo(w) and not w.latent.noise_check.isVisibleTo(w)
    assert not w.latent.encode_button.isEnabled()
    # a 32×32 noise latent has 1024 values: no raw sliders for it
    assert not w.latent.show_raw.isEnabled() and not any(n.startswith("z") for n in w.latent.sliders)
    assert "&Init Image" in w.act_encode.text()


def test_new_controls_have_tooltips(make_window):
    from PySide6.QtWidgets import QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QLineEdit

    for model_id in (GAN, DIFFUSION):
        w = make_window(model_id)
        missing = [x.objectName() or type(x).__name__
                   for panel in (w.latent, w.prompt)
                   for kind in (QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QLineEdit)
                   for x in panel.findChildren(kind)
                   if not x.toolTip() and x.isVisibleTo(w) and not x.objectName().startswith("qt_")
                   and type(x).__name__ != "QScrollBar"]
        assert missing == [], model_id
        assert w.task_cancel.toolTip() and w.task_progress.toolTip()


# --- the GAN's edits ----------------------------------------------------------------------------------------------


def test_mix_layer_reaches_the_request_in_one_undo_step(qtbot, make_window):
    w = make_window(GAN)
    s = w.session
    s.edit("mix_seed", 5.0, "Mix seed 5")
    before, count = s.request, steps_of(w)
    w.latent.mix_layer.setValue(2)
    assert dict(s.request.edits) == {"mix_seed": 5.0, "mix_layer": 2.0} and steps_of(w) == count + 1
    w.latent.mix_layer.setValue(w.latent.mix_layer.maximum() // 2)  # back to the family default: no edit
    assert "mix_layer" not in dict(s.request.edits)
    w.act_undo.trigger()
    assert dict(s.request.edits)["mix_layer"] == 2.0 and w.latent.mix_layer.value() == 2
    w.act_undo.trigger()
    assert s.request == before and w.latent.mix_layer.value() == 4


def test_layer_range_reaches_the_request_and_keeps_start_before_end(qtbot, make_window):
    w = make_window(GAN)
    s, latent = w.session, w.latent
    count = steps_of(w)
    latent.layer_start.setValue(2)
    latent.layer_end.setValue(5)
    assert dict(s.request.edits) == {"layer_start": 2.0, "layer_end": 5.0} and steps_of(w) == count + 2
    assert latent.layer_start.maximum() == 5 and latent.layer_end.minimum() == 2  # start ≤ end
    latent.sliders["d0"].slider.setValue(100)
    assert dict(s.request.edits)["d0"] == 1.0
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert dict(s.request.edits) == {"layer_start": 2.0} and latent.layer_end.value() == 8
    assert latent.layer_end.minimum() == 2 and latent.layer_start.maximum() == 8


def test_noise_checkbox_and_amount_are_undoable_steps(qtbot, make_window):
    w = make_window(GAN)
    s, latent = w.session, w.latent
    count = steps_of(w)
    latent.noise_check.click()
    assert dict(s.request.edits) == {"noise": 0.0} and not latent.noise_check.isChecked()
    assert steps_of(w) == count + 1
    latent.noise_check.click()
    assert s.request.edits == () and latent.noise_check.isChecked()
    # a drag of the amount slider is one step
    handle = latent.noise.slider
    handle.sliderPressed.emit()
    for raw in (120, 150, 210, 250):
        handle.setValue(raw)
    handle.sliderReleased.emit()
    assert dict(s.request.edits) == {"noise": 2.5} and steps_of(w) == count + 3
    latent.noise_check.click()  # off, then on again: back to the amount it had
    latent.noise_check.click()
    assert dict(s.request.edits) == {"noise": 2.5}
    w.act_undo.trigger()
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert s.request.edits == () and latent.noise.value() == 1.0


def test_truncation_range_follows_the_family(make_window):
    w = make_window(GAN)
    handle = w.latent.truncation.slider
    assert (handle.minimum(), handle.maximum()) == (-100, 200)
    w.session.use_model(VAE)
    assert (handle.minimum(), handle.maximum()) == (0, 150)


def test_use_latent_interpolation_and_encode_keep_noise(qtbot, make_window, tmp_path):
    assert "noise" in RENDER_ONLY_EDITS
    w = make_window(GAN)
    s = w.session
    s.change("Edits", edits=(("noise", 0.0), ("d0", 1.0), ("mix_layer", 3.0), ("mix_seed", 4.0)))
    for name, value in (("a", 0.5), ("b", -0.5)):
        s.document.latents.append(SavedLatent(name, GAN, "", tuple([value] * 16)))
    s.use_latent(0)
    assert s.request.latent == tuple([0.5] * 16) and s.request.edits == (("noise", 0.0),)
    s.change("More edits", edits=(("noise", 2.0), ("d1", 1.0)))
    s.interpolate_latents(0, 1, 0.5, "lerp")
    assert s.request.edits == (("noise", 2.0),) and s.request.latent == pytest.approx([0.0] * 16)
    s.change("More edits", edits=(("noise", 0.5), ("truncation", 0.7)))
    with qtbot.waitSignal(s.request_changed, timeout=5000, check_params_cb=lambda r: r.edits == (("noise", 0.5),)):
        s.encode_image(strip_png(tmp_path / "ab.png"), "Ab")
    # a VAE request has no noise: the latent replaces every edit there as before
    s.use_model(VAE)
    s.document.latents.append(SavedLatent("v", VAE, "", tuple([0.1] * 8)))
    s.change("Edits", edits=(("d0", 1.0),))
    s.use_latent(2)
    assert s.request.edits == ()


# --- projection: progress and Cancel ------------------------------------------------------------------------------


def test_projection_shows_progress_and_cancel_stops_it(qtbot, make_window, tmp_path, monkeypatch):
    w = make_window(GAN, FakeEngine(delay=2.0, steps=200))
    s = w.session
    settle(qtbot, w)
    strip = strip_png(tmp_path / "ab.png")
    monkeypatch.setattr(dialogs, "ask_encode_image", lambda parent, session: (str(strip), "Ab"))
    before = s.request
    assert not w.task_progress.isVisible() and not w.task_cancel.isVisible()
    w.latent.encode_button.click()
    qtbot.waitUntil(lambda: w.task_progress.isVisible() and w.task_progress.value() > 0, timeout=5000)
    assert w.task_cancel.isVisible() and w.task_progress.maximum() == 200
    assert w.task_label.text().startswith("Project ab.png")
    job = [j for j in s.bridge.engine.submitted if j.kind == "encode"][-1]
    with qtbot.waitSignal(s.message, timeout=5000, check_params_cb=lambda lv, text, d: "cancelled" in text) as got:
        w.task_cancel.click()
    assert got.args[0] == "info"  # a cancel the artist asked for is no error
    assert job.state == "cancelled" and s.request == before
    qtbot.waitUntil(lambda: not w.task_progress.isVisible(), timeout=5000)
    assert not w.task_cancel.isVisible()


def test_projection_finishes_into_the_latent_and_escape_cancels(qtbot, make_window, tmp_path, monkeypatch):
    w = make_window(GAN, FakeEngine(delay=0.2, steps=4))
    s = w.session
    strip = strip_png(tmp_path / "ab.png")
    with qtbot.waitSignal(s.request_changed, timeout=5000, check_params_cb=lambda r: r.latent is not None):
        s.encode_image(strip, "Ab")
    assert "Project ab.png" in s.undo.text(s.undo.index() - 1)
    qtbot.waitUntil(lambda: not w.task_progress.isVisible(), timeout=5000)
    # Esc reaches the projection too (it cancels everything in flight)
    slow = FakeEngine(delay=2.0, steps=200)
    w2 = make_window(GAN, slow)
    settle(qtbot, w2)
    w2.session.encode_image(strip, "Ab")
    qtbot.waitUntil(lambda: w2.task_progress.isVisible(), timeout=5000)
    job = [j for j in slow.submitted if j.kind == "encode"][-1]
    w2.act_cancel.trigger()
    qtbot.waitUntil(lambda: job.state == "cancelled", timeout=5000)


# --- diffusion: sampler -------------------------------------------------------------------------------------------


def test_sampler_defaults_are_the_family_defaults(make_window):
    w = make_window(DIFFUSION)
    p, request = w.prompt, w.session.request
    assert (request.sampler, request.steps, request.guidance, request.eta) == (None, None, None, None)
    defaults = DiffusionFamily.defaults
    assert p.sampler_combo.currentData() == defaults["sampler"]
    assert p.sampler_combo.currentText() == SAMPLER_NAMES[defaults["sampler"]]
    assert p.steps.value() == defaults["steps"] and p.guidance.value() == defaults["guidance"]
    assert p.eta.value() == defaults["eta"]
    assert [p.sampler_combo.itemData(i) for i in range(p.sampler_combo.count())] == list(DiffusionFamily.samplers)
    assert p.guidance.maximum() == 20.0 and (p.steps.minimum(), p.steps.maximum()) == (1, 1000)
    assert p.eta.isEnabled() == (defaults["sampler"] == "ddim")  # η is DDIM's


def test_sampler_combo_sets_the_request_and_undo_restores(qtbot, make_window):
    w = make_window(DIFFUSION)
    s, combo = w.session, w.prompt.sampler_combo
    count = steps_of(w)
    assert DiffusionFamily.defaults["sampler"] != "dpmpp"
    combo.activated.emit(combo.findData("dpmpp"))
    assert s.request.sampler == "dpmpp" and steps_of(w) == count + 1 and not w.prompt.eta.isEnabled()
    assert combo.currentData() == "dpmpp"
    combo.setCurrentIndex(combo.findData("ddim"))  # (what a pick does before it emits `activated`)
    combo.activated.emit(combo.findData("ddim"))
    assert s.request.sampler == "ddim" and w.prompt.eta.isEnabled()
    w.prompt.steps.setValue(35)
    assert s.request.steps == 35
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert s.request.sampler == "dpmpp" and combo.currentData() == "dpmpp"
    w.act_undo.trigger()
    assert s.request.sampler is None and combo.currentData() == DiffusionFamily.defaults["sampler"]


# --- diffusion: image to image ------------------------------------------------------------------------------------


def size_of(init_image: str) -> tuple[int, int]:
    image = decode_init_image(init_image)
    return image.shape[1], image.shape[0]


def test_init_image_set_strength_and_clear(qtbot, make_window, tmp_path, monkeypatch):
    w = make_window(DIFFUSION)
    s, p = w.session, w.prompt
    picture = tmp_path / "photo.png"
    Image.fromarray(np.linspace(0, 255, 90 * 60).reshape(60, 90).astype(np.uint8)).save(picture)
    assert not p.strength.isEnabled() and not p.init_clear.isEnabled()
    monkeypatch.setattr(dialogs, "ask_init_image", lambda parent: str(picture))
    count = steps_of(w)
    p.init_button.click()
    request = s.request
    assert request.init_image is not None and request.strength == DEFAULT_STRENGTH == 0.6
    assert size_of(request.init_image) == (CELL * len(request.prompt), CELL)  # fitted to the prompt's sheet
    assert steps_of(w) == count + 1 and p.strength.isEnabled() and p.init_clear.isEnabled()
    assert p.init_preview.pixmap() is not None and not p.init_preview.pixmap().isNull()
    # a strength drag is one step
    handle = p.strength.slider
    handle.sliderPressed.emit()
    for raw in (50, 40, 30):
        handle.setValue(raw)
    handle.sliderReleased.emit()
    assert s.request.strength == 0.3 and steps_of(w) == count + 2
    assert handle.minimum() == 1 and handle.maximum() == 100
    p.init_clear.click()
    assert s.request.init_image is None and s.request.strength is None and not p.strength.isEnabled()
    assert p.init_preview.text() == "No init image"
    w.act_undo.trigger()
    assert s.request.init_image == request.init_image and s.request.strength == 0.3
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert s.request.init_image is None and steps_of(w) == count


def test_a_new_prompt_refits_the_original_picture_in_the_same_step(qtbot, make_window):
    w = make_window(DIFFUSION)
    s = w.session
    # left half black, right half white: a re-fit of the original keeps the edge in the middle of the sheet
    picture = np.zeros((64, 64), dtype=np.uint8)
    picture[:, 32:] = 255
    assert s.set_init_image(picture, "halves")
    assert size_of(s.request.init_image) == (CELL * 2, CELL)  # "Ab"
    count = steps_of(w)
    edit = w.prompt.prompt
    edit.clear()
    qtbot.keyClicks(edit, "Hello")
    assert s.request.prompt == "Hello" and size_of(s.request.init_image) == (CELL * 5, CELL)
    fitted = decode_init_image(s.request.init_image)
    assert fitted[:, : CELL * 2].mean() < 20 and fitted[:, -CELL * 2:].mean() > 235  # from the original
    assert steps_of(w) - count == 1  # the typing is one step, with its re-fits in it
    s.change("Prompt", prompt="Ab\nCd")  # two lines
    assert size_of(s.request.init_image) == (CELL * 2, CELL * 2)
    w.act_undo.trigger()
    assert s.request.prompt == "Hello" and size_of(s.request.init_image) == (CELL * 5, CELL)
    # the family never sees a wrong size
    settle(qtbot, w)
    for job in s.bridge.engine.submitted:
        r = job.request
        if r.init_image is not None:
            lines = (r.prompt or "Ab").split("\n")
            assert size_of(r.init_image) == (CELL * max(map(len, lines)), CELL * len(lines))


def test_a_request_from_elsewhere_is_refitted_from_its_own_picture(make_window):
    w = make_window(DIFFUSION)
    s = w.session
    buf = io.BytesIO()
    Image.fromarray(np.full((CELL, CELL * 3), 90, dtype=np.uint8)).save(buf, format="PNG")
    restored = s.request.with_(prompt="Abc", init_image=base64.b64encode(buf.getvalue()).decode("ascii"))
    s.set_request(restored, "Restore")
    assert s.request == restored  # already the right size: untouched
    s.change("Prompt", prompt="A")
    assert size_of(s.request.init_image) == (CELL, CELL)


def test_dropping_a_plain_image_on_a_diffusion_model_sets_the_init_image(qtbot, make_window, tmp_path):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    w = make_window(DIFFUSION)
    picture = strip_png(tmp_path / "drawing.png", chars=3)
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(picture))])
    w.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier))
    request = w.session.request
    assert request.init_image is not None and request.strength == DEFAULT_STRENGTH and request.latent is None
    assert size_of(request.init_image) == (CELL * 2, CELL)
    assert not [j for j in w.session.bridge.engine.submitted if j.kind == "encode"]


def test_init_image_errors_are_reported_not_raised(qtbot, make_window, tmp_path):
    w = make_window(DIFFUSION)
    s = w.session
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with qtbot.waitSignal(s.message, timeout=2000, check_params_cb=lambda lv, text, d: lv == "error"):
        assert not s.set_init_image(junk)
    assert s.request.init_image is None
    s.use_model(GAN)  # no image-to-image here
    with qtbot.waitSignal(s.message, timeout=2000, check_params_cb=lambda lv, text, d: "cannot start" in text):
        assert not s.set_init_image(np.zeros((4, 4), dtype=np.uint8))

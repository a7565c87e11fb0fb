"""Family controls on the offscreen platform, with the fake engine: the style-based GAN's layer mixing, layer range,
noise and projection (progress and Cancel); the diffusion family's sampler and image-to-image; and that none of them
shows for the VAE. The panels make them from each family's parameter specs; only manifests, specs and capabilities
matter here: the packages carry placeholder weights."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QSettings

from studio.io.images import decode_init_image
from studio.latent.directions import principal_directions
from studio.params import INIT, SAMPLER
from studio.project import SavedLatent
from studio.io.package import write_package
from studio.ui import dialogs
from studio.ui.main_window import MainWindow
from studio.ui.session import DEFAULT_STRENGTH, Session

from conftest import TINY_ALPHABET, make_tiny_package
from fake_engine import FakeEngine
from dialog_guard import block_dialogs

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
    block_dialogs(monkeypatch, "ask_encode_image", "ask_init_image")


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


def params(window) -> dict:
    return dict(window.session.request.params)


def latent_params(window) -> dict:
    """The request's params without its condition (the prompt the model opens with)."""
    return {k: v for k, v in params(window).items() if k != "prompt"}


def strip_png(path, chars: int = 2, value: int = 200):
    Image.fromarray(np.full((CELL, CELL * chars), value, dtype=np.uint8)).save(path)
    return path


# --- which controls show -----------------------------------------------------------------------------------------


GAN_ONLY = ("mix_layer", "layer_start", "layer_end", "noise")


def test_gan_controls_show_only_for_the_gan(qtbot, make_window):
    w = make_window(GAN)
    latent, prompt = w.latent, w.prompt
    assert all(latent.control(name).isVisibleTo(w) for name in GAN_ONLY)
    assert latent.sliders["noise"].value() == 1.0  # noise on, as trained (0 turns it off)
    assert latent.encode_button.text() == "Project Image…" and latent.encode_button.isEnabled()
    assert "style w" in latent.encode_button.toolTip()
    assert "Pro&ject" in w.act_encode.text()
    num_ws = latent.table.get("layer_end").default  # every layer: 2 per resolution from 4×4, plus the last toRGB
    assert num_ws == 8
    mix_layer, start, end = (latent.editor(name) for name in ("mix_layer", "layer_start", "layer_end"))
    assert mix_layer.maximum() == num_ws and mix_layer.value() == num_ws // 2
    assert (start.value(), end.value()) == (0, num_ws)
    assert latent.sliders["mix_strength"].default == 1.0 and latent.sliders["mix_strength"].value() == 1.0
    assert prompt.group_box(SAMPLER) is None and prompt.group_box(INIT) is None
    # a switch to the VAE takes them all away again
    w.session.use_model(VAE)
    assert [name for name in GAN_ONLY if latent.control(name) is not None] == []
    assert latent.encode_button.text() == "Encode Image…" and "E&ncode" in w.act_encode.text()
    assert latent.sliders["mix_strength"].default == 0.5
    assert prompt.group_box(SAMPLER) is None and prompt.group_box(INIT) is None


def test_the_vae_shows_no_family_controls(qtbot, make_window):
    w = make_window(VAE)
    assert set(w.prompt.controls) == {"prompt"}
    assert set(w.latent.controls) == {"truncation", "mix_seed", "mix_strength", "variation_seed", "variation_strength",
                                      *(f"d{k}" for k in range(4)), *(f"z{k}" for k in range(8))}
    assert set(w.prompt.boxes) == {"Conditions"}
    assert w.latent.group_box(SAMPLER) is None and w.prompt.group_box(SAMPLER) is None


def test_diffusion_shows_sampler_and_image_to_image_but_no_gan_controls(qtbot, make_window):
    w = make_window(DIFFUSION)
    p = w.prompt
    assert p.group_box(SAMPLER).isVisibleTo(w) and p.editor("sampler").isVisibleTo(w)
    assert p.group_box(INIT).isVisibleTo(w) and p.editor("init_image").isVisibleTo(w)
    assert [name for name in GAN_ONLY if w.latent.control(name) is not None] == []
    assert not w.latent.encode_button.isEnabled()
    # a 32×32 noise latent has 1024 values: no raw sliders for it
    assert not w.latent.show_raw.isEnabled() and not any(n.startswith("z") for n in w.latent.sliders)
    assert "1024 values" in w.latent.show_raw.toolTip()
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


# --- the GAN's params ---------------------------------------------------------------------------------------------


def test_mix_layer_reaches_the_request_in_one_undo_step(qtbot, make_window):
    w = make_window(GAN)
    s, mix_layer = w.session, w.latent.editor("mix_layer")
    assert not w.latent.control("mix_layer").isEnabled()  # it matters only with a mix seed
    s.set_param("mix_seed", 5, "Mix seed 5")
    assert w.latent.control("mix_layer").isEnabled()
    before, count = s.request, steps_of(w)
    mix_layer.setValue(2)
    assert latent_params(w) == {"mix_seed": 5, "mix_layer": 2} and steps_of(w) == count + 1
    assert type(s.request.param("mix_layer")) is int
    mix_layer.setValue(mix_layer.maximum() // 2)  # back to the family default: unset
    assert "mix_layer" not in s.request.params
    w.act_undo.trigger()
    assert s.request.param("mix_layer") == 2 and mix_layer.value() == 2
    w.act_undo.trigger()
    assert s.request == before and mix_layer.value() == 4


def test_layer_range_reaches_the_request(qtbot, make_window):
    w = make_window(GAN)
    s, latent = w.session, w.latent
    count = steps_of(w)
    latent.editor("layer_start").setValue(2)
    latent.editor("layer_end").setValue(5)
    assert latent_params(w) == {"layer_start": 2, "layer_end": 5} and steps_of(w) == count + 2
    latent.sliders["d0"].slider.setValue(100)
    assert s.request.param("d0") == 1.0
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert latent_params(w) == {"layer_start": 2} and latent.editor("layer_end").value() == 8


def test_layer_range_keeps_start_before_end(qtbot, make_window):
    w = make_window(GAN)
    assert w.latent.table.get("layer_start").at_most == "layer_end"
    latent = w.latent
    start, end = latent.editor("layer_start"), latent.editor("layer_end")
    start.setValue(2)
    end.setValue(5)
    assert start.maximum() == 5 and end.minimum() == 2  # start ≤ end
    w.act_undo.trigger()
    assert end.minimum() == 2 and start.maximum() == 8


def test_noise_amount_is_an_undoable_slider_and_zero_turns_it_off(qtbot, make_window):
    w = make_window(GAN)
    noise = w.latent.sliders["noise"]
    count = steps_of(w)
    noise.slider.setValue(0)  # off
    assert latent_params(w) == {"noise": 0.0} and steps_of(w) == count + 1
    noise.reset_button.click()  # back to as trained: unset
    assert latent_params(w) == {} and noise.value() == 1.0 and steps_of(w) == count + 2
    # a drag of the slider is one step
    handle = noise.slider
    handle.sliderPressed.emit()
    for raw in (120, 150, 210, 250):
        handle.setValue(raw)
    handle.sliderReleased.emit()
    assert latent_params(w) == {"noise": 2.5} and steps_of(w) == count + 3
    assert (handle.minimum(), handle.maximum()) == (0, 400)  # the family's noise range
    w.act_undo.trigger()
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert latent_params(w) == {} and noise.value() == 1.0


def test_truncation_range_follows_the_family(make_window):
    w = make_window(GAN)
    handle = w.latent.sliders["truncation"].slider
    assert (handle.minimum(), handle.maximum()) == (-100, 200)
    w.session.use_model(VAE)
    handle = w.latent.sliders["truncation"].slider
    assert (handle.minimum(), handle.maximum()) == (0, 150)


def test_use_latent_interpolation_and_encode_keep_noise(qtbot, make_window, tmp_path):
    w = make_window(GAN)
    s = w.session
    assert s.entry.parameters.get("noise").render_only  # it acts while rendering, not on the latent

    def set_params(values):
        s.set_request(s.request.with_params(values), "Params")

    set_params({"noise": 0.0, "d0": 1.0, "mix_layer": 3, "mix_seed": 4})
    for name, value in (("a", 0.5), ("b", -0.5)):
        s.document.latents.append(SavedLatent(name, GAN, "", tuple([value] * 16)))
    s.use_latent(0)
    assert s.request.latent == tuple([0.5] * 16) and latent_params(w) == {"noise": 0.0}
    assert s.request.param("prompt") == "Ab"  # the condition is kept too
    set_params({"noise": 2.0, "d1": 1.0})
    s.interpolate_latents(0, 1, 0.5, "lerp")
    assert latent_params(w) == {"noise": 2.0} and s.request.latent == pytest.approx([0.0] * 16)
    set_params({"noise": 0.5, "truncation": 0.7})
    # an encoding holds no edits: those that still act on it (ψ here) are kept with the noise
    with qtbot.waitSignal(s.request_changed, timeout=5000,
                          check_params_cb=lambda r: dict(r.params) == {"prompt": "Ab", "noise": 0.5,
                                                                       "truncation": 0.7}):
        s.encode_image(strip_png(tmp_path / "ab.png"), "Ab")
    # a VAE request has no noise: the latent replaces every latent param there as before
    s.use_model(VAE)
    s.document.latents.append(SavedLatent("v", VAE, "", tuple([0.1] * 8)))
    set_params({"d0": 1.0})
    s.use_latent(2)
    assert latent_params(w) == {}


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
    job = [j for j in s.bridge.engine.submitted if j.kind == "work"][-1]  # encoding is a work function
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
    job = [j for j in slow.submitted if j.kind == "work"][-1]
    w2.act_cancel.trigger()
    qtbot.waitUntil(lambda: job.state == "cancelled", timeout=5000)


# --- diffusion: sampler -------------------------------------------------------------------------------------------

SAMPLER_PARAMS = ("sampler", "steps", "guidance", "eta")


def test_sampler_defaults_are_the_family_defaults(make_window):
    w = make_window(DIFFUSION)
    p, request, table = w.prompt, w.session.request, w.session.entry.parameters
    assert not any(name in request.params for name in SAMPLER_PARAMS)
    defaults = {name: table.default(name) for name in SAMPLER_PARAMS}
    combo = p.editor("sampler")
    assert combo.currentData() == defaults["sampler"]
    assert combo.currentText() == dict(table.get("sampler").choices)[defaults["sampler"]]
    assert p.editor("steps").value() == defaults["steps"]
    assert p.sliders["guidance"].value() == defaults["guidance"] and p.sliders["eta"].value() == defaults["eta"]
    assert [combo.itemData(i) for i in range(combo.count())] == list(table.get("sampler").choice_values())
    assert p.sliders["guidance"].slider.maximum() == 2000  # 20.0, the family's guidance range
    assert (p.editor("steps").minimum(), p.editor("steps").maximum()) == (1, 1000)
    assert p.control("eta").isEnabled() == (defaults["sampler"] == "ddim")  # η is DDIM's


def test_sampler_combo_sets_the_request_and_undo_restores(qtbot, make_window):
    w = make_window(DIFFUSION)
    s, combo, table = w.session, w.prompt.editor("sampler"), w.session.entry.parameters
    count = steps_of(w)
    assert table.default("sampler") == "ddim"
    combo.activated.emit(combo.findData("dpmpp"))
    assert s.request.param("sampler") == "dpmpp" and steps_of(w) == count + 1
    assert not w.prompt.control("eta").isEnabled() and combo.currentData() == "dpmpp"
    combo.setCurrentIndex(combo.findData("ddim"))  # (what a pick does before it emits `activated`)
    combo.activated.emit(combo.findData("ddim"))
    assert "sampler" not in s.request.params and table.value(s.request, "sampler") == "ddim"  # the default: unset
    assert w.prompt.control("eta").isEnabled() and steps_of(w) == count + 2
    w.prompt.editor("steps").setValue(35)
    assert s.request.param("steps") == 35
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert s.request.param("sampler") == "dpmpp" and combo.currentData() == "dpmpp"
    w.act_undo.trigger()
    assert "sampler" not in s.request.params and combo.currentData() == "ddim"


def test_guidance_and_eta_sliders_set_the_request(qtbot, make_window):
    w = make_window(DIFFUSION)
    s, p = w.session, w.prompt
    count = steps_of(w)
    p.sliders["guidance"].slider.setValue(750)
    assert s.request.param("guidance") == 7.5 and steps_of(w) == count + 1
    p.sliders["eta"].slider.setValue(30)
    assert s.request.param("eta") == 0.3
    p.sliders["eta"].reset_button.click()
    assert "eta" not in s.request.params and p.sliders["eta"].value() == 1.0


# --- diffusion: image to image ------------------------------------------------------------------------------------


def size_of(init_image: str) -> tuple[int, int]:
    image = decode_init_image(init_image)
    return image.shape[1], image.shape[0]


def test_init_image_set_strength_and_clear(qtbot, make_window, tmp_path, monkeypatch):
    w = make_window(DIFFUSION)
    s, p = w.session, w.prompt
    picture = tmp_path / "photo.png"
    Image.fromarray(np.linspace(0, 255, 90 * 60).reshape(60, 90).astype(np.uint8)).save(picture)
    init, strength = p.control("init_image"), p.sliders["strength"]
    assert not strength.isEnabled() and not init.clear.isEnabled()  # strength matters only with an init image
    monkeypatch.setattr(dialogs, "ask_init_image", lambda parent: str(picture))
    count = steps_of(w)
    p.editor("init_image").click()
    request = s.request
    assert request.param("init_image") is not None and request.param("strength") == DEFAULT_STRENGTH == 0.6
    # fitted to the prompt's sheet
    assert size_of(request.param("init_image")) == (CELL * len(request.param("prompt")), CELL)
    assert steps_of(w) == count + 1 and strength.isEnabled() and init.clear.isEnabled()
    assert init.preview.pixmap() is not None and not init.preview.pixmap().isNull()
    # a strength drag is one step
    handle = strength.slider
    handle.sliderPressed.emit()
    for raw in (50, 40, 30):
        handle.setValue(raw)
    handle.sliderReleased.emit()
    assert s.request.param("strength") == 0.3 and steps_of(w) == count + 2
    assert handle.minimum() == 1 and handle.maximum() == 100
    init.clear.click()
    assert "init_image" not in s.request.params and "strength" not in s.request.params
    assert not strength.isEnabled() and init.preview.text() == "No init image"
    w.act_undo.trigger()
    assert s.request.param("init_image") == request.param("init_image") and s.request.param("strength") == 0.3
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert "init_image" not in s.request.params and steps_of(w) == count


def test_a_new_prompt_refits_the_original_picture_in_the_same_step(qtbot, make_window):
    w = make_window(DIFFUSION)
    s = w.session
    # left half black, right half white: a re-fit of the original keeps the edge in the middle of the sheet
    picture = np.zeros((64, 64), dtype=np.uint8)
    picture[:, 32:] = 255
    assert s.set_init_image(picture, "halves")
    assert size_of(s.request.param("init_image")) == (CELL * 2, CELL)  # "Ab"
    count = steps_of(w)
    edit = w.prompt.editor("prompt")
    edit.clear()
    qtbot.keyClicks(edit, "Hello")
    assert s.request.param("prompt") == "Hello" and size_of(s.request.param("init_image")) == (CELL * 5, CELL)
    fitted = decode_init_image(s.request.param("init_image"))
    assert fitted[:, : CELL * 2].mean() < 20 and fitted[:, -CELL * 2:].mean() > 235  # from the original
    assert steps_of(w) - count == 1  # the typing is one step, with its re-fits in it
    s.set_param("prompt", "Ab\nCd", "Prompt")  # two lines
    assert size_of(s.request.param("init_image")) == (CELL * 2, CELL * 2)
    w.act_undo.trigger()
    assert s.request.param("prompt") == "Hello" and size_of(s.request.param("init_image")) == (CELL * 5, CELL)
    # the family never sees a wrong size
    settle(qtbot, w)
    for job in s.bridge.engine.submitted:
        r = job.request
        if r.param("init_image") is not None:
            lines = (r.param("prompt") or "Ab").split("\n")
            assert size_of(r.param("init_image")) == (CELL * max(map(len, lines)), CELL * len(lines))


def test_a_request_from_elsewhere_is_refitted_from_its_own_picture(make_window):
    w = make_window(DIFFUSION)
    s = w.session
    buf = io.BytesIO()
    Image.fromarray(np.full((CELL, CELL * 3), 90, dtype=np.uint8)).save(buf, format="PNG")
    restored = s.request.with_params({"prompt": "Abc",
                                      "init_image": base64.b64encode(buf.getvalue()).decode("ascii")})
    s.set_request(restored, "Restore")
    assert s.request == restored  # already the right size: untouched
    s.set_param("prompt", "A", "Prompt")
    assert size_of(s.request.param("init_image")) == (CELL, CELL)


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
    assert request.param("init_image") is not None and request.param("strength") == DEFAULT_STRENGTH
    assert request.latent is None and size_of(request.param("init_image")) == (CELL * 2, CELL)
    assert not [j for j in w.session.bridge.engine.submitted if j.kind == "encode"]


def test_init_image_errors_are_reported_not_raised(qtbot, make_window, tmp_path):
    w = make_window(DIFFUSION)
    s = w.session
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with qtbot.waitSignal(s.message, timeout=2000, check_params_cb=lambda lv, text, d: lv == "error"):
        assert not s.set_init_image(junk)
    assert "init_image" not in s.request.params
    s.use_model(GAN)  # no image-to-image here
    with qtbot.waitSignal(s.message, timeout=2000, check_params_cb=lambda lv, text, d: "cannot start" in text):
        assert not s.set_init_image(np.zeros((4, 4), dtype=np.uint8))

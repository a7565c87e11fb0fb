"""The panels are made from a family's parameter specs: a made-up family, registered here with a param of every kind,
gets its controls in the window, grouped as it says, and moving them sets its params as undoable steps — a new family
needs no UI change. And no module outside studio/families and studio/train imports a specific family (or the
samplers), so that this stays true."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from PySide6.QtCore import QSettings, Qt

from studio.families import register_family
from studio.families.base import Family
from studio.families.registry import unregister_family
from studio.io.images import decode_init_image
from studio.params import CONDITIONS, Capability, Kind, ParamSpec
from studio.request import MAX_SEED
from studio.io.package import write_package
from studio.ui import dialogs
from studio.ui.main_window import MainWindow
from studio.ui.panels.controls import (ChoiceControl, ImageControl, IntSpin, NumberSpin, SeedControl, SoundControl,
                                       TextControl, ValueSlider, object_name)
from studio.ui.session import Session

from fake_engine import FakeEngine

ROOT = Path(__file__).resolve().parents[2]
WOBBLE = "Wobble"


class WobblyFamily(Family):
    """A family the app has never heard of, with one param of each kind (and a few relations between them)."""

    name = "wobbly"
    output_kinds = ("image",)
    capabilities = Capability.SAMPLE

    def parameters(self, manifest):
        return (
            ParamSpec("tone", Kind.CHOICE, "Tone", default="warm", choices=(("warm", "Warm"), ("cold", "Cold")),
                      group=CONDITIONS, render_only=True, help="The colour of the wobble"),
            ParamSpec("motto", Kind.TEXT, "Motto", default="", group=CONDITIONS, render_only=True,
                      help="Words to wobble"),
            ParamSpec("wobble", Kind.FLOAT, "Wobble", default=0.5, span=(0.0, 2.0), group=WOBBLE,
                      help="How much it wobbles"),
            ParamSpec("wobble_mode", Kind.CHOICE, "Mode", default="slow", choices=(("slow", "Slow"), ("fast", "Fast")),
                      group=WOBBLE, help="Slow or fast wobbles"),
            ParamSpec("wobble_rate", Kind.FLOAT, "Rate", default=1.0, range=(0.0, 10.0), group=WOBBLE,
                      when=("wobble_mode", ("fast",)), help="Wobbles per second (fast mode only)"),
            ParamSpec("ripples", Kind.INT, "Ripples", default=3, range=(1, 9), group=WOBBLE, help="How many ripples"),
            ParamSpec("jitter_seed", Kind.SEED, "Jitter seed", group=WOBBLE, help="Seed of the jitter"),
            ParamSpec("jitter", Kind.FLOAT, "Jitter", default=0.0, span=(0.0, 1.0), group=WOBBLE,
                      when=("jitter_seed", ()), help="How strong the jitter is"),
            ParamSpec("knob", Kind.FLOAT, "Knob", default=0.0, group=WOBBLE, help="Any number (no slider span)"),
            ParamSpec("stamp", Kind.IMAGE, "Stamp", group=WOBBLE, help="A picture stamped on it"),
            ParamSpec("hum", Kind.SOUND, "Hum", group=WOBBLE, help="A sound it hums"),
            ParamSpec("low", Kind.INT, "Band", default=0, range=(0, 10), group="Band", at_most="high",
                      help="Lowest band"),
            ParamSpec("high", Kind.INT, "to", default=10, range=(0, 10), group="Band", help="Highest band"),
            ParamSpec("w", Kind.FLOAT, "w", default=0.0, span=(-1.0, 1.0), count=3, group="Band",
                      help="A band weight"),
        )


@pytest.fixture
def wobbly(tmp_path):
    register_family(WobblyFamily)
    root = tmp_path / "models"
    manifest = {
        "format": 1, "id": "wobbly-1", "name": "Wobbly One", "family": "wobbly", "version": "0.0.1",
        "license": "CC0-1.0", "description": "a made-up family",
        "output": {"kind": "image", "width": 16, "height": 16, "channels": 1},
        "latent": {"shape": [4], "prior": "normal"}, "conditions": {"kind": "none"},
        "architecture": {}, "training": {"quality": {}},
    }
    write_package(root / "wobbly-1", manifest, {"placeholder": torch.zeros(1)})
    yield root
    unregister_family("wobbly")


@pytest.fixture
def window(qtbot, wobbly, tmp_path, monkeypatch):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    engine = FakeEngine()
    session = Session(engine, roots=[wobbly])
    session.refresh_models()
    assert [e.id for e in session.entries if e.ok] == ["wobbly-1"], [str(e.error) for e in session.entries]
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("wobbly-1")
    session.undo.setClean()
    w.show()
    yield w
    session.undo.setClean()
    w.close()
    engine.shutdown()


def steps(window) -> int:
    return window.session.undo.index()


def params(window) -> dict:
    return dict(window.session.request.params)


def test_a_new_family_gets_a_control_per_param_by_kind_in_its_groups(window):
    latent, prompt = window.latent, window.prompt
    kinds = {"tone": ChoiceControl, "motto": TextControl}
    assert {n: type(c) for n, c in prompt.controls.items()} == kinds
    assert {n: type(c) for n, c in latent.controls.items()} == {
        "wobble": ValueSlider, "wobble_mode": ChoiceControl, "wobble_rate": ValueSlider, "ripples": IntSpin,
        "jitter_seed": SeedControl, "jitter": ValueSlider, "knob": NumberSpin, "stamp": ImageControl,
        "hum": SoundControl, "low": IntSpin, "high": IntSpin, "w0": ValueSlider, "w1": ValueSlider,
        "w2": ValueSlider}
    assert set(latent.boxes) == {WOBBLE, "Band"} and set(prompt.boxes) == {CONDITIONS}
    assert latent.group_box(WOBBLE).title() == WOBBLE and latent.group_box(WOBBLE).isVisibleTo(window)
    for name, control in latent.controls.items():
        assert control.isVisibleTo(window) and (control.caption.isVisibleTo(window) or control.spans), name
        assert latent.group_box(control.spec.group).isAncestorOf(control), name
    # the specs say the rest: captions, ranges, defaults, choices, help, object names
    assert latent.control("wobble").caption.text() == "Wobble" and latent.control("w1").caption.text() == "w1"
    assert latent.editor("wobble").objectName() == "slider_wobble_handle"
    assert (latent.editor("wobble").minimum(), latent.editor("wobble").maximum()) == (0, 200)
    assert latent.sliders["wobble"].value() == 0.5 and latent.editor("ripples").value() == 3
    assert (latent.editor("ripples").minimum(), latent.editor("ripples").maximum()) == (1, 9)
    assert latent.editor("ripples").objectName() == "ripplesSpin"
    assert latent.editor("jitter_seed").objectName() == "jitterSeedEdit" and latent.editor("jitter_seed").text() == ""
    assert prompt.editor("tone").objectName() == "toneCombo" and prompt.editor("tone").currentData() == "warm"
    assert [prompt.editor("tone").itemText(i) for i in range(2)] == ["Warm", "Cold"]
    assert "How much it wobbles" in latent.editor("wobble").toolTip()
    assert latent.editor("stamp").objectName() == "stampButton" and latent.control("stamp").preview.text() == "No stamp"
    # two whole numbers over one range share a row ("Band 0 to 10"); a lone one keeps its own
    assert latent.control("low").parentWidget() is latent.control("high").parentWidget() is not latent.group_box("Band")
    assert latent.control("ripples").parentWidget() is latent.group_box(WOBBLE)
    assert not latent.encode_button.isEnabled()  # no Capability.ENCODE
    assert object_name("negative_prompt", "Edit") == "negativePromptEdit"


def test_moving_each_control_sets_its_param_as_one_undoable_step(qtbot, window, tmp_path, monkeypatch):
    s, latent, prompt = window.session, window.latent, window.prompt
    start, count = s.request, steps(window)
    # FLOAT: a drag is one step
    handle = latent.editor("wobble")
    handle.sliderPressed.emit()
    for raw in (60, 90, 150):
        handle.setValue(raw)
    handle.sliderReleased.emit()
    assert params(window) == {"wobble": 1.5} and steps(window) == count + 1
    # CHOICE, and `when`: the rate matters only in fast mode
    assert not latent.control("wobble_rate").isEnabled()
    combo = latent.editor("wobble_mode")
    combo.activated.emit(combo.findData("fast"))
    assert s.request.param("wobble_mode") == "fast" and latent.control("wobble_rate").isEnabled()
    # INT (typing applies once)
    latent.editor("ripples").setValue(5)
    assert s.request.param("ripples") == 5 and type(s.request.param("ripples")) is int
    # SEED: Enter applies, the full 64-bit range, ↑ steps, empty unsets
    field = latent.editor("jitter_seed")
    assert not latent.control("jitter").isEnabled()
    field.setText(str(MAX_SEED))
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert s.request.param("jitter_seed") == MAX_SEED and latent.control("jitter").isEnabled()
    field.setText("41")
    qtbot.keyClick(field, Qt.Key.Key_Return)
    qtbot.keyClick(field, Qt.Key.Key_Up)
    assert s.request.param("jitter_seed") == 42 and field.text() == "42"
    # a FLOAT without a span: a spin box
    latent.editor("knob").setValue(2.5)
    assert s.request.param("knob") == 2.5
    # TEXT: one step per visit of the field
    edit = prompt.editor("motto")
    before = steps(window)
    edit.setFocus()
    qtbot.keyClicks(edit, "hello")
    assert s.request.param("motto") == "hello" and steps(window) == before + 1
    # CHOICE in the conditions panel
    tone = prompt.editor("tone")
    tone.activated.emit(tone.findData("cold"))
    assert s.request.param("tone") == "cold"
    # IMAGE: picked, shown, cleared
    picture = tmp_path / "stamp.png"
    Image.fromarray(np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)).save(picture)
    monkeypatch.setattr(dialogs, "ask_init_image", lambda parent: str(picture))
    latent.editor("stamp").click()
    assert decode_init_image(s.request.param("stamp")).shape == (12, 20)
    stamp = latent.control("stamp")
    assert not stamp.preview.pixmap().isNull() and stamp.clear.isEnabled()
    # SOUND: picked, shown
    hum = tmp_path / "hum.wav"
    sf.write(hum, 0.5 * np.sin(np.linspace(0, 400, 8000)).astype(np.float32), 8000)
    monkeypatch.setattr(dialogs, "ask_sound", lambda parent: str(hum))
    latent.editor("hum").click()
    assert s.request.param("hum") and "8000 Hz" in latent.control("hum").preview.text()
    stamp.clear.click()
    assert "stamp" not in s.request.params and stamp.preview.text() == "No stamp"
    assert steps(window) == count + 12
    # Reset All: every param of the latent panel's groups, as one step; the conditions stay
    latent.reset_all.click()
    assert params(window) == {"motto": "hello", "tone": "cold"} and steps(window) == count + 13
    assert latent.sliders["wobble"].value() == 0.5 and latent.editor("jitter_seed").text() == ""
    # every step undoes
    while steps(window) > count:
        window.act_undo.trigger()
    assert s.request == start and latent.sliders["wobble"].value() == 0.5 and prompt.editor("motto").text() == ""


def test_a_value_at_the_default_is_unset_and_an_empty_seed_field_unsets(qtbot, window):
    s, latent = window.session, window.latent
    latent.editor("ripples").setValue(4)
    latent.editor("ripples").setValue(3)  # the default
    assert "ripples" not in s.request.params
    latent.sliders["wobble"].slider.setValue(120)
    latent.sliders["wobble"].reset_button.click()
    assert "wobble" not in s.request.params
    field = latent.editor("jitter_seed")
    field.setText("7")
    qtbot.keyClick(field, Qt.Key.Key_Return)
    field.clear()
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert "jitter_seed" not in s.request.params
    assert params(window) == {}


def test_a_param_that_stays_at_or_below_another_is_bounded_by_it(window):
    latent = window.latent
    low, high = latent.editor("low"), latent.editor("high")
    assert (low.maximum(), high.minimum()) == (10, 0)
    high.setValue(6)
    low.setValue(4)
    assert (low.maximum(), high.minimum()) == (6, 4)
    window.act_undo.trigger()
    assert (low.maximum(), high.minimum()) == (6, 0)


def test_a_charset_text_refuses_what_it_cannot_draw(qtbot, tmp_path):
    from studio.ui.panels.controls import make_control

    control = make_control(ParamSpec("glyphs", Kind.TEXT, "Glyphs", default="Ab", charset="ABCDEFGabcdefg"))
    qtbot.addWidget(control)
    sent = []
    control.edited.connect(lambda *args: sent.append(args))
    assert control.hint.text() == "Draws A–G a–g and spaces"
    control.field.setText("Abz")
    control.field.textEdited.emit("Abz")
    assert sent == [] and "Cannot draw z" in control.hint.text()
    control.field.setText("  ")
    control.field.textEdited.emit("  ")
    assert sent == [] and "Type something" in control.hint.text()
    control.field.setText("Bad")
    control.field.textEdited.emit("Bad")
    assert [a[:2] for a in sent] == [("glyphs", "Bad")]


# --- nothing outside the families knows a family ------------------------------------------------------------------

FAMILY_PACKAGES = sorted(p.name for p in (ROOT / "studio" / "families").iterdir()
                         if p.is_dir() and (p / "__init__.py").is_file())
FORBIDDEN = re.compile(r"^studio\.(families\.(" + "|".join(FAMILY_PACKAGES) + r")|nets\.samplers)(\.|$)")
ALLOWED_FOLDERS = ("families", "train")


def forbidden_imports(source: str) -> list[str]:
    """The specific-family (or sampler) modules `source` imports: `import …`, `from … import …` (a family imported
    from its parent package included) and `importlib.import_module("…")` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = ([node.module] if FORBIDDEN.match(node.module)
                     else [f"{node.module}.{alias.name}" for alias in node.names])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        found += [name for name in names if FORBIDDEN.match(name)]
    return sorted(set(found))


def test_the_family_packages_are_found():
    assert {"gan", "diffusion", "vae", "audio_vae", "stable_diffusion", "generators"} <= set(FAMILY_PACKAGES)


def test_the_scan_catches_every_form_of_import():
    source = ("import studio.families.gan.family\nfrom studio.families.diffusion.family import GUIDANCE_RANGE\n"
              "from studio.families import vae\nfrom studio.nets.samplers import SAMPLER_NAMES\n"
              "from studio.nets import samplers\nimport importlib\n"
              "importlib.import_module('studio.families.generators.onnx')\n"
              "from studio.families import get_family\nfrom studio.families.base import Family\n"
              "from studio.params import Kind\nfrom studio.nets.unet import UNet\n")
    assert forbidden_imports(source) == ["studio.families.diffusion.family", "studio.families.gan.family",
                                         "studio.families.generators.onnx", "studio.families.vae",
                                         "studio.nets.samplers"]


def test_no_module_outside_families_and_train_imports_a_specific_family():
    offenders = {}
    for path in sorted((ROOT / "studio").rglob("*.py")):
        relative = path.relative_to(ROOT / "studio")
        if relative.parts[0] in ALLOWED_FOLDERS:
            continue
        found = forbidden_imports(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(relative)] = found
    assert offenders == {}, "use the family's specs (entry.parameters, entry.capabilities) or get_family(name)"


def test_the_panels_import_no_torch():
    """The panels read specs and requests only: importing them (at module level) never loads torch."""
    code = ("import importlib, pkgutil, sys\nimport studio.ui.panels as panels\n"
            "for m in pkgutil.iter_modules(panels.__path__):\n"
            "    importlib.import_module('studio.ui.panels.' + m.name)\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"

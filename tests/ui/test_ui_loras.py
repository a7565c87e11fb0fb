"""The LoRA list of the conditions panel and LoRAs from other tools' pictures (offscreen, fake engine): a family that
declares a `loras` text param gets rows of [name ▾] [weight] [✕] with Add LoRA and ⟳ instead of a text field, the
names being the LoRA files beside the model; adding, re-weighting, renaming and removing are each one undo step
and write the request's plain "name:w, name:w" text; a LoRA that is not there is shown and flagged, and an empty
folder says where LoRAs go. Open Image Settings on an AUTOMATIC1111 picture keeps a LoRA whose file here has another
name but the same hash (read on a worker thread, never on the GUI thread) and reports one that is not here."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin
from PySide6.QtCore import QEvent, QSettings, Qt
from PySide6.QtGui import QFocusEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit
from safetensors.numpy import save_file

from fake_engine import FakeEngine
from studio.families import register_family
from studio.families.base import Family
from studio.families.registry import unregister_family
from studio.io import loras as LF
from studio.io.package import write_package
from studio.params import CONDITIONS, Capability, Kind, ParamSpec
from studio.ui import dialogs
from studio.ui.main_window import MainWindow
from studio.ui.open_files import LoraHashJob, apply_image_settings
from studio.ui.panels.controls import TextControl
from studio.ui.panels.lora_list import LoraListControl
from studio.ui.session import INFO, Session


class LorishFamily(Family):
    """A made-up family with a prompt and a LoRA list (any family declaring `loras` gets the list)."""

    name = "lorish"
    output_kinds = ("image",)
    capabilities = Capability.SAMPLE

    def parameters(self, manifest):
        return (ParamSpec("prompt", Kind.TEXT, "Prompt", default="", group=CONDITIONS, render_only=True),
                ParamSpec("loras", Kind.TEXT, "LoRAs", default="", group=CONDITIONS, render_only=True,
                          help="LoRAs as name:weight"))


def write_lora(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file({"lora_unet_x.lora_down.weight": rng.standard_normal((2, 4)).astype(np.float32),
               "lora_unet_x.lora_up.weight": rng.standard_normal((4, 2)).astype(np.float32)}, str(path))
    return path


def a1111_hash(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()


def a1111_png(path: Path, text: str) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, pnginfo=info)
    return path


@pytest.fixture
def models(tmp_path, monkeypatch):
    register_family(LorishFamily)
    monkeypatch.setattr(LF, "_hashes", {})  # nothing known: each test reads what it needs
    root = tmp_path / "models"
    for model_id in ("lorish-1", "lorish-2"):
        manifest = {
            "format": 1, "id": model_id, "name": model_id.title(), "family": "lorish", "version": "0.0.1",
            "license": "CC0-1.0", "description": "a made-up family with LoRAs",
            "output": {"kind": "image", "width": 16, "height": 16, "channels": 1},
            "latent": {"shape": [4], "prior": "normal"}, "conditions": {"kind": "none"},
            "architecture": {}, "training": {"quality": {}},
        }
        write_package(root / model_id, manifest, {"placeholder": torch.zeros(1)})
    loras = root / "lorish-1" / "loras"  # the model's own loras/ folder; lorish-2 has none
    write_lora(loras / "ink.safetensors", 1)
    write_lora(loras / "paper.safetensors", 2)
    write_lora(loras / "styles" / "zebra.safetensors", 3)
    yield root
    unregister_family("lorish")


@pytest.fixture
def window(qtbot, models, tmp_path, monkeypatch):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    engine = FakeEngine()
    session = Session(engine, roots=[models])
    session.refresh_models()
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("lorish-1")
    session.undo.setClean()
    w.show()
    yield w
    qtbot.waitUntil(lambda: not LoraHashJob.running, timeout=30000)
    session.undo.setClean()
    w.close()
    engine.shutdown()


def loras(window) -> str:
    return str(window.session.request.params.get("loras", ""))


def lora_list(window) -> LoraListControl:
    control = window.prompt.control("loras")
    assert isinstance(control, LoraListControl)
    return control


def focus_in(widget) -> None:
    """What clicking into a box does to it (offscreen windows are never active, so focus is given by hand)."""
    QApplication.sendEvent(widget, QFocusEvent(QEvent.Type.FocusIn, Qt.FocusReason.MouseFocusReason))


def test_the_loras_param_is_a_list_of_the_files_beside_the_model(window):
    control = lora_list(window)
    assert window.findChild(LoraListControl, "loraList") is control and control.isVisibleTo(window)
    assert not any(isinstance(c, TextControl) and c.name == "loras" for c in window.prompt.controls.values())
    assert window.findChild(QLineEdit, "lorasEdit") is None
    assert isinstance(window.prompt.control("prompt"), TextControl)  # other text params keep their field
    assert control.library.names == ["ink", "paper", "zebra"]  # subfolders too
    assert control.folders[0] == window.session.entry.manifest.folder / "loras"
    assert control.rows == [] and control.add_button.isEnabled() and not control.hint.isVisibleTo(window)
    assert control.caption.text() == "LoRAs" and control.caption.isVisibleTo(window)


def test_add_reweight_rename_and_remove_are_each_one_undo_step(qtbot, window):
    control, undo = lora_list(window), window.session.undo
    start = undo.index()
    QTest.mouseClick(control.add_button, Qt.MouseButton.LeftButton)
    assert loras(window) == "ink:1" and undo.index() == start + 1
    QTest.mouseClick(control.add_button, Qt.MouseButton.LeftButton)  # the next LoRA not listed yet
    assert loras(window) == "ink:1, paper:1" and undo.index() == start + 2
    assert [r.objectName() for r in control.rows] == ["loraRow_0", "loraRow_1"]
    row = control.rows[1]
    assert row.name_box.objectName() == "loraRow_1_name" and row.name_box.currentText() == "paper"
    assert row.weight.objectName() == "loraRow_1_weight" and row.remove.objectName() == "loraRow_1_remove"
    assert (row.weight.minimum(), row.weight.maximum(), row.weight.singleStep()) == (-2.0, 2.0, 0.05)
    # three arrow steps in one visit of the weight box: one step
    focus_in(row.weight)
    for _ in range(3):
        row.weight.stepBy(-1)
    assert loras(window) == "ink:1, paper:0.85" and undo.index() == start + 3
    assert undo.undoText().startswith("LoRA paper weight")
    focus_in(row.weight)  # a new visit: a new step
    row.weight.setValue(-0.5)
    assert loras(window) == "ink:1, paper:-0.5" and undo.index() == start + 4
    assert row is control.rows[1]  # the rows are kept (the focus stays in the box being edited)
    # another name from the list
    first = control.rows[0].name_box
    first.setCurrentIndex(first.findText("zebra"))  # what picking it in the popup does
    first.activated.emit(first.currentIndex())
    assert loras(window) == "zebra:1, paper:-0.5" and undo.index() == start + 5
    # remove the first row: the second moves up
    QTest.mouseClick(control.rows[0].remove, Qt.MouseButton.LeftButton)
    assert loras(window) == "paper:-0.5" and undo.index() == start + 6
    assert len(control.rows) == 1 and control.rows[0].name_box.currentText() == "paper"
    assert control.rows[0].weight.value() == -0.5
    # undo walks back through each edit, and the rows follow
    expected = ["zebra:1, paper:-0.5", "ink:1, paper:-0.5", "ink:1, paper:0.85", "ink:1, paper:1", "ink:1", ""]
    for text in expected:
        undo.undo()
        assert loras(window) == text
        assert [(r.name_box.currentText(), r.weight.value()) for r in control.rows] == \
            LF.parse_lora_list(text)
    assert "loras" not in window.session.request.params  # back to unset, not an empty string
    undo.redo()
    assert loras(window) == "ink:1"


def test_a_typed_name_is_taken_and_a_missing_lora_is_flagged(qtbot, window):
    control = lora_list(window)
    window.session.set_param("loras", "ink:0.7, old-style:1.5, far:3", "from elsewhere")
    assert [(r.name_box.currentText(), r.weight.value()) for r in control.rows] == \
        [("ink", 0.7), ("old-style", 1.5), ("far", 3.0)]
    assert control.rows[2].weight.maximum() == 3.0  # a weight outside −2 … 2 is shown as it is, not clipped
    assert not control.rows[0].name_box.property("missing")
    assert control.rows[1].name_box.property("missing") and "not found" in control.rows[1].name_box.toolTip()
    hint = control.hint.text()
    assert control.hint.isVisibleTo(window) and "Not found: old-style, far" in hint
    assert str(window.session.entry.manifest.folder / "loras") in hint
    # typing a name into the box (Enter) takes it; one that is no file name is refused and said
    box = control.rows[1].name_box
    box.lineEdit().setText("zebra")
    box.lineEdit().editingFinished.emit()
    assert loras(window) == "ink:0.7, zebra:1.5, far:3"
    assert not control.rows[1].name_box.property("missing")
    before = window.session.undo.index()
    box.lineEdit().setText("../evil")
    box.lineEdit().editingFinished.emit()
    assert loras(window) == "ink:0.7, zebra:1.5, far:3" and window.session.undo.index() == before
    assert "is not a LoRA name" in control.hint.text() and box.currentText() == "zebra"
    # a list that cannot be read is said, and an edit starts a new one
    window.session.set_param("loras", "ink:heavy", "typed elsewhere")
    assert control.rows == [] and "cannot be read" in control.hint.text() and "must be a number" in control.hint.text()
    QTest.mouseClick(control.add_button, Qt.MouseButton.LeftButton)
    assert loras(window) == "ink:1"


def test_no_loras_says_where_to_put_them_and_refresh_finds_new_ones(qtbot, window, models):
    with qtbot.waitSignal(window.session.rendered, timeout=5000):
        window.session.start("lorish-2")
    control = lora_list(window)
    folder = models / "lorish-2" / "loras"
    assert control.library.names == [] and not control.add_button.isEnabled()
    assert control.hint.isVisibleTo(window)
    assert f"No LoRAs found. Put LoRA .safetensors files in {folder}" in control.hint.text()
    assert "lora_folders in settings.toml" in control.hint.text() and str(folder) in control.add_button.toolTip()
    write_lora(folder / "fresh.safetensors", 9)
    QTest.mouseClick(control.refresh_button, Qt.MouseButton.LeftButton)
    assert control.library.names == ["fresh"] and control.add_button.isEnabled()
    assert not control.hint.isVisibleTo(window)
    QTest.mouseClick(control.add_button, Qt.MouseButton.LeftButton)
    assert loras(window) == "fresh:1"
    # choosing the model again lists its folder again (the panel is rebuilt)
    write_lora(folder / "another.safetensors", 10)
    with qtbot.waitSignal(window.session.rendered, timeout=5000):
        window.session.start("lorish-1")
    with qtbot.waitSignal(window.session.rendered, timeout=5000):
        window.session.start("lorish-2")
    assert lora_list(window).library.names == ["another", "fresh"]


def test_a_picture_lora_renamed_here_is_matched_by_hash_off_the_gui_thread(qtbot, window, models, tmp_path,
                                                                           monkeypatch):
    folder = models / "lorish-1" / "loras"
    ink = folder / "ink.safetensors"
    short = a1111_hash(ink)[:12]
    threads: list[threading.Thread] = []
    real = LF.lora_hash

    def spy(path):
        threads.append(threading.current_thread())
        return real(path)

    monkeypatch.setattr(LF, "lora_hash", spy)
    seen: list[tuple[str, str, str]] = []
    window.session.message.connect(lambda level, text, detail: seen.append((level, text, detail)))
    before, start = window.session.request, window.session.undo.index()
    picture = a1111_png(tmp_path / "a1111.png",
                        "a cat <lora:ink_v2:0.7> <lora:gone:0.5>\nSteps: 20, Seed: 5, "
                        f"Lora hashes: \"ink_v2: {short}, gone: 0123456789ab\", Version: v1.10.1")
    assert apply_image_settings(window.session, picture) is False  # not yet: the hashes are being read
    assert window.session.request == before
    level, title, detail = seen[-1]
    assert level == INFO and title == "Matching the LoRAs of a1111.png by their hashes"
    assert "Reading up to 3 LoRA files" in detail and str(folder) in detail
    qtbot.waitUntil(lambda: not LoraHashJob.running, timeout=30000)
    qtbot.waitUntil(lambda: window.session.request != before, timeout=5000)
    request = window.session.request
    assert request.param("prompt") == "a cat <lora:ink:0.7>" and request.seed == 5
    assert window.session.undo.index() == start + 1  # one step
    level, title, detail = seen[-1]
    assert level == INFO and title == "Applied AUTOMATIC1111 settings from a1111.png"
    assert "LoRA: ink (0.7) for ink_v2" in detail and "not matched: <lora:gone:0.5> [0123456789ab]" in detail
    assert threads and threading.main_thread() not in threads  # every file read off the GUI thread
    # read once: the same picture again is matched at once, with no reading
    window.session.undo.undo()
    threads.clear()
    assert apply_image_settings(window.session, picture) is True
    assert window.session.request.param("prompt") == "a cat <lora:ink:0.7>" and threads == []
    assert not LoraHashJob.running


def test_a_picture_lora_found_by_name_is_taken_without_reading_files(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setattr(LF, "lora_hash", lambda path: pytest.fail(f"read {path}"))
    picture = a1111_png(tmp_path / "named.png", "a dog <lora:paper:0.5>\nSteps: 20, Seed: 6, "
                                                "Lora hashes: \"paper: 0123456789ab\"")
    assert apply_image_settings(window.session, picture) is True
    assert window.session.request.param("prompt") == "a dog <lora:paper:0.5>"
    assert not LoraHashJob.running
    # a picture naming no hash for a LoRA that is not here: nothing to read, reported at once
    other = a1111_png(tmp_path / "other.png", "a dog <lora:nowhere:0.5>\nSteps: 20, Sampler: Euler, Seed: 7")
    seen: list[tuple[str, str, str]] = []
    window.session.message.connect(lambda level, text, detail: seen.append((level, text, detail)))
    assert apply_image_settings(window.session, other) is True
    assert window.session.request.param("prompt") == "a dog" and "not matched: <lora:nowhere:0.5>" in seen[-1][2]


def test_dropping_an_a1111_picture_on_a_prompted_model_applies_its_settings(qtbot, window, tmp_path, monkeypatch):
    """A drop (open_path) does what Ctrl+O does: the picture's settings, its LoRA matched, as one undo step; not an
    init image or an encode."""
    monkeypatch.setattr(LF, "lora_hash", lambda path: pytest.fail(f"read {path}"))
    before = window.session.request
    picture = a1111_png(tmp_path / "dropped.png", "a cat <lora:ink:0.7>\nSteps: 20, Seed: 41, "
                                                  "Lora hashes: \"ink: 0123456789ab\"")
    window.open_path(picture)
    after = window.session.request
    assert after.seed == 41 and after.param("prompt") == "a cat <lora:ink:0.7>"
    window.session.undo.undo()
    assert window.session.request == before


def test_a_failure_while_reading_hashes_is_said_and_the_rest_applied(qtbot, window, tmp_path, monkeypatch):
    def broken(self, shorts, cancelled=None):
        raise ValueError("disk on fire")

    monkeypatch.setattr(LF.LoraLibrary, "hash_until_found", broken)
    seen: list[tuple[str, str, str]] = []
    window.session.message.connect(lambda level, text, detail: seen.append((level, text, detail)))
    picture = a1111_png(tmp_path / "hot.png", "a cat <lora:ink_v2:0.7>\nSteps: 20, Sampler: Euler, Seed: 8, "
                                              "Lora hashes: \"ink_v2: 0123456789ab\"")
    assert apply_image_settings(window.session, picture) is False
    qtbot.waitUntil(lambda: not LoraHashJob.running and window.session.request.seed == 8, timeout=30000)
    levels = [(level, title) for level, title, _ in seen]
    assert ("warning", "Could not read all LoRA hashes for hot.png") in levels
    assert "ValueError: disk on fire" in next(d for _, t, d in seen if t.startswith("Could not read"))
    assert window.session.request.param("prompt") == "a cat"
    assert "not matched: <lora:ink_v2:0.7> [0123456789ab]" in seen[-1][2]


def test_on_a_stable_diffusion_pipeline_a_renamed_lora_is_restored_and_renders(qtbot, tmp_path, monkeypatch):
    """The same with the real engine on a tiny SD pipeline folder and a kohya LoRA in loras/ beside it: the LoRA
    list offers it, and a picture naming it otherwise (same hash) gets its local name and renders with it."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from sd_tiny import make_parts, make_pipeline_folder
    from test_e2e_loras_xvfb import write_kohya_lora

    from studio.engine import Engine

    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    monkeypatch.setattr(LF, "_hashes", {})
    parts = make_parts(0)
    root = tmp_path / "sd"
    make_pipeline_folder(root / "tiny-pipe", parts=parts)
    mine = root / "loras" / "my ink.safetensors"
    write_kohya_lora(mine, parts[0])
    engine = Engine(device="cpu", roots=[root], threads=1)
    session = Session(engine, roots=[root])
    session.refresh_models()
    window = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(session.rendered, timeout=60000):
            session.start("tiny-pipe")
        assert lora_list(window).library.names == ["my ink"]
        assert lora_list(window).folders[0] == root / "loras"  # beside the pipeline folder
        picture = a1111_png(tmp_path / "sd.png", "a fox <lora:ink-v3:0.8>\nSteps: 3, Sampler: DDIM, Seed: 11, "
                                                 f"Lora hashes: \"ink-v3: {a1111_hash(mine)[:12]}\"")
        rendered: list[tuple] = []
        session.rendered.connect(lambda req, seconds, info: rendered.append((req, info)))
        seen: list[tuple[str, str, str]] = []
        session.message.connect(lambda level, text, detail: seen.append((level, text, detail)))
        assert apply_image_settings(session, picture) is False
        qtbot.waitUntil(lambda: not LoraHashJob.running, timeout=30000)
        request = session.request
        assert request.param("prompt") == "a fox <lora:my ink:0.8>" and request.seed == 11
        qtbot.waitUntil(lambda: any(req == request for req, _ in rendered), timeout=60000)
        # it rendered with the LoRA found under its local name (a name not found fails the render with a message)
        assert not [m for m in seen if m[0] != INFO], seen
        assert "LoRA: my ink (0.8) for ink-v3" in seen[-1][2]
    finally:
        session.undo.setClean()
        window.close()
        engine.shutdown()

"""Exports and opening files in the window (offscreen, fake engine): the export dialog's output size, the toast with
Show in Folder, the default export folder, File → Open for exported images and videos, and File → Open Image
Settings for another tool's picture (one undoable step, the rest listed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from PySide6.QtCore import QSettings, QStandardPaths

from studio.export.image import read_request, save_image
from studio.export.scale import OutputSize
from studio.export.video import VideoWriter
from studio.project import Autosave, Document
from studio.ui import dialogs, export_dialogs
from studio.ui.main_window import MainWindow
from studio.ui.session import INFO, WARNING, Session

from fake_engine import FakeEngine
from dialog_guard import block_dialogs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine():
    fake = FakeEngine()
    yield fake
    fake.shutdown()


@pytest.fixture(autouse=True)
def _no_blocking_dialogs(monkeypatch):
    block_dialogs(monkeypatch)
    monkeypatch.setattr(export_dialogs, "ask_image_export", lambda *a: pytest.fail("unexpected export dialog"))


@pytest.fixture
def window(qtbot, engine, models_dir, tmp_path):
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    autosave = Autosave(tmp_path / "autosave")
    autosave.start()
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat), autosave)
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("tiny")
    session.undo.setClean()
    w.opened_folders = []
    w.open_folder = lambda folder: w.opened_folders.append(Path(folder)) or True
    w.show()
    yield w
    session.undo.setClean()
    w.close()
    autosave.finish()


def settle(qtbot, window):
    qtbot.waitUntil(lambda: not window.session.bridge.busy, timeout=5000)


def collect(window) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    window.session.message.connect(lambda level, text, detail: seen.append((level, text, detail)))
    return seen


# --- export: output size, toast, folder -------------------------------------------------------------------------


def test_export_scales_and_shows_a_toast_with_show_in_folder(qtbot, window, tmp_path, monkeypatch):
    settle(qtbot, window)
    out = tmp_path / "shots" / "big.png"
    out.parent.mkdir()
    asked = []

    def ask(parent, suggestion, source):
        asked.append((suggestion, source))
        return export_dialogs.ImageExport(str(out), OutputSize(4, "nearest"))

    monkeypatch.setattr(export_dialogs, "ask_image_export", ask)
    window.act_export.trigger()
    qtbot.waitUntil(lambda: window.toast.isVisible(), timeout=5000)
    (suggestion, source), = asked
    shown = window.session.last_output.data
    assert source == (shown.shape[1], shown.shape[0])
    assert not Path(suggestion).resolve().is_relative_to(REPO)  # never the app's own folder
    with Image.open(out) as image:
        assert image.size == (4 * source[0], 4 * source[1])
        assert "Export size: " in image.text["parameters"]
    assert read_request(out).width is None  # the request stays the model's
    toast = window.findChild(type(window.toast), "exportToast")
    assert toast is window.toast and "big.png" in toast.text.text()
    inside = window.rect()
    assert inside.contains(toast.geometry()) and toast.geometry().right() > inside.width() // 2  # bottom right
    assert toast.geometry().bottom() > inside.height() // 2
    toast.show_folder.click()
    assert window.opened_folders == [out.parent] and not toast.isVisible()
    # the folder is remembered for the next image export
    assert export_dialogs.export_folder(window.settings, "image") == str(out.parent)


def test_default_export_folder_is_the_platforms_never_the_apps(tmp_path, monkeypatch):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    monkeypatch.setattr(QStandardPaths, "writableLocation", lambda location: str(pictures))
    assert export_dialogs.export_folder(settings, "image") == str(pictures)
    export_dialogs.remember_folder(settings, "image", REPO / "resources" / "x.png")  # the app's folder: not kept
    assert export_dialogs.export_folder(settings, "image") == str(pictures)
    settings.setValue("export_folder/image", str(REPO / "resources"))  # a stored one inside the app is ignored
    assert export_dialogs.export_folder(settings, "image") == str(pictures)
    export_dialogs.remember_folder(settings, "video", tmp_path / "clip.mp4")
    assert export_dialogs.export_folder(settings, "video") == str(tmp_path)
    assert export_dialogs.export_folder(settings, "image") == str(pictures)  # each kind its own


def test_image_export_dialog_offers_scale_filter_and_size(qtbot):
    dialog = export_dialogs.ExportDialog(None, "Export Image", "/tmp/x.png", lambda p, c: c, (256, 64))
    qtbot.addWidget(dialog)
    chooser = dialog.chooser
    assert dialog.image_export().output_size is None and chooser.result.text() == "= 256 × 64 px"
    chooser.scale.setValue(4)
    assert chooser.result.text() == "= 1024 × 256 px"
    assert dialog.image_export() == export_dialogs.ImageExport("/tmp/x.png", OutputSize(4, "nearest"))
    chooser.filter.setCurrentIndex(chooser.filter.findData("smooth"))
    chooser.by_size.setChecked(True)
    chooser.width_box.setValue(500)
    chooser.height_box.setValue(100)
    assert dialog.image_export().output_size == OutputSize(size=(500, 100), filter="smooth")
    assert chooser.result.text() == "= 500 × 100 px"


def test_video_export_dialog_fps_and_frame_range(qtbot):
    dialog = export_dialogs.ExportDialog(None, "Export Video", "/tmp/a.mp4", lambda p, c: c, (256, 64),
                                         export_dialogs.suggested_scale(256, 64), 8.0, lambda fps: int(2 * fps))
    qtbot.addWidget(dialog)
    assert dialog.chooser.scale.value() == 4  # a 256×64 glyph strip starts at ×4: 1024×256
    choice = dialog.video_export()
    assert choice.output_size == OutputSize(4, "nearest") and choice.fps is None and choice.frames is None
    dialog.fps.setValue(12)
    assert dialog.last.maximum() == 24 and dialog.last.value() == 24
    dialog.first.setValue(3)
    dialog.last.setValue(10)
    assert dialog.video_export().fps == 12 and dialog.video_export().frames == (3, 10)


# --- File → Open -------------------------------------------------------------------------------------------------


def test_file_open_restores_an_exported_png(qtbot, window, tmp_path, monkeypatch):
    settle(qtbot, window)
    wanted = window.session.request.with_(seed=4242).with_param("prompt", "Ba")
    path = save_image(tmp_path / "made.png", np.zeros((16, 16), np.uint8), wanted, model_name="Tiny")
    monkeypatch.setattr(dialogs, "ask_open_any", lambda parent, folder: str(path))
    seen = collect(window)
    window.act_open.trigger()
    assert window.session.request.seed == 4242 and window.session.request.param("prompt") == "Ba"
    assert any(text == "Restored the request from made.png" for _, text, _ in seen)
    window.session.undo.undo()  # one undoable step
    assert window.session.request.seed != 4242


def test_file_open_opens_the_project_inside_a_video_untitled(qtbot, window, tmp_path, monkeypatch):
    settle(qtbot, window)
    request = window.session.request.with_(seed=777)
    video = tmp_path / "clip.gif"
    with VideoWriter(video, fps=4, metadata=Document(request=request).to_json()) as writer:
        writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    monkeypatch.setattr(dialogs, "ask_open_any", lambda parent, folder: str(video))
    seen = collect(window)
    window.act_open.trigger()
    assert window.session.request.seed == 777
    assert window.session.path is None  # saving never writes over the video
    assert any(text == "Opened the project inside clip.gif" for _, text, _ in seen)
    assert window.recent_documents() == []


def test_file_open_on_a_video_without_a_project_says_so(qtbot, window, tmp_path, monkeypatch):
    video = tmp_path / "plain.gif"
    with VideoWriter(video, fps=4) as writer:
        writer.write(np.zeros((2, 8, 8, 3), np.uint8))
    monkeypatch.setattr(dialogs, "ask_open_any", lambda parent, folder: str(video))
    seen = collect(window)
    window.act_open.trigger()
    assert any("Cannot open plain.gif" in text and "no Latent Studio project" in detail for _, text, detail in seen)


def a1111_png(path: Path, text: str) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, pnginfo=info)
    return path


def test_open_image_settings_maps_a1111_in_one_step_and_lists_the_rest(qtbot, window, tmp_path, monkeypatch):
    settle(qtbot, window)
    before = window.session.request
    path = a1111_png(tmp_path / "a1111.png", "Ab\nNegative prompt: blurry\nSteps: 30, Sampler: Euler a, "
                                             "CFG scale: 7, Seed: 31337, Size: 512x512, Model: sd15, Clip skip: 2")
    monkeypatch.setattr(dialogs, "ask_image_settings", lambda parent, folder: str(path))
    seen = collect(window)
    window.act_image_settings.trigger()
    after = window.session.request
    assert after.seed == 31337 and after.param("prompt") == "Ab"
    (level, title, detail), = [m for m in seen if "a1111.png" in m[1]]
    assert level == INFO and title == "Applied AUTOMATIC1111 settings from a1111.png"
    assert "Not used by Tiny tiny: " in detail
    for unused in ("Model: sd15", "Clip skip: 2", "Steps: 30", "Negative prompt: blurry", "Size: 512x512"):
        assert unused in detail, unused
    window.session.undo.undo()
    assert window.session.request == before  # one undoable step


def test_file_open_on_a_foreign_picture_applies_its_settings(qtbot, window, tmp_path, monkeypatch):
    settle(qtbot, window)
    path = a1111_png(tmp_path / "other.png", "Ab\nSteps: 30, CFG scale: 7, Seed: 99")
    monkeypatch.setattr(dialogs, "ask_open_any", lambda parent, folder: str(path))
    window.act_open.trigger()
    assert window.session.request.seed == 99


def test_open_image_settings_on_damaged_or_bare_pictures(qtbot, window, tmp_path, monkeypatch):
    settle(qtbot, window)
    before = window.session.request
    bad = tmp_path / "bad.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "{" * 200)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(bad, pnginfo=info)
    bare = tmp_path / "bare.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(bare)
    seen = collect(window)
    for path in (bad, bare):
        monkeypatch.setattr(dialogs, "ask_image_settings", lambda parent, folder, p=path: str(p))
        window.act_image_settings.trigger()
    assert window.session.request == before
    assert any(t == "Cannot read the settings of bad.png" and "bad.png" in d and "levels deep" in d
               for _, t, d in seen)
    assert any(level == WARNING and t == "bare.png carries no settings this app reads" for level, t, _ in seen)


def test_file_menu_lists_open_and_open_image_settings(window):
    file_menu = window.menuBar().actions()[0].menu()
    texts = [a.text() for a in file_menu.actions()]
    assert texts.index("&Open…") < texts.index("Open Image Se&ttings…")
    assert "image" in window.act_open.toolTip() and "video" in window.act_open.toolTip()

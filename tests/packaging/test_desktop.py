"""The installed app's desktop side: the log file (and Help → Show Log File), a broken settings file reset with a
notice, the About box's versions and device, the application icon in every size, the Linux .desktop file."""

from __future__ import annotations

import configparser
import logging
import threading
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from studio.logs import log_path, setup_logging
from studio.paths import user_data_dir, user_log_dir
from studio.settings import load_or_reset_settings, settings_path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread fails on purpose
def test_the_log_file_is_written_in_the_user_log_folder_with_uncaught_errors(tmp_path):
    path = setup_logging(folder=tmp_path / "logs")
    assert path == tmp_path / "logs" / "latent-studio.log" and log_path() == path
    logging.getLogger("studio.test").warning("a warning for the log")

    def boom():
        raise RuntimeError("a worker thread failed")

    t = threading.Thread(target=boom, name="worker-x")
    t.start()
    t.join()
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text(encoding="utf-8")
    assert "Latent Studio" in text and "a warning for the log" in text
    assert "uncaught exception in thread worker-x" in text and "RuntimeError: a worker thread failed" in text
    assert setup_logging(folder=tmp_path / "logs") == path  # once per folder: no second handler
    assert sum(isinstance(h, logging.handlers.RotatingFileHandler) for h in logging.getLogger().handlers) == 1


def test_an_unwritable_log_folder_does_not_stop_the_app(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert setup_logging(folder=blocked / "logs") is None
    assert "no log file" in capsys.readouterr().err


def test_logs_follow_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENT_STUDIO_DATA", str(tmp_path / "d"))
    assert user_log_dir() == tmp_path / "d" / "logs"


def test_a_broken_settings_file_is_set_aside_and_the_defaults_used():
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("device = [not toml", encoding="utf-8")
    settings, notice = load_or_reset_settings()
    assert settings.device == "auto" and settings.model_folders == []
    assert "settings.toml" in notice and "reset" in notice and "settings.toml.broken" in notice
    assert not path.exists() and (path.parent / "settings.toml.broken").read_text() == "device = [not toml"
    assert load_or_reset_settings() == (settings, "")  # next start: all well
    path.write_text('device = "cuda"\nmodel_folders = 3\n', encoding="utf-8")
    assert "model_folders" in load_or_reset_settings()[1]


def test_the_icon_ships_in_the_sizes_desktops_use():
    folder = REPO / "studio" / "data" / "icons"
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        with Image.open(folder / f"latent-studio-{size}.png") as img:
            assert img.size == (size, size) and img.mode == "RGBA"
            assert img.getpixel((0, 0))[3] < 16 and img.getpixel((size // 2, size // 2))[3] == 255  # rounded
    with Image.open(folder / "latent-studio.ico") as ico:
        assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    from studio.ui.app import app_icon, make_application

    make_application()
    icon = app_icon()
    assert not icon.isNull() and len(icon.availableSizes()) == 8


def test_the_desktop_file_is_valid():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(REPO / "packaging" / "linux" / "latent-studio.desktop", encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Name"] == "Latent Studio"
    assert entry["Icon"] == "latent-studio" and entry["Exec"].startswith("latent-studio")
    assert entry["Categories"].endswith(";") and "Graphics" in entry["Categories"]
    assert entry["StartupWMClass"]


@pytest.fixture
def window(qtbot, engine, models_dir, tmp_path):
    from studio.ui.main_window import MainWindow
    from studio.ui.session import Session

    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    w = MainWindow(session, QSettings(str(tmp_path / "w.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    yield w
    session.undo.setClean()
    w.close()


def test_help_shows_the_log_file_and_the_data_folder(window, tmp_path, monkeypatch):
    opened: list[Path] = []
    monkeypatch.setattr(window, "open_folder", lambda folder: opened.append(folder) or True)
    messages = []
    window.session.message.connect(lambda *args: messages.append(args))
    path = setup_logging(folder=user_log_dir())
    window.act_log.trigger()
    assert opened == [path.parent] and any(str(path) in title for _, title, _ in messages)
    window.act_data.trigger()
    assert opened[-1] == user_data_dir() and any(str(user_data_dir()) in title for _, title, _ in messages)
    help_menu = [a for a in window.menuBar().actions() if a.text() == "&Help"][0].menu()
    assert window.act_log in help_menu.actions() and window.act_about in help_menu.actions()


def test_the_about_box_names_versions_the_device_and_the_folders(window):
    import torch
    from PySide6 import __version__ as pyside

    from studio import __version__
    from studio.ui.main_window import about_text

    text = about_text("cuda:0 (float16)")
    assert f"Latent Studio {__version__}" in text and torch.__version__ in text and pyside in text
    assert "cuda:0 (float16)" in text and str(log_path()) in text and str(user_data_dir()) in text
    assert "PyAV" in text and "libsndfile" in text


def test_the_linux_install_script_puts_the_bundle_on_the_desktop(tmp_path):
    import os
    import shutil
    import subprocess

    bundle = tmp_path / "Latent Studio"  # a space in the path, as users have
    (bundle / "_internal" / "studio" / "data").mkdir(parents=True)
    shutil.copytree(REPO / "studio" / "data" / "icons", bundle / "_internal" / "studio" / "data" / "icons")
    shutil.copytree(REPO / "packaging" / "linux", bundle / "_internal" / "linux")
    exe = bundle / "latent-studio"
    exe.write_text("#!/bin/sh\necho ok\n")
    exe.chmod(0o755)
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")}
    script = bundle / "_internal" / "linux" / "install.sh"
    done = subprocess.run(["bash", str(script), str(bundle)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    apps = home / ".local" / "share" / "applications" / "latent-studio.desktop"
    assert f'Exec="{bundle}/latent-studio" %F' in apps.read_text()
    assert (home / ".local" / "share" / "icons" / "hicolor" / "48x48" / "apps" / "latent-studio.png").is_file()
    assert (home / ".local" / "bin" / "latent-studio").resolve() == exe.resolve()
    again = subprocess.run(["bash", str(script), "--uninstall"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and not apps.exists() and not (home / ".local" / "bin" / "latent-studio").exists()
    missing = subprocess.run(["bash", str(script), str(tmp_path / "nothing")], env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "bundle folder" in missing.stderr


def test_commands_start_with_a_broken_settings_file(capsys, models_dir):
    import json

    from studio.cli import main

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\x00garbage = = [", encoding="utf-8")
    assert main(["models", "--json", "--models-dir", str(models_dir)]) == 0
    captured = capsys.readouterr()
    assert "tiny" in {m["id"] for m in json.loads(captured.out)}
    assert "settings were reset" in captured.err and "settings.toml.broken" in captured.err
    assert (path.parent / "settings.toml.broken").exists()


def test_render_precision_is_a_undoable_request_setting(qtbot, window):
    session = window.session
    assert not window.precision_menu.isEnabled()
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("tiny")
    assert window.precision_menu.isEnabled() and window.precision_actions["float32"].isChecked()
    window.precision_actions["float16"].trigger()
    assert session.request.dtype == "float16" and window.precision_actions["float16"].isChecked()
    session.undo.undo()
    assert session.request.dtype == "float32" and window.precision_actions["float32"].isChecked()
    window._on_rendered(session.request, 0.25, {"device": "cpu", "dtype": "float32",
                                                "dtype_note": "float16 is not used on the CPU; rendered in float32"})
    assert "rendered in float32" in window.time_label.text() and "(float32)" in window.device_label.text()


def test_model_folders_an_older_window_ini_kept_move_once_into_settings_toml(qtbot, tmp_path, models_dir):
    import json

    from studio.settings import load_settings
    from studio.ui.app import move_window_folders

    ini = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)
    ini.setValue("model_folders", json.dumps([str(models_dir), str(tmp_path / "gone"), 7]))
    ini.setValue("recent", "[]")
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text('device = "cpu"\n', encoding="utf-8")
    assert move_window_folders(ini) == [models_dir]  # a folder that is gone is dropped
    assert load_settings().model_folders == [models_dir] and load_settings().device == "cpu"
    again = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)
    assert again.value("model_folders") is None and again.value("recent") == "[]"
    assert move_window_folders(again) == []  # once


def test_model_folders_stay_in_window_ini_while_settings_toml_cannot_take_them(qtbot, tmp_path, models_dir):
    import json

    from studio.errors import StudioError
    from studio.ui.app import move_window_folders

    ini = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)
    ini.setValue("model_folders", json.dumps([str(models_dir)]))
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text("model_folders = [unclosed", encoding="utf-8")
    with pytest.raises(StudioError):
        move_window_folders(ini)
    assert json.loads(ini.value("model_folders")) == [str(models_dir)]

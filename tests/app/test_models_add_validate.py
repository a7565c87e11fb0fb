"""Adding a model folder validates it in full (studio.app.models.ModelLibrary.add_model_folder): a truncated or
doctored weights file is named at once, from its header; a folder that is not one (/dev/null, a FIFO, a link loop)
is refused with what it is; a settings.toml that cannot be read is said once, never silently ignored. No Qt."""

from __future__ import annotations

import os
import threading

import pytest

from studio.app.listeners import Listeners
from studio.app.models import ERROR, WARNING, ModelLibrary
from studio.manifest import WEIGHTS_NAME
from studio.settings import load_or_reset_settings, settings_path

from conftest import make_tiny_package


@pytest.fixture
def heard():
    return []


@pytest.fixture
def library(models_dir, heard) -> ModelLibrary:
    message = Listeners()
    message.connect(lambda *args: heard.append(args))
    lib = ModelLibrary([models_dir], message)
    lib.refresh()
    return lib


def _in_thread(fn, timeout: float = 30.0):
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(value=fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "it hung"
    return box["value"]


@pytest.mark.parametrize("cut", [100, 1, "header"])
def test_truncated_weights_are_named_when_the_folder_is_added(library, tmp_path, heard, cut):
    folder = tmp_path / "more"
    make_tiny_package(folder / "good", "good", seed=1)
    bad = make_tiny_package(folder / "cut", "cut", seed=2)
    weights = bad / WEIGHTS_NAME
    data = weights.read_bytes()
    weights.write_bytes(data[:20] if cut == "header" else data[:-cut])
    added = library.add_model_folder(folder)
    by_id = {e.id: e for e in added}
    assert by_id["good"].ok and not by_id["cut"].ok
    assert str(weights) in str(by_id["cut"].error) and "truncated" in str(by_id["cut"].error)
    errors = [m for m in heard if m[0] == ERROR]
    assert len(errors) == 1 and errors[0][1].startswith("Model cut cannot be used: ")
    assert str(weights) in errors[0][1] and "\n" not in errors[0][1] and "Traceback" not in errors[0][2]
    assert library.entry_for("good").ok  # the good one is added and usable


def test_a_doctored_header_is_named_when_the_folder_is_added(library, tmp_path, heard):
    import json
    import struct

    bad = make_tiny_package(tmp_path / "doctored", "doctored", seed=3)
    weights = bad / WEIGHTS_NAME
    data = weights.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 4  # one tensor claims 4 bytes more than its dtype × shape
    text = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size:] + b"\0" * 4)
    [entry] = library.add_model_folder(bad)
    assert not entry.ok and repr(name) in str(entry.error) and "data_offsets span" in str(entry.error)


@pytest.mark.parametrize("what", ["/dev/null", "fifo", "loop", "file"])
def test_a_folder_that_is_not_one_is_refused_with_what_it_is(library, tmp_path, heard, what):
    if what == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif what == "loop":
        path = tmp_path / "loop"
        path.symlink_to(path)
    elif what == "file":
        path = tmp_path / "notes.txt"
        path.write_text("no model")
    else:
        path = what
    assert _in_thread(lambda: library.add_model_folder(path)) == []
    level, text, detail = heard[-1]
    assert level == ERROR and text == f"No model in {path}" and str(path) in detail
    words = {"/dev/null": "character device", "fifo": "FIFO", "loop": "symbolic link loop", "file": "is a file"}
    assert words[what] in detail
    assert library.extra_folders == [] and not settings_path().exists()
    assert [e.id for e in library.entries] == ["tiny", "tiny-plain"]  # the others still work


@pytest.mark.parametrize("kind", ["fifo", "loop"])
def test_an_unreadable_settings_file_is_said_once_not_ignored(tmp_path, heard, kind):
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(path)
    message = Listeners()
    message.connect(lambda *args: heard.append(args))
    library = ModelLibrary(message=message)  # default roots: the settings' folders are read
    _in_thread(library.refresh)
    _in_thread(library.refresh)
    warnings = [m for m in heard if m[0] == WARNING]
    assert len(warnings) == 1 and "settings" in warnings[0][1] and str(path) in warnings[0][2]
    settings, notice = _in_thread(load_or_reset_settings)
    assert settings.model_folders == [] and str(path) in notice and "defaults are used" in notice
    assert os.path.lexists(path)  # a FIFO or a link is not set aside as "broken": left as it is


def test_a_too_deep_or_too_big_settings_file_is_refused_and_set_aside(tmp_path):
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("device = " + "[" * 200 + "]" * 200 + "\n", encoding="utf-8")
    settings, notice = load_or_reset_settings()
    assert settings.device == "auto" and "nested 200 levels" in notice and "settings.toml.broken" in notice
    path.write_text("# " + "x" * (2 << 20) + "\n", encoding="utf-8")
    settings, notice = load_or_reset_settings()
    assert "over the limit" in notice and str(path) in notice

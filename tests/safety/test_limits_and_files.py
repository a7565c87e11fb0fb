"""The shared guards: limits quoted and checked, only regular files read, ids kept to plain names."""

from __future__ import annotations

import os
import threading

import pytest

from studio.errors import ManifestError, StudioError
from studio.files import check_name, check_regular, read_bytes, read_json, read_toml_text
from studio.limits import MAX_JSON_DEPTH, MAX_TOML_DEPTH, check, json_depth, quote, toml_depth


def test_quote_cuts_long_values_and_names_their_length():
    text = quote("x" * 50_000_000)
    assert len(text) < 260 and "characters" in text
    assert quote("short") == "'short'"


def test_check_names_file_field_value_and_limit(tmp_path):
    with pytest.raises(ManifestError) as err:
        check(1_000_000, 8192, "width", tmp_path / "model.toml", "output.width", ManifestError)
    message = str(err.value)
    assert "model.toml [output.width]" in message and "1000000" in message and "8,192" in message
    assert check(5, 8192, "width") == 5


def test_depth_scanners_skip_strings_and_count_nesting():
    assert json_depth('{"a": "[[[[", "b": [[1]]}') == 3
    assert json_depth("[" * 100_000 + "]" * 100_000) == 100_000
    assert toml_depth('a = "[[[["  # [[[[\nb = [[1]]\n') == 2
    assert MAX_JSON_DEPTH < 1000 and MAX_TOML_DEPTH < 1000


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "weights.safetensors"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            read_bytes(fifo, StudioError)
        except StudioError as exc:
            result["error"] = str(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert "FIFO" in result["error"] and str(fifo) in result["error"]


def test_devices_folders_and_link_loops_are_refused(tmp_path):
    with pytest.raises(StudioError, match="character device"):
        check_regular("/dev/zero")
    link = tmp_path / "to-zero"
    link.symlink_to("/dev/zero")
    with pytest.raises(StudioError, match="character device"):
        read_bytes(link)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(StudioError, match="symbolic link loop"):
        read_bytes(loop)
    with pytest.raises(StudioError, match="a folder"):
        read_bytes(tmp_path)


def test_size_and_depth_are_checked_before_parsing(tmp_path):
    big = tmp_path / "model.toml"
    big.write_text("a = 1\n" * 300_000)
    with pytest.raises(ManifestError, match="over the limit"):
        read_toml_text(big, ManifestError)
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="nested"):
        read_toml_text(deep, ManifestError)
    js = tmp_path / "model_index.json"
    js.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(StudioError, match="nested 100000 levels"):
        read_json(js)


@pytest.mark.parametrize("name", ["", ".", "..", "../victim", "a/b", "a\\b", ".hidden", "x\x00y", "c:evil",
                                  "x" * 129])
def test_names_that_would_become_paths_are_refused(name):
    with pytest.raises(StudioError, match="plain name"):
        check_name(name, "model id")


def test_plain_names_pass():
    assert check_name("glyph-gan_2", "model id") == "glyph-gan_2"

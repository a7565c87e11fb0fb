"""LoRA files by name and by hash without torch (studio.io.loras): which LoRAs a model has (folders beside it and
from settings.toml, first name wins, safetensors before pickles, unusable names left out), the `loras` list text,
AUTOMATIC1111's hash, and matching a picture's LoRA (name, short hash) to a file here: by name without reading a
byte, by a hash already known, and by reading hashes only when asked to (the window does that off the GUI thread)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import save_file

from studio.errors import RequestError
from studio.io import loras as LF


def write_lora(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file({"lora_unet_x.lora_down.weight": rng.standard_normal((2, 4)).astype(np.float32),
               "lora_unet_x.lora_up.weight": rng.standard_normal((4, 2)).astype(np.float32)}, str(path))
    return path


def a1111_hash(path: Path) -> str:
    """kohya's / A1111's addnet hash, written out from its definition: sha256 of what follows the header."""
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()


def owner(folder: Path, source: str | None = None):
    """Something with a `.manifest` (as a loaded model and a library entry have)."""
    return SimpleNamespace(manifest=SimpleNamespace(folder=folder, architecture={"source": source} if source else {}))


@pytest.fixture
def counted(monkeypatch):
    """The paths whose data `lora_hash` reads (with a fresh hash cache: nothing known yet)."""
    import studio.files

    monkeypatch.setattr(LF, "_hashes", {})
    read: list[Path] = []
    real = studio.files.open_regular

    def open_regular(path, *args, **kwargs):
        read.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(studio.files, "open_regular", open_regular)
    return read


def test_the_loras_of_a_model_each_name_once_first_folder_and_safetensors_first(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    write_lora(one / "Ink.safetensors", 1)
    (one / "Ink.pt").write_bytes(b"pickle")  # the same name: the safetensors file is the one used
    write_lora(one / "sub" / "paper.safetensors", 2)
    (one / "old.ckpt").write_bytes(b"pickle")
    write_lora(one / "bad,name.safetensors", 3)  # cannot be asked for by name: not offered
    (one / "readme.txt").write_text("not a LoRA")
    write_lora(two / "paper.safetensors", 4)  # found first in `one`
    write_lora(two / "zebra.safetensors", 5)
    library = LF.LoraLibrary([one, two, tmp_path / "missing"])
    assert library.names == ["Ink", "old", "paper", "zebra"]
    ink, old, paper, zebra = library.entries
    assert ink.path == one / "Ink.safetensors" and ink.folder == one
    assert old.path == one / "old.ckpt"
    assert paper.path == one / "sub" / "paper.safetensors" and paper.folder == one
    assert zebra.folder == two
    assert library.entry("ink").path == one / "Ink.safetensors"  # a name differing in case only, as renders find it
    assert library.entry("bad,name") is None and library.entry("nothing") is None
    (two / "INK.safetensors").write_bytes(b"")  # an exact name elsewhere wins over a name differing in case
    (two / "Old.safetensors").write_bytes(b"")
    library = LF.LoraLibrary([one, two])
    for asked in ("ink", "Ink", "INK", "iNK", "old", "OLD", "Old", "paper", "PAPER", "zebra", "Zebra"):
        assert library.entry(asked).path == LF.find_lora(asked, [one, two]), asked  # the file a render takes
    with pytest.raises(RequestError, match="no LoRA named 'nothing'") as info:
        LF.find_lora("nothing", [one, two])
    assert str(one) in str(info.value) and str(two) in str(info.value)


def test_folders_beside_the_model_then_settings_once_each(tmp_path):
    from studio.settings import settings_path

    model = tmp_path / "models" / "pipe"
    model.mkdir(parents=True)
    assert LF.lora_folders(owner(model)) == [model / "loras"]
    single = owner(model, source=str(tmp_path / "files" / "sd15.safetensors"))
    extra = tmp_path / "my loras"
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(f"lora_folders = [{json.dumps(str(extra))}, {json.dumps(str(model / 'loras'))}]\n")
    assert LF.lora_folders(single) == [tmp_path / "files" / "loras", model / "loras", extra]
    from conftest import make_tiny_package
    from studio.manifest import read_manifest

    manifest = read_manifest(make_tiny_package(tmp_path / "pkg"))  # a Manifest itself works as well
    assert LF.lora_folders(manifest) == [manifest.folder / "loras", extra, model / "loras"]
    settings_path().write_text("lora_folders = 3\n")  # a broken settings file adds no folder here
    assert LF.lora_folders(single) == [tmp_path / "files" / "loras", model / "loras"]


def test_the_list_text_reads_and_writes_names_and_weights():
    assert LF.parse_lora_list(" ink:0.8, paper , x:-1.5,") == [("ink", 0.8), ("paper", 1.0), ("x", -1.5)]
    assert LF.format_lora_list([("ink", 0.8), ("paper", 1.0), ("x", -1.25)]) == "ink:0.8, paper:1, x:-1.25"
    for bad, problem in (("ink:heavy", "must be a number"), ("ink:1e9", "between"), ("../x:1", "not a file name"),
                         (":1", "needs a name")):
        with pytest.raises(RequestError, match=problem):
            LF.parse_lora_list(bad)
    for name in ("ink", "my lora v2", "a.b", ".hidden", "a<b", "a:b", "a/b", "", " ink"):
        try:
            taken = LF.check_name(name) == name
        except RequestError:
            taken = False
        assert LF.usable_name(name) is taken, name


def test_the_hash_is_a1111s_and_kept_per_file_state(tmp_path, counted):
    path = write_lora(tmp_path / "ink.safetensors", 1)
    assert LF.known_hash(path) is None
    assert LF.lora_hash(path) == a1111_hash(path)
    assert LF.known_hash(path) == a1111_hash(path)
    LF.lora_hash(path)
    assert counted == [path]  # read once
    write_lora(path, 2)  # rewritten: another file now
    os.utime(path, ns=(1, 1))
    assert LF.known_hash(path) is None
    assert LF.lora_hash(path) == a1111_hash(path) and counted == [path, path]
    pickled = tmp_path / "old.pt"
    pickled.write_bytes(b"\x80\x04pickle bytes")
    assert LF.lora_hash(pickled) == hashlib.sha256(pickled.read_bytes()).hexdigest()  # a pickle: the whole file


def test_a_picture_lora_is_matched_by_name_without_reading_a_file(tmp_path, counted):
    folder = tmp_path / "loras"
    write_lora(folder / "ink.safetensors", 1)
    write_lora(folder / "paper.safetensors", 2)
    library = LF.LoraLibrary([folder])
    assert library.find("ink", "0123456789ab") == "ink"  # the name is there: taken as it is
    assert library.find("INK", None) == "ink"
    assert library.find("gone", None) is None  # no name, no hash: nothing to look for
    assert counted == []


def test_a_renamed_lora_is_found_by_its_hash_only_when_hashes_are_read(tmp_path, counted):
    folder = tmp_path / "loras"
    mine = write_lora(folder / "my_ink.safetensors", 1)
    other = write_lora(folder / "paper.safetensors", 2)
    short = a1111_hash(mine)[:LF.SHORT_HASH]
    library = LF.LoraLibrary([folder])
    assert library.find("ink_v2", short) is None and counted == []  # not read without asking
    assert library.unhashed(short) == [mine, other]
    assert library.unhashed("") == []
    assert library.hash_until_found([short, "ffffffffffff"]) == {short: "my_ink"}
    assert set(counted) == {mine, other}  # the missing one read every file, each once
    assert library.unhashed(short) == []  # known now: nothing left to read for it
    assert library.find("ink_v2", short) == "my_ink"
    assert library.find("ink_v2", short.upper()) == "my_ink"
    # a file already known to be that LoRA wins over another file that has the picture's name
    write_lora(folder / "ink_v2.safetensors", 3)
    assert LF.LoraLibrary([folder]).find("ink_v2", short) == "my_ink"
    assert LF.LoraLibrary([folder]).find("ink_v2", "ffffffffffff") == "ink_v2"  # unknown hash: the name stands
    # reading on the spot (what a worker does), stopping at the first match; unreadable files are skipped
    fresh = LF.LoraLibrary([folder])
    LF._hashes.clear()
    counted.clear()
    (folder / "a_broken.safetensors").symlink_to(tmp_path / "nowhere")  # unreadable: not that LoRA
    assert LF.LoraLibrary([folder]).find("nope", short, hash_files=True) == "my_ink"
    assert counted == [folder / "ink_v2.safetensors", mine]  # in the walk's order, up to the first match
    assert fresh.hash_until_found(["ffffffffffff"], cancelled=lambda: True) == {}


def test_listing_looks_at_a_bounded_number_of_files(tmp_path, monkeypatch):
    folder = tmp_path / "loras"
    for k in range(5):
        write_lora(folder / f"l{k}.safetensors", k)
    monkeypatch.setattr(LF, "MAX_LORA_FOLDER_FILES", 3)
    assert LF.LoraLibrary([folder]).names == ["l0", "l1", "l2"]

"""Model packages on disk: manifest, weights and the library, fed bad input (studio.manifest/weights/library)."""

from __future__ import annotations

import hashlib
import pickle
import re
import shutil
import sys
from pathlib import Path

import pytest
import tomli_w
import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import studio.families as families
from studio.errors import FamilyError, ManifestError, StudioError, WeightsError
from studio.families import Family, family_names, get_family, register_family
from studio.library import load_model, resolve, scan
from studio.manifest import MANIFEST_NAME, WEIGHTS_NAME, read_manifest
from studio.io.weights import read_tensors, sha256_file, write_tensors

from conftest import make_tiny_package


def _edit_manifest(folder: Path, change) -> Path:
    path = folder / MANIFEST_NAME
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


# --- manifest ---------------------------------------------------------------------------------------------------


def test_read_manifest_of_the_tiny_package(tiny_package):
    m = read_manifest(tiny_package)
    assert m.id == "tiny" and m.family == "vae" and m.format == 1 and m.name == "Tiny tiny"
    assert m.path == tiny_package / MANIFEST_NAME and m.folder == tiny_package
    assert m.weights_path == tiny_package / WEIGHTS_NAME
    assert m.output.kind == "image" and (m.output["width"], m.output["height"], m.output["channels"]) == (16, 16, 1)
    assert m.latent.shape == (8,) and m.latent.size == 8 and m.latent.prior == "normal"
    assert m.conditions.kind == "text" and m.conditions.default == "Ab" and "A" in m.conditions.labels
    assert m.architecture["width"] == 4 and m.training["quality"]["note"] == "untrained"
    assert read_manifest(tiny_package / MANIFEST_NAME) == m  # the file itself works too
    plain = read_manifest(tiny_package.parent / "tiny-plain")
    assert plain.conditions.kind == "none" and plain.conditions.labels == ()


def test_missing_manifest(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(ManifestError) as info:
        read_manifest(folder)
    assert str(folder / MANIFEST_NAME) in str(info.value)
    assert MANIFEST_NAME in str(info.value)


def test_invalid_toml(tiny_package):
    path = tiny_package / MANIFEST_NAME
    path.write_text('format = 1\nid = "tiny\nname = [\n', encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        read_manifest(tiny_package)
    assert str(path) in str(info.value) and "TOML" in str(info.value)


def test_manifest_not_utf8(tiny_package):
    path = tiny_package / MANIFEST_NAME
    path.write_bytes(b'name = "\xff\xfe"\n')
    with pytest.raises(ManifestError) as info:
        read_manifest(tiny_package)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


def _delete(*keys):
    def change(data):
        table = data
        for key in keys[:-1]:
            table = table[key]
        del table[keys[-1]]
    return change


def _set(value, *keys):
    def change(data):
        table = data
        for key in keys[:-1]:
            table = table[key]
        table[keys[-1]] = value
    return change


@pytest.mark.parametrize("change, field, words", [
    (_delete("name"), "name", "missing"),
    (_delete("format"), "format", "missing"),
    (_delete("output"), "output", "missing"),
    (_delete("output", "height"), "output.height", "missing"),
    (_delete("latent", "shape"), "latent.shape", "missing"),
    (_set("64", "output", "width"), "output.width", "integer"),
    (_set(0, "output", "channels"), "output.channels", "positive"),
    (_set(True, "output", "width"), "output.width", "integer"),
    (_set("video", "output", "kind"), "output.kind", "video"),
    (_set("sketch", "conditions", "kind"), "conditions.kind", "sketch"),
    (_set("Not An Id", "id"), "id", "lowercase"),
    (_set("", "id"), "id", "lowercase"),
    (_set("a/b", "id"), "id", "lowercase"),
    (_set(99, "format"), "format", "99"),
    (_set(0, "format"), "format", "0"),
    (_set(" ", "family"), "family", "empty"),
    (_set([8, 0], "latent", "shape"), "latent.shape", "positive"),
    (_set([], "latent", "shape"), "latent.shape", "positive"),
    (_set("uniform", "latent", "prior"), "latent.prior", "uniform"),
    (_set({"kind": "class", "labels": []}, "conditions"), "conditions.labels", "non-empty"),
    (_set(5, "architecture"), "architecture", "table"),
])
def test_bad_manifest_fields_name_file_and_field(tiny_package, change, field, words):
    path = _edit_manifest(tiny_package, change)
    with pytest.raises(ManifestError) as info:
        read_manifest(tiny_package)
    err = info.value
    assert err.field == field
    assert str(path) in str(err)
    assert f"[{field}]" in str(err)
    assert words in str(err)


def test_id_with_trailing_newline_is_refused(tiny_package):
    path = _edit_manifest(tiny_package, _set("tiny\n", "id"))
    with pytest.raises(ManifestError) as info:
        read_manifest(tiny_package)
    assert info.value.field == "id" and str(path) in str(info.value)


def test_bad_manifest_makes_resolve_fail_with_the_same_error(tiny_package):
    path = _edit_manifest(tiny_package, _delete("name"))
    with pytest.raises(ManifestError) as info:
        resolve(str(tiny_package))
    assert str(path) in str(info.value) and "[name]" in str(info.value)


@pytest.mark.parametrize("change, field", [
    (_set(32, "output", "height"), "output.height"),
    (_set([2, 4], "latent", "shape"), "latent.shape"),
    (_set("8", "architecture", "width"), "architecture.width"),
    (_set(2, "architecture", "width"), "architecture.width"),
    (_set(24, "architecture", "image_size"), "architecture.image_size"),
    (_set("audio", "output", "kind"), "output.kind"),
])
def test_family_validation_names_the_field(tiny_package, change, field):
    def both(data):
        change(data)
        if data["output"]["kind"] == "audio":
            data["output"] = {"kind": "audio", "sample_rate": 8000, "channels": 1, "length": 100}
    path = _edit_manifest(tiny_package, both)
    with pytest.raises(ManifestError) as info:
        resolve(str(tiny_package))
    assert info.value.field == field
    assert str(path) in str(info.value) and f"[{field}]" in str(info.value)


# --- weights ----------------------------------------------------------------------------------------------------


def test_missing_weights(tiny_package):
    weights = tiny_package / WEIGHTS_NAME
    weights.unlink()
    with pytest.raises(WeightsError) as info:
        read_tensors(weights)
    assert str(weights) in str(info.value) and "missing" in str(info.value)
    with pytest.raises(WeightsError) as info:
        resolve(str(tiny_package))
    assert str(weights) in str(info.value) and "missing" in str(info.value)


def test_missing_weights_hints_at_a_pickle_beside_it(tiny_package):
    (tiny_package / WEIGHTS_NAME).rename(tiny_package / "model.ckpt")
    with pytest.raises(WeightsError) as info:
        resolve(str(tiny_package))
    assert "model.ckpt" in str(info.value) and "safetensors" in str(info.value)


@pytest.mark.parametrize("cut", [lambda n: n // 2, lambda n: n - 1, lambda n: 9, lambda n: 4, lambda n: 0],
                         ids=["half", "last-byte", "9-bytes", "4-bytes", "empty"])
def test_truncated_weights(tiny_package, cut):
    weights = tiny_package / WEIGHTS_NAME
    data = weights.read_bytes()
    weights.write_bytes(data[:cut(len(data))])
    with pytest.raises(WeightsError) as info:
        read_tensors(weights)
    assert str(weights) in str(info.value)
    assert "truncated" in str(info.value) or "corrupt" in str(info.value)
    with pytest.raises(WeightsError, match="truncated|corrupt"):  # found when the package is scanned, from its header
        resolve(str(tiny_package))


@pytest.mark.parametrize("garbage", [b"not a safetensors file, just some text " * 20, bytes(range(256)) * 8,
                                     b"\x00" * 64])
def test_garbage_weights(tiny_package, garbage):
    weights = tiny_package / WEIGHTS_NAME
    weights.write_bytes(garbage)
    with pytest.raises(WeightsError) as info:
        read_tensors(weights)
    assert str(weights) in str(info.value)


class _Trap:
    """Unpickling this creates `marker` (the way a malicious checkpoint would run code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_trap_pickle_really_runs_code_when_unpickled(tmp_path):
    """Control for the tests below: the payload is live, so 'no marker' proves nothing unpickled it."""
    marker = tmp_path / "control-marker"
    obj = pickle.loads(pickle.dumps({"weights": _Trap(marker)}, protocol=4))
    obj["weights"].close()
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_disguised_as_safetensors_is_refused_unopened(tiny_package, tmp_path, protocol):
    marker = tmp_path / f"PWNED-{protocol}"
    weights = tiny_package / WEIGHTS_NAME
    weights.write_bytes(pickle.dumps({"encoder.0.weight": _Trap(marker)}, protocol=protocol))
    with pytest.raises(WeightsError) as info:
        read_tensors(weights)
    assert str(weights) in str(info.value)
    if protocol >= 2:
        assert "pickle" in str(info.value)
    with pytest.raises(WeightsError, match="pickle"):  # refused when the package is scanned, from its first bytes
        resolve(str(tiny_package))
    for entry in scan([tiny_package.parent]):
        entry.to_dict()
    assert not marker.exists()


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_save_checkpoint_is_refused_unopened(tiny_package, tmp_path, zipfile):
    weights = tiny_package / WEIGHTS_NAME
    marker = tmp_path / "PWNED"
    torch.save({"a": torch.zeros(2), "trap": _Trap(marker)}, weights, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(WeightsError) as info:
        read_tensors(weights)
    message = str(info.value)
    assert str(weights) in message and "pickle" in message
    assert ("zip" in message) == zipfile
    with pytest.raises(WeightsError, match="pickle"):
        load_model(resolve(str(tiny_package)))
    assert not marker.exists()
    plain = tmp_path / "plain.safetensors"
    torch.save({"a": torch.zeros(2)}, plain)
    with pytest.raises(WeightsError, match="zip"):
        read_tensors(plain)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".pkl", ".PT", ".bin"])
def test_pickle_suffixes_are_refused_by_name(tmp_path, suffix):
    marker = tmp_path / "PWNED"
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(pickle.dumps({"a": _Trap(marker)}, protocol=4))
    with pytest.raises(WeightsError) as info:
        read_tensors(path)
    assert str(path) in str(info.value) and "pickle" in str(info.value)
    assert not marker.exists()
    # refused by name even when the content is a real safetensors file (and even if it does not exist)
    write_tensors({"a": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match="pickle"):
        read_tensors(path)
    with pytest.raises(WeightsError, match="pickle"):
        read_tensors(tmp_path / f"missing{suffix}")


def test_read_write_tensors_round_trip(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    write_tensors(tensors, path)
    back = read_tensors(path)
    assert set(back) == {"a", "b"} and all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_weights_that_do_not_fit_the_architecture(tiny_package):
    _edit_manifest(tiny_package, _set(8, "architecture", "width"))
    entry = resolve(str(tiny_package))
    with pytest.raises(WeightsError) as info:
        load_model(entry)
    message = str(info.value)
    assert str(tiny_package / WEIGHTS_NAME) in message
    found = re.findall(r"([\w.]+) has shape \[([\d, ]*)\] but the architecture needs \[([\d, ]*)\]", message)
    assert found
    on_disk = read_tensors(tiny_package / WEIGHTS_NAME)
    wanted = get_family("vae").build(read_manifest(tiny_package)).state_dict()
    for name, got, want in found:
        assert got != want
        assert [int(v) for v in got.split(", ")] == list(on_disk[name].shape)
        assert [int(v) for v in want.split(", ")] == list(wanted[name].shape)


def test_weights_with_missing_and_extra_tensors(tiny_package):
    weights = tiny_package / WEIGHTS_NAME
    tensors = read_tensors(weights)
    del tensors["dec_out.bias"]
    tensors["stray.weight"] = torch.zeros(1)
    write_tensors(tensors, weights)
    with pytest.raises(WeightsError) as info:
        load_model(resolve(str(tiny_package)))
    assert "dec_out.bias" in str(info.value) and "stray.weight" in str(info.value)


def test_directions_of_the_wrong_size_are_refused(tiny_package):
    write_tensors({"vectors": torch.eye(3), "stds": torch.ones(3), "mean": torch.zeros(3)},
                  tiny_package / "directions.safetensors")
    with pytest.raises(WeightsError) as info:
        load_model(resolve(str(tiny_package)))
    assert "directions.safetensors" in str(info.value)


def test_expected_sha256_mismatch_is_refused(tiny_package):
    entry = resolve(str(tiny_package))
    assert load_model(entry, expected_sha256=entry.sha256).sha256 == entry.sha256
    with pytest.raises(WeightsError, match="hash"):
        load_model(entry, expected_sha256="0" * 64)


def test_unknown_family_names_the_manifest(tiny_package):
    path = _edit_manifest(tiny_package, _set("diffusion-xl", "family"))
    with pytest.raises(FamilyError) as info:
        resolve(str(tiny_package))
    assert str(path) in str(info.value) and "[family]" in str(info.value) and "diffusion-xl" in str(info.value)
    [entry] = [e for e in scan([tiny_package.parent]) if e.folder == tiny_package]
    assert isinstance(entry.error, FamilyError) and str(path) in str(entry.error)


def test_sha256_file_matches_hashlib(tiny_package, tmp_path):
    weights = tiny_package / WEIGHTS_NAME
    assert sha256_file(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 5000)  # spans several chunks
    assert sha256_file(big, chunk=4096) == hashlib.sha256(big.read_bytes()).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


# --- library ----------------------------------------------------------------------------------------------------


@pytest.fixture
def mixed_root(tmp_path):
    root = tmp_path / "mixed"
    make_tiny_package(root / "tiny", "tiny", seed=0)
    make_tiny_package(root / "broken", "broken", seed=2)
    _edit_manifest(root / "broken", _delete("license"))
    make_tiny_package(root / "zz-copy", "tiny", seed=3)
    (root / "weights-only").mkdir()
    shutil.copy(root / "tiny" / WEIGHTS_NAME, root / "weights-only" / WEIGHTS_NAME)
    (root / "not-a-package").mkdir()
    (root / ".hidden").mkdir()
    shutil.copy(root / "tiny" / MANIFEST_NAME, root / ".hidden" / MANIFEST_NAME)
    return root


def test_scan_lists_valid_invalid_and_duplicate_packages(mixed_root):
    entries = scan([mixed_root])
    assert [e.folder.name for e in entries] == ["broken", "tiny", "weights-only", "zz-copy"]
    by = {e.folder.name: e for e in entries}
    assert by["tiny"].ok and by["tiny"].id == "tiny" and by["tiny"].manifest is not None
    assert isinstance(by["broken"].error, ManifestError)
    broken = str(by["broken"].error)
    assert "[license]" in broken and str(mixed_root / "broken" / MANIFEST_NAME) in broken
    assert isinstance(by["weights-only"].error, ManifestError) and by["weights-only"].id == "weights-only"
    dup = by["zz-copy"]
    assert not dup.ok and dup.id == "tiny" and "duplicate" in str(dup.error)
    assert str(mixed_root / "tiny") in str(dup.error)
    assert [e.folder for e in scan([mixed_root])] == [e.folder for e in entries]  # stable
    d = dup.to_dict()
    assert d["ok"] is False and "duplicate" in d["error"] and d["id"] == "tiny"
    assert by["tiny"].to_dict()["sha256"] == sha256_file(mixed_root / "tiny" / WEIGHTS_NAME)


def test_scan_first_root_wins_and_roots_are_not_listed_twice(models_dir, tmp_path):
    other = tmp_path / "other"
    make_tiny_package(other / "tiny", "tiny", seed=9)
    entries = scan([other, models_dir, models_dir, models_dir / "tiny"])
    assert [(e.folder, e.ok) for e in entries] == [(other / "tiny", True), (models_dir / "tiny", False),
                                                   (models_dir / "tiny-plain", True)]
    assert str(other / "tiny") in str(entries[1].error)
    assert scan([tmp_path / "does-not-exist"]) == []
    # a root that is itself a package
    assert [e.id for e in scan([models_dir / "tiny-plain"])] == ["tiny-plain"]


def test_resolve_by_id_and_by_folder(mixed_root, models_dir):
    by_id = resolve("tiny", roots=[mixed_root])
    assert by_id.ok and by_id.folder == mixed_root / "tiny"
    by_path = resolve(str(mixed_root / "zz-copy"))  # asked for by path, the copy is fine on its own
    assert by_path.ok and by_path.folder == mixed_root / "zz-copy" and by_path.id == "tiny"
    assert resolve("tiny-plain", roots=[models_dir]).manifest.conditions.kind == "none"
    with pytest.raises(ManifestError, match="license"):
        resolve("broken", roots=[mixed_root])
    with pytest.raises(ManifestError) as info:
        resolve(str(mixed_root / "nope"))
    assert str(mixed_root / "nope") in str(info.value)
    with pytest.raises(ManifestError, match="file"):
        resolve(str(mixed_root / "tiny" / MANIFEST_NAME))


def test_resolve_unknown_id_lists_installed_ids(models_dir):
    with pytest.raises(StudioError) as info:
        resolve("no-such-model", roots=[models_dir])
    message = str(info.value)
    assert "no-such-model" in message and "tiny, tiny-plain" in message
    with pytest.raises(StudioError, match=r"installed: none"):
        resolve("tiny", roots=[models_dir / "missing"])


class _TestFamily(Family):
    name = "test-family-xyz"

    def build(self, manifest):
        return torch.nn.Linear(1, 1)


def test_register_family_makes_get_family_find_it(tiny_package):
    assert "test-family-xyz" not in family_names()
    try:
        returned = register_family(_TestFamily)
        assert returned is _TestFamily  # usable as a class decorator
        fam = get_family("test-family-xyz")
        assert isinstance(fam, _TestFamily)
        assert "test-family-xyz" in family_names()
        _edit_manifest(tiny_package, _set("test-family-xyz", "family"))
        assert resolve(str(tiny_package)).ok
        instance = _TestFamily()
        register_family(instance)
        assert get_family("test-family-xyz") is instance
    finally:
        families.unregister_family("test-family-xyz")
    with pytest.raises(FamilyError):
        get_family("test-family-xyz")


def test_register_family_without_name_is_refused():
    class Nameless(Family):
        pass

    with pytest.raises(ValueError):
        register_family(Nameless)
    assert "" not in family_names()


def test_get_family_unknown_lists_installed():
    with pytest.raises(FamilyError) as info:
        get_family("nope")
    assert info.value.field == "family"
    assert "'nope'" in str(info.value) and "vae" in str(info.value)
    assert get_family("vae").name == "vae"


class _FakeEntryPoint:
    def __init__(self, name, value):
        self.name, self.value = name, value


class PluginFamily(Family):
    name = "plug-in-fam"


def test_entry_point_plugins_are_loaded_and_broken_ones_reported(monkeypatch):
    from studio.families import registry

    monkeypatch.setattr(registry, "_targets", dict(registry.BUILTIN))
    monkeypatch.setattr(registry, "_instances", {})
    monkeypatch.setattr(registry, "_errors", {})
    monkeypatch.setattr(registry, "_entry_points_read", False)
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [_FakeEntryPoint("plug-in-fam", f"{__name__}:PluginFamily"),
                _FakeEntryPoint("broken-fam", "torchsde_family_not_installed:Family"),
                _FakeEntryPoint("vae", f"{__name__}:PluginFamily")]  # a plug-in never replaces a built-in

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    assert isinstance(get_family("plug-in-fam"), PluginFamily)
    assert calls == [families.ENTRY_POINT_GROUP]
    with pytest.raises(FamilyError) as info:
        get_family("broken-fam")
    assert "torchsde_family_not_installed" in str(info.value) and "broken-fam" in str(info.value)
    assert get_family("vae").name == "vae" and not isinstance(get_family("vae"), PluginFamily)
    assert calls == [families.ENTRY_POINT_GROUP]  # read once


# --- nothing is ever unpickled ------------------------------------------------------------------------------------

_TORCH_LOAD = re.compile(r"\btorch\s*\.\s*load\s*\(")
_UNSAFE = [
    re.compile(r"\bpickle\s*\.\s*loads?\s*\("),
    re.compile(r"\bfrom\s+(?:c?pickle|dill|joblib)\s+import\b"),
    re.compile(r"\bimport\s+(?:dill|joblib|cloudpickle)\b"),
    re.compile(r"allow_pickle\s*=\s*True"),
    re.compile(r"weights_only\s*=\s*False"),
]


def _call_arguments(text: str, start: int) -> str:
    """The text of a call's arguments from just after its "(" at `start` to the matching ")"."""
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1]


def _unsafe_calls(text: str) -> list[str]:
    """Calls that could unpickle: torch.load is allowed only with weights_only=True (torch's restricted unpickler,
    which refuses every global that is not a tensor type)."""
    hits = [m.group(0) for pattern in _UNSAFE for m in pattern.finditer(text)]
    hits += [m.group(0) for m in _TORCH_LOAD.finditer(text)
             if not re.search(r"\bweights_only\s*=\s*True\b", _call_arguments(text, m.end()))]
    return hits


def test_unsafe_call_detector_detects():
    assert _unsafe_calls("x = torch.load(f)")
    assert _unsafe_calls("x = torch.load(f, map_location=g(1))")
    assert not _unsafe_calls("x = torch.load(f,\n    map_location='cpu', weights_only=True)")
    assert _unsafe_calls("obj = pickle.loads(b)")
    assert _unsafe_calls("obj = pickle.load(fh)")
    assert _unsafe_calls("a = np.load(p, allow_pickle=True)")
    assert _unsafe_calls("from pickle import loads")
    assert not _unsafe_calls("np.load(p, allow_pickle=False)  # pickles are never loaded")
    assert not _unsafe_calls("read_tensors(path)  # torch.loader")


def test_no_module_under_studio_unpickles(repo_root):
    sources = sorted((repo_root / "studio").rglob("*.py"))
    assert len(sources) > 10 and any(p.name == "weights.py" for p in sources)
    offenders = {str(p.relative_to(repo_root)): hits for p in sources
                 if (hits := _unsafe_calls(p.read_text(encoding="utf-8")))}
    assert offenders == {}


@pytest.mark.parametrize("header_len", [0x0280, 0x0380, 0x0480, 0x0580])
def test_safetensors_whose_header_length_starts_like_a_pickle_still_load(tmp_path, header_len):
    """A header length of 0x..80 with a next byte of 2..5 begins b'\\x80\\x02'..b'\\x80\\x05', like a pickle."""
    import json
    import struct

    from studio.io.weights import read_tensors

    for pad in range(0, 200):
        header = {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"p": "x" * pad}}
        text = json.dumps(header, separators=(",", ":")).encode()
        if len(text) <= header_len:
            text = text + b" " * (header_len - len(text))
            break
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", header_len) + text + struct.pack("<2f", 1.0, 2.0))
    assert path.read_bytes()[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    assert read_tensors(path)["t"].tolist() == [1.0, 2.0]

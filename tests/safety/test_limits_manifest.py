"""Limits on model packages: model.toml is read safely (regular file, size, depth) and every size it asks for (output,
latent, labels, architecture widths, the network's parameter count) is checked before anything is allocated; each
refusal is one short line naming the file and the field."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tiny_package, tiny_manifest
from studio.errors import ManifestError, RecipeError, StudioError
from studio.families import get_family
from studio.limits import MAX_LABELS, MAX_PARAMETERS
from studio.manifest import parse_manifest, read_manifest, read_toml
from studio.train.recipe import read_recipe

ROOT = Path(__file__).resolve().parents[2]
DEEP_TOML = "x = " + "[" * 100_000 + "]" * 100_000 + "\n"


def _short(exc: BaseException, *parts: str) -> str:
    message = str(exc)
    assert "\n" not in message and len(message) < 400, message
    for part in parts:
        assert part in message, message
    return message


def _refused(tmp_path: Path, change, field: str, *words: str) -> str:
    data = copy.deepcopy(tiny_manifest())
    change(data)
    path = tmp_path / "model.toml"
    with pytest.raises(ManifestError) as info:
        manifest = parse_manifest(data, path)
        family = get_family(manifest.family)
        family.validate(manifest)
        family.build(manifest)
    assert info.value.path == str(path) and info.value.field == field, str(info.value)
    return _short(info.value, "model.toml", field, *words)


# --- reading ------------------------------------------------------------------------------------------------------


def test_a_toml_nested_100000_deep_is_one_line_not_a_recursion_error(tmp_path):
    path = tmp_path / "model.toml"
    path.write_text('format = 1\nid = "deep"\n' + DEEP_TOML, encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path)
    _short(info.value, str(path), "nested", "limit")


def test_tomllib_recursion_is_caught_even_past_the_depth_scan(tmp_path, monkeypatch):
    import studio.manifest as manifest_module

    monkeypatch.setattr(manifest_module, "read_toml_text", lambda path, error: "a = 1\n")

    def recurse(text):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(manifest_module.tomllib, "loads", recurse)
    with pytest.raises(ManifestError) as info:
        read_toml(tmp_path / "model.toml")
    _short(info.value, "model.toml", "not usable TOML")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_model_toml_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "model.toml")
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path)
    _short(info.value, "model.toml", "FIFO")


def test_a_model_toml_linked_to_dev_zero_is_refused(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    (tmp_path / "model.toml").symlink_to("/dev/zero")
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path)
    _short(info.value, "model.toml", "character device")


def test_a_huge_model_toml_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "model.toml"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MB of nothing
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path)
    _short(info.value, "model.toml", "over the limit")


def test_a_deep_recipe_is_a_recipe_error(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text(DEEP_TOML, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        read_recipe(path)
    _short(info.value, "recipe.toml", "nested")


# --- sizes ---------------------------------------------------------------------------------------------------------


def test_an_output_a_million_pixels_wide_is_refused(tmp_path):
    _refused(tmp_path, lambda d: d["output"].update(width=1_000_000), "output.width", "1000000", "8,192")


def test_an_output_of_60000_by_60000_is_refused(tmp_path):
    def change(d):
        d["output"].update(width=60_000, height=60_000)
    _refused(tmp_path, change, "output.width", "60000")


def test_a_sound_an_hour_long_or_too_fast_is_refused(tmp_path):
    base = {"kind": "audio", "sample_rate": 44_100, "channels": 1, "length": 44_100 * 3600}
    with pytest.raises(ManifestError) as info:
        parse_manifest({**tiny_manifest(), "output": base}, tmp_path / "model.toml")
    _short(info.value, "output.length", "limit")
    with pytest.raises(ManifestError) as info:
        parse_manifest({**tiny_manifest(), "output": {**base, "sample_rate": 10**9, "length": 10}},
                       tmp_path / "model.toml")
    _short(info.value, "output.sample_rate", "limit")


def test_a_latent_of_ten_billion_numbers_is_refused(tmp_path):
    _refused(tmp_path, lambda d: d["latent"].update(shape=[100_000, 100_000]), "latent.shape", "limit")


def test_too_many_labels_are_refused(tmp_path):
    def change(d):
        d["conditions"] = {"kind": "class", "labels": [f"c{i}" for i in range(MAX_LABELS + 1)]}
    _refused(tmp_path, change, "conditions.labels", "limit")


def test_a_hidden_width_of_two_to_the_31_is_refused(tmp_path):
    _refused(tmp_path, lambda d: d["architecture"].update(hidden=2**31), "architecture.hidden", "2147483648",
             "16,384")


def test_widths_each_under_the_limit_but_a_network_too_big_are_refused_on_the_meta_device(tmp_path):
    def change(d):
        d["architecture"].update(width=16_000, hidden=16_000, class_dim=16_000)
    message = _refused(tmp_path, change, "architecture", "parameters")
    assert f"{MAX_PARAMETERS:,}" in message


def test_gan_widths_and_diffusion_multipliers_are_checked_one_by_one(tmp_path):
    data = {**tiny_manifest(), "family": "gan",
            "architecture": {"image_size": 16, "widths": [32, 10**7, 16]}, "conditions": {"kind": "none"}}
    manifest = parse_manifest(data, tmp_path / "model.toml")
    with pytest.raises(ManifestError) as info:
        get_family("gan").validate(manifest)
    _short(info.value, "architecture.widths[1]", "10000000")
    data = {**tiny_manifest(), "family": "diffusion", "latent": {"shape": [1, 16, 16]},
            "architecture": {"mults": [1] * 1000}}
    manifest = parse_manifest(data, tmp_path / "model.toml")
    with pytest.raises(ManifestError) as info:
        get_family("diffusion").validate(manifest)
    _short(info.value, "architecture.mults", "1000 entries")


def test_a_train_schedule_of_a_billion_steps_is_refused(tmp_path):
    data = {**tiny_manifest(), "family": "diffusion", "latent": {"shape": [1, 16, 16]},
            "architecture": {"train_timesteps": 10**9}}
    manifest = parse_manifest(data, tmp_path / "model.toml")
    with pytest.raises(ManifestError) as info:
        get_family("diffusion").validate(manifest)
    _short(info.value, "architecture.train_timesteps", "limit")


def test_a_spectrogram_too_big_is_refused(tmp_path):
    data = {**tiny_manifest(), "family": "audio-vae",
            "output": {"kind": "audio", "sample_rate": 48_000, "channels": 1, "length": 48_000 * 500},
            "conditions": {"kind": "class", "labels": ["kick"]},
            "architecture": {"n_fft": 16_384, "hop": 1}}
    manifest = parse_manifest(data, tmp_path / "model.toml")
    with pytest.raises(ManifestError) as info:
        get_family("audio-vae").validate(manifest)
    _short(info.value, "architecture.hop", "spectrogram")


def test_the_shipped_models_stay_within_every_limit():
    for folder in sorted((ROOT / "models").iterdir()):
        if (folder / "model.toml").is_file():
            manifest = read_manifest(folder)
            family = get_family(manifest.family)
            family.validate(manifest)
            family.build(manifest)  # counts its parameters on the meta device first


# --- from the command line -----------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}
    return subprocess.run(["timeout", "60", sys.executable, "-m", "studio", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def _no_crash(result: subprocess.CompletedProcess) -> str:
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-2000:]
    assert "Traceback" not in out and "unexpected error" not in out, out[-2000:]
    return out


def test_models_still_lists_the_good_packages_beside_a_deep_toml(tmp_path):
    root = tmp_path / "models"
    make_tiny_package(root / "good", model_id="good")
    (root / "deep").mkdir()
    (root / "deep" / "model.toml").write_text('format = 1\nid = "deep"\n' + DEEP_TOML, encoding="utf-8")
    out = _no_crash(_cli("models", "--models-dir", str(root), cwd=tmp_path, home=tmp_path / "home"))
    assert "good" in out and "nested" in out
    assert all(len(line) < 400 for line in out.splitlines())


def test_render_of_a_manifest_a_million_pixels_wide_is_one_line(tmp_path):
    folder = make_tiny_package(tmp_path / "wide", model_id="wide")
    text = (folder / "model.toml").read_text(encoding="utf-8")
    wide = re.sub(r"(?m)^(width|image_size) = 16$", r"\1 = 1000000", text)
    assert wide.count("1000000") == 2
    (folder / "model.toml").write_text(wide, encoding="utf-8")
    out = _no_crash(_cli("render", "--model", str(folder), "--out", str(tmp_path / "x.png"), cwd=tmp_path,
                         home=tmp_path / "home"))
    assert "model.toml [output.width]" in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_every_refusal_is_a_studio_error():
    assert issubclass(ManifestError, StudioError) and issubclass(RecipeError, StudioError)

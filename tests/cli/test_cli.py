"""The command line, driven in-process through studio.cli.main (and once through `python -m studio`)."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from PIL import Image

import studio.cli
import studio.library
from studio.cli import main
from studio.manifest import MANIFEST_NAME, WEIGHTS_NAME
from studio.request import RenderRequest
from studio.io.weights import sha256_file

from conftest import make_tiny_package


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    """Only the packages a test makes: the repo's models/ folder may be changing while tests run."""
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


@pytest.fixture
def out_dir(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def render(capsys, models_dir, out, *extra) -> tuple[int, str, str]:
    return run(capsys, "render", "--models-dir", models_dir, "--out", out, *extra)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


def chunks(path: Path) -> dict:
    with Image.open(path) as image:
        return dict(image.text)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- models ---------------------------------------------------------------------------------------------------------


def test_models_json_lists_the_packages(capsys, models_dir):
    code, out, err = run(capsys, "models", "--json", "--models-dir", models_dir)
    assert code == 0, err
    listed = {d["id"]: d for d in json.loads(out)}
    assert {"tiny", "tiny-plain"} <= set(listed)
    for model_id in ("tiny", "tiny-plain"):
        d = listed[model_id]
        assert d["ok"] is True and d["error"] is None
        assert d["family"] == "vae" and d["output"] == "image"
        assert Path(d["path"]) == models_dir / model_id
        assert re.fullmatch(r"[0-9a-f]{64}", d["sha256"])
        assert d["sha256"] == sha256_file(models_dir / model_id / WEIGHTS_NAME)


def test_models_reports_a_broken_package(capsys, models_dir):
    broken = models_dir / "broken"
    broken.mkdir()
    (broken / MANIFEST_NAME).write_text("format = 1\nid = [unclosed\n", encoding="utf-8")
    code, out, err = run(capsys, "models", "--json", "--models-dir", models_dir)
    assert code == 0
    listed = {d["id"]: d for d in json.loads(out)}
    assert listed["broken"]["ok"] is False
    assert str(broken / MANIFEST_NAME) in listed["broken"]["error"] and "TOML" in listed["broken"]["error"]
    assert listed["tiny"]["ok"] is True

    code, out, err = run(capsys, "models", "--models-dir", models_dir)
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("broken"))
    assert "INVALID" in line and str(broken / MANIFEST_NAME) in line
    assert any(line.startswith("tiny ") for line in out.splitlines())


# --- render ---------------------------------------------------------------------------------------------------------


def test_render_writes_a_png_with_a1111_parameters_and_the_request(capsys, models_dir, out_dir):
    out = out_dir / "x.png"
    code, stdout, err = render(capsys, models_dir, out, "--model", "tiny", "--seed", "7", "--prompt", "Ab")
    assert code == 0, err
    assert f"wrote {out}" in stdout
    sha = sha256_file(models_dir / "tiny" / WEIGHTS_NAME)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (32, 16)
    text = chunks(out)
    lines = text["parameters"].split("\n")
    assert lines[0] == "Ab"
    last = lines[-1]
    assert last.startswith("Seed: 7, ")  # this model takes no steps: none are written (A1111 would read them)
    for part in ("Seed: 7", "Size: 32x16", f"Model hash: {sha[:10]}", "Model: ", "Version: "):
        assert part in last, part
    request = RenderRequest.from_json(text["latent-studio"])
    assert request.model_id == "tiny" and request.seed == 7 and request.param("prompt") == "Ab"
    assert request.model_hash == sha
    assert leftovers(out_dir) == ["x.png"]


def test_model_may_be_a_package_folder(capsys, models_dir, out_dir):
    by_id, by_path = out_dir / "id.png", out_dir / "path.png"
    assert render(capsys, models_dir, by_id, "--model", "tiny", "--seed", "3")[0] == 0
    code, _, err = run(capsys, "render", "--model", models_dir / "tiny", "--seed", "3", "--out", by_path)
    assert code == 0, err
    assert np.array_equal(pixels(by_id), pixels(by_path))
    assert chunks(by_id)["latent-studio"] == chunks(by_path)["latent-studio"]


def test_render_from_a_png_is_pixel_identical(capsys, models_dir, out_dir):
    first, second = out_dir / "x.png", out_dir / "y.png"
    assert render(capsys, models_dir, first, "--model", "tiny", "--seed", "7", "--prompt", "Ab",
                  "--set", "d1=0.75")[0] == 0
    code, _, err = run(capsys, "render", "--models-dir", models_dir, "--from", first, "--out", second)
    assert code == 0, err
    assert np.array_equal(pixels(first), pixels(second))
    assert chunks(first)["latent-studio"] == chunks(second)["latent-studio"]
    assert chunks(first)["parameters"] == chunks(second)["parameters"]


def test_seeds_up_to_2_64_stay_exact_from_the_command_line_to_the_file_and_back(capsys, models_dir, out_dir):
    top = 2**64 - 1
    first, second, lower = out_dir / "x.png", out_dir / "y.png", out_dir / "z.png"
    assert render(capsys, models_dir, first, "--model", "tiny", "--seed", str(top), "--set", f"mix_seed={top - 1}",
                  "--set", "variation_seed=18446744073709551614", "--set", "variation_strength=0.5")[0] == 0
    stored = json.loads(chunks(first)["latent-studio"])
    assert stored["seed"] == top and stored["params"]["mix_seed"] == top - 1  # whole numbers, not floats
    assert stored["params"]["variation_seed"] == top - 1
    code, _, err = run(capsys, "render", "--models-dir", models_dir, "--from", first, "--out", second)
    assert code == 0, err
    assert np.array_equal(pixels(first), pixels(second))
    assert render(capsys, models_dir, lower, "--model", "tiny", "--seed", str(top), "--set", f"mix_seed={top - 2}",
                  "--set", "variation_seed=18446744073709551614", "--set", "variation_strength=0.5")[0] == 0
    assert not np.array_equal(pixels(first), pixels(lower))  # one apart at 2⁶⁴: a different mix (no float rounding)
    code, _, err = render(capsys, models_dir, out_dir / "w.png", "--model", "tiny", "--seed", str(top + 1))
    assert code == 1 and "0..18446744073709551615" in err


def test_render_from_a_png_made_by_other_weights_fails_naming_the_hash(capsys, models_dir, out_dir):
    first = out_dir / "x.png"
    assert render(capsys, models_dir, first, "--model", "tiny", "--seed", "7")[0] == 0
    old_sha = sha256_file(models_dir / "tiny" / WEIGHTS_NAME)
    make_tiny_package(models_dir / "tiny", "tiny", seed=5)  # the installed package changes
    code, _, err = run(capsys, "render", "--models-dir", models_dir, "--from", first, "--out", out_dir / "y.png")
    assert code == 1
    assert "hash" in err and old_sha[:12] in err and len(err.strip().splitlines()) == 1
    assert leftovers(out_dir) == ["x.png"]


def test_set_changes_the_image_and_is_recorded(capsys, models_dir, out_dir):
    plain, edited = out_dir / "plain.png", out_dir / "edited.png"
    assert render(capsys, models_dir, plain, "--model", "tiny", "--seed", "7")[0] == 0
    code, _, err = render(capsys, models_dir, edited, "--model", "tiny", "--seed", "7",
                          "--set", "d0=1.5", "--set", "z1=-0.5", "--set", "width=48")
    assert code == 0, err
    request = RenderRequest.from_json(chunks(edited)["latent-studio"])
    assert dict(request.params) == {"d0": 1.5, "z1": -0.5} and request.width == 48
    with Image.open(edited) as image:
        assert image.size == (48, 24)
    assert "Size: 48x24" in chunks(edited)["parameters"]
    # the edits alone change the pixels too
    edits_only = out_dir / "edits.png"
    assert render(capsys, models_dir, edits_only, "--model", "tiny", "--seed", "7",
                  "--set", "d0=1.5", "--set", "z1=-0.5")[0] == 0
    assert pixels(edits_only).shape == pixels(plain).shape
    assert not np.array_equal(pixels(edits_only), pixels(plain))


@pytest.mark.parametrize("item, words", [
    ("d0", "name=value"),
    ("=3", "name=value"),
    ("sharpness=2", "sharpness"),
    ("d0=big", "number"),
    ("width=wide", "whole number"),
    ("guidance=x", "no parameter 'guidance'"),  # the VAE has no sampler: the known ones are named
    ("truncation=x", "number"),
    ("mix_seed=1.5", "whole number"),
    ("d4=1", "d0…d3"),  # the tiny model ships 4 directions
    ("dtype=float64", "dtype"),
])
def test_bad_set_is_one_line_and_no_traceback(capsys, models_dir, out_dir, item, words):
    code, _, err = render(capsys, models_dir, out_dir / "x.png", "--model", "tiny", "--set", item)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("latent-studio: error:")
    assert "Traceback" not in err
    assert leftovers(out_dir) == []


# --- bad input: one clear line, no traceback, no output file --------------------------------------------------------


def _package(tmp_path: Path) -> Path:
    return make_tiny_package(tmp_path / "bad" / "tiny", "tiny")


def _edit_manifest(folder: Path, change) -> None:
    import tomllib

    path = folder / MANIFEST_NAME
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


def missing_weights(tmp_path):
    folder = _package(tmp_path)
    (folder / WEIGHTS_NAME).unlink()
    return folder, [str(folder / WEIGHTS_NAME), "missing"]


def truncated_weights(tmp_path):
    folder = _package(tmp_path)
    weights = folder / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder, [str(weights), "truncated"]


def wrong_type(tmp_path):
    folder = _package(tmp_path)
    _edit_manifest(folder, lambda d: d["output"].update(width="16"))
    return folder, [str(folder / MANIFEST_NAME), "[output.width]", "integer"]


def missing_field(tmp_path):
    folder = _package(tmp_path)
    _edit_manifest(folder, lambda d: d.pop("name"))
    return folder, [str(folder / MANIFEST_NAME), "[name]", "missing"]


def weights_do_not_fit(tmp_path):
    folder = _package(tmp_path)
    _edit_manifest(folder, lambda d: d["latent"].update(shape=[9]))
    return folder, [str(folder / WEIGHTS_NAME), "do not fit"]


def unknown_family(tmp_path):
    folder = _package(tmp_path)
    _edit_manifest(folder, lambda d: d.update(family="no-such-family"))
    return folder, [str(folder / MANIFEST_NAME), "[family]", "no-such-family"]


def pickle_pt_only(tmp_path):
    folder = _package(tmp_path)
    (folder / WEIGHTS_NAME).unlink()
    torch.save({"w": torch.zeros(2)}, folder / "weights.pt")
    return folder, [str(folder / WEIGHTS_NAME), "weights.pt", "pickle"]


def torch_zip_renamed(tmp_path):
    folder = _package(tmp_path)
    torch.save({"w": torch.zeros(2)}, folder / WEIGHTS_NAME)
    return folder, [str(folder / WEIGHTS_NAME), "pickle"]


class _Trap:
    """Unpickling this creates a folder: the proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def raw_pickle_renamed(tmp_path):
    folder = _package(tmp_path)
    (folder / WEIGHTS_NAME).write_bytes(pickle.dumps(_Trap(tmp_path / "UNPICKLED"), protocol=4))
    return folder, [str(folder / WEIGHTS_NAME), "pickle"]


BAD_PACKAGES = [missing_weights, truncated_weights, wrong_type, missing_field, weights_do_not_fit, unknown_family,
                pickle_pt_only, torch_zip_renamed, raw_pickle_renamed]


def assert_one_clear_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("latent-studio: error: "), err
    for word in words:
        assert word in lines[0], (word, err)
    assert "Traceback" not in err


@pytest.mark.parametrize("breaker", BAD_PACKAGES, ids=lambda f: f.__name__)
def test_bad_package_is_one_clear_line_and_no_file(capsys, tmp_path, out_dir, breaker):
    folder, words = breaker(tmp_path)
    code, out, err = run(capsys, "render", "--model", folder, "--out", out_dir / "x.png")
    assert code != 0
    assert_one_clear_line(err, *words)
    assert leftovers(out_dir) == []
    assert not (tmp_path / "UNPICKLED").exists()


@pytest.mark.parametrize("breaker", [missing_weights, truncated_weights, unknown_family], ids=lambda f: f.__name__)
def test_bad_package_by_id_names_the_file(capsys, tmp_path, out_dir, breaker):
    folder, words = breaker(tmp_path)
    code, _, err = run(capsys, "render", "--model", "tiny", "--models-dir", folder.parent, "--out", out_dir / "x.png")
    assert code != 0
    assert_one_clear_line(err, *words)
    assert leftovers(out_dir) == []


def test_debug_shows_the_traceback(capsys, tmp_path, out_dir):
    folder, words = truncated_weights(tmp_path)
    code, _, err = run(capsys, "--debug", "render", "--model", folder, "--out", out_dir / "x.png")
    assert code != 0 and "Traceback" in err and words[0] in err
    code, _, err = run(capsys, "render", "--debug", "--model", folder, "--out", out_dir / "x.png")
    assert code != 0 and "Traceback" in err
    assert leftovers(out_dir) == []


def test_output_folder_missing(capsys, models_dir, tmp_path):
    target = tmp_path / "nowhere" / "x.png"
    code, _, err = render(capsys, models_dir, target, "--model", "tiny")
    assert code != 0
    assert_one_clear_line(err, str(target.parent), "does not exist")
    assert not target.parent.exists()


def test_output_folder_is_a_file(capsys, models_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = render(capsys, models_dir, blocker / "x.png", "--model", "tiny")
    assert code != 0
    assert_one_clear_line(err, str(blocker), "not a folder")
    assert blocker.read_text() == "not a folder"
    assert leftovers(tmp_path) == ["a-file", "models"]


def test_output_is_a_folder(capsys, models_dir, out_dir):
    (out_dir / "x.png").mkdir()
    code, _, err = render(capsys, models_dir, out_dir / "x.png", "--model", "tiny")
    assert code != 0
    assert_one_clear_line(err, str(out_dir / "x.png"), "folder")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_folder_not_writable(capsys, models_dir, out_dir):
    out_dir.chmod(0o500)
    try:
        code, _, err = render(capsys, models_dir, out_dir / "x.png", "--model", "tiny")
        assert code != 0
        assert_one_clear_line(err, str(out_dir), "not writable")
        assert leftovers(out_dir) == []
    finally:
        out_dir.chmod(0o700)


def test_unknown_model_id(capsys, models_dir, out_dir):
    code, _, err = render(capsys, models_dir, out_dir / "x.png", "--model", "no-such-model")
    assert code != 0
    assert_one_clear_line(err, "no-such-model", "tiny")  # and it says what is installed
    assert leftovers(out_dir) == []


def test_from_a_png_without_metadata(capsys, models_dir, out_dir, tmp_path):
    bare = tmp_path / "bare.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(bare)
    code, _, err = render(capsys, models_dir, out_dir / "y.png", "--from", bare)
    assert code != 0
    assert_one_clear_line(err, str(bare), "no Latent Studio request")
    assert leftovers(out_dir) == []


def test_from_a_missing_file(capsys, models_dir, out_dir, tmp_path):
    code, _, err = render(capsys, models_dir, out_dir / "y.png", "--from", tmp_path / "gone.png")
    assert code != 0
    assert_one_clear_line(err, str(tmp_path / "gone.png"), "not found")


def test_a_failed_save_leaves_no_partial_file(capsys, models_dir, out_dir, monkeypatch):
    out = out_dir / "x.png"
    out.write_bytes(b"the previous export")
    seen = []

    def failing_save(self, fp, *args, **kwargs):
        seen.append(Path(fp))
        Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    code, _, err = render(capsys, models_dir, out, "--model", "tiny", "--seed", "1")
    assert code != 0
    assert_one_clear_line(err, str(out), "No space left on device")
    assert seen and seen[0].parent == out_dir and seen[0] != out  # it wrote to a temporary file
    assert out.read_bytes() == b"the previous export"  # the old file is intact
    assert leftovers(out_dir) == ["x.png"]  # and no temporary file remains


def test_a_failed_save_of_a_new_file_leaves_nothing(capsys, models_dir, out_dir, monkeypatch):
    def failing_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"partial")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    code, _, err = render(capsys, models_dir, out_dir / "x.png", "--model", "tiny")
    assert code != 0 and "Traceback" not in err
    assert leftovers(out_dir) == []


# --- render with no options: the default model; no verb: the desktop app ---------------------------------------------


def test_render_alone_renders_the_default_model(capsys, models_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(studio.library, "DEFAULT_MODEL_ID", "tiny")
    code, out, err = run(capsys, "--models-dir", models_dir, "render")
    assert code == 0, err
    made = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in made] == ["tiny-0.png"]
    assert RenderRequest.from_json(chunks(made[0])["latent-studio"]).model_id == "tiny"


def test_render_alone_finds_the_shipped_default(capsys, tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    default_id = studio.library.DEFAULT_MODEL_ID
    make_tiny_package(shipped / default_id, default_id)
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(shipped))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = run(capsys, "render")
    assert code == 0, err
    assert [p.name for p in work.glob("*.png")] == [f"{default_id}-0.png"]


@pytest.mark.parametrize("argv, expected", [
    ([], {"open_paths": [], "model": None}),
    (["poster.lstudio"], {"open_paths": ["poster.lstudio"], "model": None}),
    (["--debug", "--models-dir", "M", "a.png", "--model", "tiny"], {"open_paths": ["a.png"], "model": "tiny"}),
    (["gui", "--device", "cpu"], {"open_paths": [], "device": "cpu"}),
])
def test_no_verb_opens_the_desktop_app(monkeypatch, models_dir, argv, expected):
    import studio.ui.app

    seen = {}
    monkeypatch.setattr(studio.ui.app, "run", lambda **kw: seen.update(kw) or 0)
    argv = [str(models_dir) if a == "M" else a for a in argv]  # --model is checked before the window opens
    assert studio.cli.main(argv) == 0
    assert {k: seen[k] for k in expected} == expected
    if "--models-dir" in argv:
        assert seen["models_dirs"] == [str(models_dir)]


def test_the_window_is_not_opened_on_a_model_that_is_not_installed(monkeypatch, models_dir, capsys):
    import studio.ui.app

    monkeypatch.setattr(studio.ui.app, "run", lambda **kw: pytest.fail("the window opened"))
    assert studio.cli.main(["--models-dir", str(models_dir), "--model", "tiny-nope"]) == 1
    assert "no model with id 'tiny-nope' is installed (installed: tiny, tiny-plain)" in capsys.readouterr().err


# --- the entry point ------------------------------------------------------------------------------------------------


def test_python_dash_m_studio(models_dir, out_dir, repo_root):
    out = out_dir / "x.png"
    result = subprocess.run([sys.executable, "-m", "studio", "render", "--model", "tiny", "--models-dir",
                             str(models_dir), "--seed", "7", "--prompt", "Ab", "--out", str(out)],
                            cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert RenderRequest.from_json(chunks(out)["latent-studio"]).seed == 7

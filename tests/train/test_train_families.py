"""The GAN and diffusion trainers end to end on tiny recipes: real fonts, a few steps, packages the app renders with
quality figures; resume; checkpoints tied to how the recipe trains, not to how it evaluates."""

from __future__ import annotations

import glob
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import finish
from studio.cli import main
from studio.errors import RecipeError
from studio.library import load_model, resolve
from studio.request import RenderRequest
from studio.train import registry
from studio.train.common import same_training
from studio.train.recipe import read_recipe

FONTS = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/*.ttf")
               + glob.glob("/usr/share/fonts/truetype/liberation*/*.ttf"))
pytestmark = pytest.mark.skipif(len(FONTS) < 6, reason="needs fonts-dejavu and fonts-liberation")

MODEL = {
    "glyph-gan": 'image_size = 8\nlatent_dim = 8\nclass_dim = 4\nmapping_layers = 2\nwidths = [8, 8]\n'
                 'd_widths = [8, 8]\n',
    "glyph-diffusion": 'image_size = 8\nbase = 8\nmults = [1, 2]\nemb_dim = 16\nschedule = "linear"\n',
}
TRAIN = {
    "glyph-gan": "batch = 4\nr1_every = 2\ncheckpoint_every = 2\nbfloat16 = false\n",
    "glyph-diffusion": "batch = 4\nwarmup = 2\ncheckpoint_every = 2\nbfloat16 = false\n",
}
EVALUATE = {
    "glyph-gan": "classifier_steps = 3\nsamples = 16\n",
    "glyph-diffusion": 'classifier_steps = 3\nsamples = 8\nsteps = 2\ncompare_samplers = ["dpmpp"]\n',
}


def write_recipe(folder: Path, trainer: str, steps: int = 4, lr: float = 0.002, evaluate: str = "",
                 train: str = "") -> Path:
    """A tiny recipe for `trainer` on DejaVu and Liberation; `train` adds lines to its [train] table."""
    text = textwrap.dedent(f"""\
        trainer = "{trainer}"
        [package]
        id = "tiny-{trainer}"
        name = "Tiny {trainer}"
        version = "0.0.1"
        license = "CC0-1.0"
        default_prompt = "Ab"
        [data]
        size = 16
        heldout_fraction = 0.3
        font_files = ["/usr/share/fonts/truetype/dejavu/*.ttf", "/usr/share/fonts/truetype/liberation*/*.ttf"]
        [model]
        """) + MODEL[trainer] + f"[train]\nseed = 0\nsteps = {steps}\nlr = {lr}\n" + TRAIN[trainer] + train \
        + "[evaluate]\n" + (evaluate or EVALUATE[trainer]) + 'compare_vae = "no-such-package"\n'
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.toml"
    path.write_text(text)
    return path


def render(folder: Path, seed: int = 0, **params) -> np.ndarray:
    model = load_model(resolve(str(folder)), "cpu", torch.float32)
    return finish(model.family.render(model, RenderRequest(model_id=model.id, seed=seed, params=params)))[0].data


@pytest.mark.parametrize("trainer, family", [("glyph-gan", "gan"), ("glyph-diffusion", "diffusion")])
def test_trainer_writes_a_package_the_app_renders(tmp_path, capsys, trainer, family):
    recipe = write_recipe(tmp_path, trainer)
    out, run = tmp_path / "out", tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--run-dir", str(run)]) == 0
    manifest = resolve(str(out)).manifest
    assert manifest.family == family and manifest.output["width"] == 8
    q = manifest.training["quality"]
    assert 0.0 <= q["sample_accuracy"] <= 1.0 and q["sample_frechet_distance"] >= 0.0
    assert manifest.training["steps"] == 4 and manifest.training["seconds"] > 0
    assert manifest.training["heldout_families"]
    assert (out / "recipe.toml").read_text() == recipe.read_text()
    assert (out / "preview.png").exists() and (run / "checkpoint.safetensors").exists()
    image = render(out, seed=1, prompt="Ab", **({"steps": 2} if family == "diffusion" else {}))  # a GAN has no steps
    assert image.shape == (8, 16, 1)
    if family == "gan":
        assert (out / "directions.safetensors").exists()
        assert "sample_psi_0.7_accuracy" in q
    else:
        assert "sampler_dpmpp_accuracy" in q and "sample_unguided_accuracy" in q


@pytest.mark.parametrize("trainer", ["glyph-gan", "glyph-diffusion"])
def test_a_finished_run_is_measured_again_with_new_evaluation_settings(tmp_path, trainer):
    recipe = write_recipe(tmp_path / "a", trainer)
    out, run = tmp_path / "out", tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--run-dir", str(run)]) == 0
    weights = (out / "weights.safetensors").read_bytes()
    seconds = resolve(str(out)).manifest.training["seconds"]
    other_eval = EVALUATE[trainer].replace("samples = ", "samples = 2")  # 16 → 216, 8 → 28
    again = write_recipe(tmp_path / "b", trainer, evaluate=other_eval)
    assert same_training(recipe.read_text(), again.read_text())
    assert main(["train", str(again), "--out", str(out), "--run-dir", str(run), "--resume"]) == 0
    manifest = resolve(str(out)).manifest
    assert (out / "weights.safetensors").read_bytes() == weights  # not trained again
    assert manifest.training["seconds"] == pytest.approx(seconds, abs=0.2)
    assert manifest.training["quality"]["samples"] in (216, 28)


@pytest.mark.parametrize("trainer", ["glyph-gan", "glyph-diffusion"])
def test_resume_refuses_a_checkpoint_that_trained_differently(tmp_path, trainer):
    recipe = write_recipe(tmp_path / "a", trainer, steps=2)
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(tmp_path / "out"), "--run-dir", str(run)]) == 0
    changed = write_recipe(tmp_path / "b", trainer, steps=2, lr=0.01)
    assert not same_training(recipe.read_text(), changed.read_text())
    with pytest.raises(RecipeError, match="trains differently"):
        registry.run(read_recipe(changed), tmp_path / "out2", run, resume=True, log=lambda s: None)


def test_resume_continues_a_run_to_the_same_weights(tmp_path):
    """Stopped half way and resumed, the diffusion trainer ends where an uninterrupted run ends."""
    trainer = "glyph-diffusion"
    full = write_recipe(tmp_path / "full", trainer, steps=4)
    assert main(["train", str(full), "--out", str(tmp_path / "o1"), "--run-dir", str(tmp_path / "r1")]) == 0
    half = write_recipe(tmp_path / "half", trainer, steps=4)
    from studio.train import common

    class Stop(Exception):
        pass

    original = common.Checkpoint.save

    def stop_at_two(self, step):
        original(self, step)
        if step == 2:
            raise Stop

    common.Checkpoint.save = stop_at_two
    try:
        with pytest.raises(Stop):
            registry.run(read_recipe(half), tmp_path / "o2", tmp_path / "r2", log=lambda s: None)
    finally:
        common.Checkpoint.save = original
    assert main(["train", str(half), "--out", str(tmp_path / "o2"), "--run-dir", str(tmp_path / "r2"),
                 "--resume"]) == 0
    assert (tmp_path / "o1" / "weights.safetensors").read_bytes() == \
        (tmp_path / "o2" / "weights.safetensors").read_bytes()

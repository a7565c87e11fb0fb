"""The sound trainer end to end on a tiny recipe (8 kHz, a few steps): a package the app renders, float16 weights,
quality figures, resume; and the measures it reports (multi-resolution STFT distance, spread, mel filters)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import finish
from studio.cli import main
from studio.library import load_model, resolve
from studio.request import RenderRequest
from studio.train.scoring.sounds import SoundClassifier, mel_matrix, mrstft_distance, spread
from studio.train.sounds import KINDS
from studio.io.weights import read_tensors

TINY = textwrap.dedent("""\
    trainer = "sound-vae"
    [package]
    id = "tiny-sounds"
    name = "Tiny Sounds"
    version = "0.0.1"
    license = "CC0-1.0"
    default_class = "snare"
    [data]
    sample_rate = 8000
    length = 1024
    per_kind = 4
    heldout_per_kind = 2
    [model]
    latent_dim = 4
    width = 4
    levels = 2
    max_width = 8
    class_dim = 4
    hidden = 16
    n_fft = 64
    hop = 16
    griffin_lim_iterations = 4
    [train]
    seed = 0
    steps = 4
    batch = 4
    warmup = 2
    beta_warmup = 2
    checkpoint_every = 2
    bfloat16 = false
    [evaluate]
    classifier_steps = 2
    classifier_per_kind = 1
    prior_samples_per_class = 2
    """)


def train(tmp_path: Path, *extra: str) -> Path:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(TINY)
    out = tmp_path / "models" / "tiny-sounds"
    assert main(["train", str(recipe), "--out", str(out), "--run-dir", str(tmp_path / "run"), *extra]) == 0
    return out


def test_trainer_writes_a_package_the_app_renders(tmp_path, capsys):
    out = train(tmp_path)
    entry = resolve(str(out))
    manifest = entry.manifest
    assert manifest.family == "audio-vae" and manifest.output.kind == "audio"
    assert manifest.output["sample_rate"] == 8000 and manifest.output["length"] == 1024
    assert manifest.conditions.labels == KINDS and manifest.conditions.default == "snare"
    assert all(t.dtype in (torch.float16, torch.int64) for t in read_tensors(out / "weights.safetensors").values())
    for name in ("preview.png", "directions.safetensors", "recipe.toml"):
        assert (out / name).exists()
    q = manifest.training["quality"]
    for key in ("recon_mrstft_heldout", "recon_mrstft_griffin_lim_floor", "classifier_accuracy_heldout_real",
                "prior_sample_accuracy", "prior_spread_vs_real"):
        assert np.isfinite(q[key]), key
    assert set(q["prior_sample_accuracy_per_class"]) == set(KINDS)
    assert q["prior_samples"] == 2 * len(KINDS) and q["heldout_sounds"] == 2 * len(KINDS)
    model = load_model(entry)
    sound = finish(model.family.render(model, RenderRequest("tiny-sounds", seed=1, params={"label": "bell"})))[0]
    assert sound.data.shape == (1024, 1) and np.isfinite(sound.data).all()
    assert "recon_mrstft_heldout" in capsys.readouterr().out


def test_resume_measures_a_finished_run_again_without_training(tmp_path):
    out = train(tmp_path)
    first = (out / "weights.safetensors").read_bytes()
    train(tmp_path, "--resume")
    assert (out / "weights.safetensors").read_bytes() == first
    assert (tmp_path / "run" / "sound-classifier-8000.safetensors").exists()  # trained once, kept


def test_mrstft_distance_is_zero_for_equal_sounds_and_grows_with_noise():
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(8192) / 22050
    clean = (0.5 * torch.sin(2 * torch.pi * 330 * t))[None]
    noisy = [clean + a * torch.randn(clean.shape, generator=gen) for a in (0.01, 0.1)]
    assert float(mrstft_distance(clean, clean)) == 0.0
    assert 0 < float(mrstft_distance(clean, noisy[0])) < float(mrstft_distance(clean, noisy[1]))


def test_spread_measures_variety():
    same = torch.ones(5, 3)
    varied = torch.arange(15.0).reshape(5, 3)
    assert spread(same) == 0.0 and spread(varied) > 0
    with pytest.raises(ValueError, match="fewer than two"):
        spread(torch.ones(1, 3))


@pytest.mark.parametrize("change, field", [
    (("prior_samples_per_class = 2", "prior_samples_per_class = 1"), "evaluate.prior_samples_per_class"),
    (("per_kind = 4", "per_kind = 3"), "data.per_kind"),  # fewer sounds of a class than latent dimensions
])
def test_a_recipe_that_cannot_be_measured_is_refused_before_training(tmp_path, capsys, change, field):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(TINY.replace(*change))
    assert main(["train", str(recipe), "--out", str(tmp_path / "out"), "--run-dir", str(tmp_path / "run")]) == 1
    assert field in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_mel_filters_cover_the_spectrum_in_order():
    m = mel_matrix(1024, 22050)
    assert m.shape == (64, 513) and (m.sum(1) > 0).all()
    centres = m.argmax(1)
    assert (centres[1:] >= centres[:-1]).all() and centres[-1] > 400


def test_the_classifier_reads_any_length_of_sound():
    clf = SoundClassifier().eval()
    with torch.inference_mode():
        assert clf(torch.zeros(2, 22272)).shape == (2, len(KINDS))
        assert clf(torch.zeros(1, 8000)).shape == (1, len(KINDS))

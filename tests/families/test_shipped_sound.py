"""The sound model the app ships (`models/one-shots`): present, valid, reproducible by its recipe, scored on held-out
sounds, and doing what the artist is promised: every class sounds, a seed is the same sound every time, the sliders and
variations change the timbre, an encoded sound comes back close to the recorded reconstruction figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import finish
from studio.library import load_model, resolve, scan
from studio.request import CORE_FIELDS, RenderRequest
from studio.train.recipe import read_recipe
from studio.train.scoring.sounds import HELD_SEED, mrstft_distance
from studio.train.sounds import KINDS, synthesize
from studio.io.weights import read_tensors

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "models" / "one-shots"


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model(resolve(str(FOLDER)))


def render(model, **fields) -> np.ndarray:
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}  # the rest are params
    return finish(model.family.render(model, RenderRequest(model_id=model.id, params=fields, **core)))[0].data[:, 0]


def test_the_package_is_valid_complete_and_made_by_its_recipe():
    entries = {e.id: e for e in scan([ROOT / "models"])}
    assert "one-shots" in entries and entries["one-shots"].ok, entries.get("one-shots")
    for name in ("model.toml", "weights.safetensors", "directions.safetensors", "preview.png", "recipe.toml"):
        assert (FOLDER / name).exists(), name
    manifest = entries["one-shots"].manifest
    assert manifest.family == "audio-vae" and manifest.output.kind == "audio"
    assert manifest.output["sample_rate"] == 22050 and manifest.conditions.labels == KINDS
    recipe = read_recipe(FOLDER / "recipe.toml")
    assert recipe.trainer == "sound-vae" and recipe.package["id"] == "one-shots"
    assert (ROOT / "recipes" / "one-shots.toml").read_text() == (FOLDER / "recipe.toml").read_text()
    assert (FOLDER / "weights.safetensors").stat().st_size < 16 * 2**20
    assert all(t.dtype == torch.float16 for t in read_tensors(FOLDER / "weights.safetensors").values()
               if t.is_floating_point())


def test_quality_figures_are_recorded_and_good():
    q = resolve(str(FOLDER)).manifest.training["quality"]
    assert q["classifier_accuracy_heldout_real"] >= 0.95, q
    assert q["prior_sample_accuracy"] >= 0.85, q
    assert q["prior_sample_accuracy"] > q["prior_sample_accuracy_unfitted_prior"] - 0.05, q
    assert q["recon_mrstft_griffin_lim_floor"] < q["recon_mrstft_heldout"], q  # the phase search alone costs less
    assert q["prior_samples"] >= 500 and q["heldout_sounds"] >= 500


def test_the_recorded_reconstruction_figure_holds_on_fresh_held_out_sounds(model):
    """Re-measure on two held-out sounds of each class (seeds the recording used, so the same population)."""
    recorded = resolve(str(FOLDER)).manifest.training["quality"]["recon_mrstft_heldout"]
    waves = np.stack([synthesize(kind, HELD_SEED + s) for kind in KINDS for s in range(2)])
    labels = [kind for kind in KINDS for _ in range(2)]
    redrawn = []
    with torch.inference_mode():
        for wave, label in zip(waves, labels):
            z = model.family.encode(model, wave, [label])
            redrawn.append(render(model, latent=tuple(float(v) for v in z), label=label))
    distance = float(mrstft_distance(torch.from_numpy(waves), torch.from_numpy(np.stack(redrawn))).mean())
    assert distance == pytest.approx(recorded, rel=0.3), (distance, recorded)


def test_every_class_sounds_and_a_seed_is_the_same_sound_every_time(model):
    sounds = {kind: render(model, seed=3, label=kind) for kind in KINDS}
    for kind, sound in sounds.items():
        assert sound.shape == (22272,) and np.isfinite(sound).all(), kind
        assert 0.02 < np.abs(sound).max() <= 0.99 + 1e-6, kind  # audible, never clipped
    assert np.array_equal(render(model, seed=3, label="kick"), sounds["kick"])
    assert not np.array_equal(render(model, seed=4, label="kick"), sounds["kick"])
    # drums die away, pads sustain
    def tail(x):
        return float((x[len(x) // 2:] ** 2).sum() / (x ** 2).sum())

    assert tail(sounds["hat"]) < tail(sounds["pad"])


def test_sliders_and_variations_change_the_timbre(model):
    base = render(model, seed=1, label="pluck")
    moved = render(model, seed=1, label="pluck", d0=2.5)
    varied = render(model, seed=1, label="pluck", variation_seed=5, variation_strength=0.4)
    ref = torch.from_numpy(base)[None]
    assert float(mrstft_distance(ref, torch.from_numpy(moved)[None])) > 0.1
    assert float(mrstft_distance(ref, torch.from_numpy(varied)[None])) > 0.1

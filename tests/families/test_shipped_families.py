"""The GAN and diffusion models the app ships: present, valid, small, reproducible per seed, scored on held-out
fonts next to the VAE, with recipes that name their trainer, and doing what the artist is promised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import finish
from studio.library import load_model, resolve, scan
from studio.request import CORE_FIELDS, RenderRequest
from studio.train.recipe import read_recipe

ROOT = Path(__file__).resolve().parents[2]
GAN, DIFFUSION = ROOT / "models" / "glyph-gan", ROOT / "models" / "glyph-diffusion"


def render(model, **fields):
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}  # the rest are params
    return finish(model.family.render(model, RenderRequest(model_id=model.id, params=fields, **core)))[0].data


@pytest.fixture(scope="module")
def gan():
    torch.set_num_threads(1)
    return load_model(resolve(str(GAN)))


@pytest.fixture(scope="module")
def diffusion():
    torch.set_num_threads(1)
    return load_model(resolve(str(DIFFUSION)))


@pytest.mark.parametrize("folder, family, trainer", [(GAN, "gan", "glyph-gan"),
                                                     (DIFFUSION, "diffusion", "glyph-diffusion")])
def test_shipped_packages_are_valid_complete_and_reproducible_by_their_recipes(folder, family, trainer):
    entries = {e.id: e for e in scan([ROOT / "models"])}
    assert folder.name in entries and entries[folder.name].ok, entries.get(folder.name)
    for name in ("model.toml", "weights.safetensors", "preview.png", "recipe.toml"):
        assert (folder / name).exists(), name
    manifest = entries[folder.name].manifest
    assert manifest.family == family
    recipe = read_recipe(folder / "recipe.toml")
    assert recipe.trainer == trainer and recipe.package["id"] == folder.name
    assert (ROOT / "recipes" / f"{folder.name}.toml").read_text() == (folder / "recipe.toml").read_text()
    assert (folder / "weights.safetensors").stat().st_size < 8 * 2**20
    assert (ROOT / "resources" / "contact-sheets" / f"{folder.name}.png").exists()


@pytest.mark.parametrize("folder", [GAN, DIFFUSION])
def test_quality_is_measured_on_the_vaes_held_out_fonts_with_the_vae_beside_it(folder):
    training = resolve(str(folder)).manifest.training
    vae = resolve(str(ROOT / "models" / "glyphs")).manifest.training
    assert training["heldout_families"] == vae["heldout_families"]
    q = training["quality"]
    assert q["sample_accuracy"] >= 0.90, q
    for key in ("sample_frechet_distance", "vae_frechet_distance", "vae_accuracy"):
        assert isinstance(q[key], float), key
    assert training["seconds"] > 0


def test_gan_renders_deterministically_and_its_style_controls_act(gan):
    a = render(gan, seed=3, prompt="Glyph")
    assert a.shape == (32, 5 * 32, 1)
    assert np.array_equal(a, render(gan, seed=3, prompt="Glyph"))
    assert not np.array_equal(a, render(gan, seed=4, prompt="Glyph"))
    off = {"noise": 0.0}
    mean = render(gan, seed=3, prompt="Glyph", truncation=0.0, **off)
    assert np.array_equal(mean, render(gan, seed=8, prompt="Glyph", truncation=0.0, **off))
    mixed = render(gan, seed=3, prompt="Glyph", mix_seed=8, mix_layer=0, **off)
    assert np.array_equal(mixed, render(gan, seed=8, prompt="Glyph", **off))
    assert gan.directions is not None and len(gan.directions) >= 8


def seed_spread(model, seeds: int = 8) -> float:
    """Mean absolute difference (0 … 1) between the pictures of one prompt drawn from different seeds."""
    pictures = [render(model, seed=s, prompt="AaGg3").astype(np.float64) / 255 for s in range(seeds)]
    return float(np.mean([np.abs(a - b).mean() for i, a in enumerate(pictures) for b in pictures[i + 1:]]))


def test_the_shipped_gan_draws_each_seed_in_its_own_style(gan):
    """glyph-gan 1.0.0 drew one glyph per character whatever the seed (its seeds differed half as much as the VAE's,
    0.035 against 0.068 here); 2.0.0 varies at least as much as the VAE, by the recorded measure and by pixels, and
    2.1.0 also comes as close to the held-out fonts as the VAE does (issue 19's bar, on the same 2,480 samples)."""
    q = resolve(str(GAN)).manifest.training["quality"]
    assert q["samples"] >= 2480 and q["sample_accuracy"] >= 0.95, q
    assert q["sample_style_spread"] >= q["vae_style_spread"], q
    assert q["sample_frechet_distance"] <= q["vae_frechet_distance"], q
    assert seed_spread(gan) >= seed_spread(load_model(resolve(str(ROOT / "models" / "glyphs"))))


def test_diffusion_renders_deterministically_with_previews(diffusion):
    a = render(diffusion, seed=3, prompt="Ab", steps=8)
    assert a.shape == (32, 64, 1)
    assert np.array_equal(a, render(diffusion, seed=3, prompt="Ab", steps=8))
    assert not np.array_equal(a, render(diffusion, seed=4, prompt="Ab", steps=8))

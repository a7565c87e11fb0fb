"""The GAN loop's StyleGAN2 options on tiny glyph recipes (real fonts, a few seeded steps): projection-only
conditioning, lazy path-length regularisation, the mapping network's learning-rate multiplier, one character per
minibatch-deviation group. Each test fails when
its option is ignored; the defaults train exactly as recipes without the options (the shipped glyph-gan's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from studio.cli import main
from studio.errors import RecipeError
from studio.io.weights import read_tensors
from studio.nets.stylegan import StyleGenerator
from studio.train import registry
from studio.train.data.folders import dump_recipe
from studio.train.data.glyphs import Cells, grouped_labels
from studio.train.loops.gan import Discriminator, deviation_group, folder_recipe, pair_diversity
from studio.train.recipe import read_recipe
from test_train_families import FONTS, write_recipe as write_family_recipe
from test_train_folder import pictures

pytestmark = pytest.mark.skipif(len(FONTS) < 6, reason="needs fonts-dejavu and fonts-liberation")


def write_recipe(folder: Path, extra: str = "", steps: int = 4) -> Path:
    """test_train_families' tiny glyph-gan recipe with `extra` lines in [train]."""
    return write_family_recipe(folder, "glyph-gan", steps, evaluate="classifier_steps = 3\nsamples = 124\n",
                               train=extra)


def train(tmp: Path, name: str, extra: str = "") -> tuple[Path, Path]:
    out, run = tmp / f"out-{name}", tmp / f"run-{name}"
    assert main(["train", str(write_recipe(tmp / name, extra)), "--out", str(out), "--run-dir", str(run)]) == 0
    return out, run


def weights(out: Path) -> dict[str, torch.Tensor]:
    return read_tensors(out / "weights.safetensors")


def differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_the_defaults_train_as_a_recipe_without_the_options(tmp_path):
    plain, _ = train(tmp_path, "plain")
    spelled, _ = train(tmp_path, "spelled", 'conditioning = "aux"\npl_weight = 0\npl_every = 4\n'
                                            "mapping_lr_mul = 0.01\n")
    assert (plain / "weights.safetensors").read_bytes() == (spelled / "weights.safetensors").read_bytes()


def test_projection_conditioning_drops_the_auxiliary_classifier(tmp_path):
    aux_out, aux_run = train(tmp_path, "aux")
    proj_out, proj_run = train(tmp_path, "proj", 'conditioning = "projection"\n')
    aux_ckpt, proj_ckpt = (read_tensors(r / "checkpoint.safetensors") for r in (aux_run, proj_run))
    assert "d.aux.weight" in aux_ckpt and "d.embed.weight" in aux_ckpt
    assert "d.aux.weight" not in proj_ckpt and "d.embed.weight" in proj_ckpt  # projection stays
    assert differ(weights(aux_out), weights(proj_out))


def test_path_length_regularisation_changes_training_and_resumes_alike(tmp_path):
    base_out, _ = train(tmp_path, "base")
    pl_out, pl_run = train(tmp_path, "pl", "pl_weight = 2.0\npl_every = 2\n")
    assert differ(weights(base_out), weights(pl_out))
    ckpt = read_tensors(pl_run / "checkpoint.safetensors")
    assert float(ckpt["pl.mean"]) > 0  # the running mean of the path lengths moved and is kept
    # stopped after step 2 and resumed, the run ends where the uninterrupted one ended (the mean is restored)
    from studio.train import common

    class Stop(Exception):
        pass

    original = common.Checkpoint.save

    def stop_at_two(self, step):
        original(self, step)
        if step == 2:
            raise Stop

    half = write_recipe(tmp_path / "half", "pl_weight = 2.0\npl_every = 2\n")
    common.Checkpoint.save = stop_at_two
    try:
        with pytest.raises(Stop):
            registry.run(read_recipe(half), tmp_path / "o2", tmp_path / "r2", log=lambda s: None)
    finally:
        common.Checkpoint.save = original
    assert main(["train", str(half), "--out", str(tmp_path / "o2"), "--run-dir", str(tmp_path / "r2"),
                 "--resume"]) == 0
    assert (tmp_path / "o2" / "weights.safetensors").read_bytes() == (pl_out / "weights.safetensors").read_bytes()


def test_a_mapping_multiplier_trains_differently_and_packages_at_the_apps_multiplier(tmp_path):
    base_out, _ = train(tmp_path, "base")
    fast_out, fast_run = train(tmp_path, "fast", "mapping_lr_mul = 1.0\n")
    assert differ(weights(base_out), weights(fast_out))
    # the package stores the mapping at 0.01: the app's generator draws what the trained one drew
    ckpt = read_tensors(fast_run / "checkpoint.safetensors")
    trained = StyleGenerator(8, 1, 8, 8, 62, 4, 2, (8, 8), mapping_lr_mul=1.0)
    trained.load_state_dict({k[len("g_ema."):]: v for k, v in ckpt.items() if k.startswith("g_ema.")})
    shipped = StyleGenerator(8, 1, 8, 8, 62, 4, 2, (8, 8))
    shipped.load_state_dict(weights(fast_out))
    z, labels = torch.randn(5, 8, generator=torch.Generator().manual_seed(3)), torch.arange(5)
    with torch.no_grad():
        assert torch.allclose(shipped.map(z), trained.map(z), rtol=1e-5, atol=1e-6)
        assert torch.allclose(shipped(z, labels), trained(z, labels), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(StyleGenerator(8, 1, 8, 8, 62, 4, 2, (8, 8)).map(z), trained.map(z))


def test_packaged_state_keeps_the_effective_mapping():
    torch.manual_seed(0)
    g = StyleGenerator(8, 1, 8, 8, 3, 4, 3, (8, 8), mapping_lr_mul=0.25)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p))
    other = StyleGenerator(8, 1, 8, 8, 3, 4, 3, (8, 8))
    other.load_state_dict(g.packaged_state())
    z = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(other.map(z), g.map(z), rtol=1e-5, atol=1e-6)
    assert not torch.equal(other.mapping[0].weight, g.mapping[0].weight)  # rescaled, not copied


@pytest.mark.parametrize("line, key, problem", [
    ('conditioning = "cgan"', "train.conditioning", "must be 'aux' or 'projection'"),
    ("pl_weight = -1", "train.pl_weight", "must not be negative"),
    ("pl_every = 0", "train.pl_every", "pl_every"),
    ("mapping_lr_mul = 0", "train.mapping_lr_mul", "must be above 0"),
    ('group_characters = "yes"', "train.group_characters", "group_characters"),
    ("diversity_weight = -1", "train.diversity_weight", "must not be negative"),
    ("diversity_weight = 1", "train.diversity_weight", "needs group_characters = true"),
    ("group_characters = true\ndiversity_weight = 1\ndiversity_cap = 0", "train.diversity_cap", "must be above 0"),
])
def test_wrong_options_are_refused_naming_the_field(tmp_path, line, key, problem):
    recipe = write_recipe(tmp_path, line + "\n")
    with pytest.raises(RecipeError, match=problem) as err:
        registry.run(read_recipe(recipe), tmp_path / "out", tmp_path / "run", log=lambda s: None)
    assert key in str(err.value)


# --- one character per minibatch-deviation group ----------------------------------------------------------------------


def test_grouped_labels_repeat_each_character_down_the_deviation_groups():
    labels = grouped_labels(62, 32, 4, torch.Generator().manual_seed(3))
    rows = labels.reshape(4, -1)  # the discriminator's layout: group j = elements j, j + 8, j + 16, j + 24
    assert (rows == rows[0]).all() and len(rows[0]) == 8
    # group 1 is the plain draw, number for number (recipes without the option train as before)
    assert torch.equal(grouped_labels(62, 32, 1, torch.Generator().manual_seed(3)),
                       torch.randint(0, 62, (32,), generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="does not split"):
        grouped_labels(62, 6, 4, torch.Generator())


def deviation_seen(d: Discriminator, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The minibatch-deviation channel the discriminator appends before its last convolution, one value a picture."""
    seen = []
    hook = d.final_conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, -1].mean((1, 2))))
    with torch.no_grad():
        d(x, labels)
    hook.remove()
    return seen[0]


def test_grouping_lets_the_discriminator_see_a_generator_that_draws_one_style_per_character():
    """A collapsed generator (one drawing per character, whatever the seed) shows no deviation in grouped batches,
    and does in mixed ones: so only grouping lets the discriminator tell it from the real faces."""
    torch.manual_seed(0)
    faces, classes, batch = 12, 5, 8
    real = Cells(torch.rand(faces, classes, 1, 8, 8) * 2 - 1)
    d = Discriminator(8, 1, classes, (8, 8))
    group = deviation_group(batch)
    x_real, labels = real.draw(batch, torch.Generator().manual_seed(1), torch.device("cpu"), group)
    assert (labels.reshape(group, -1) == labels[: batch // group]).all()
    collapsed = real.real[0]  # every seed draws face 0
    grouped = deviation_seen(d, collapsed[labels], labels)
    assert torch.all(grouped == 0) and torch.all(deviation_seen(d, x_real, labels) > 0)
    mixed = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])  # groups {0, 4}, {1, 0}, {2, 1}, {3, 2}: mixed characters
    assert torch.all(deviation_seen(d, collapsed[mixed], mixed) > 0)


def test_group_characters_trains_differently_and_is_kept_in_the_package(tmp_path):
    plain, _ = train(tmp_path, "plain")
    grouped, _ = train(tmp_path, "grouped", "group_characters = true\n")
    assert differ(weights(plain), weights(grouped))
    again, _ = train(tmp_path, "again", "group_characters = true\n")
    assert not differ(weights(grouped), weights(again))  # seeded: the run reproduces
    assert read_recipe(grouped / "recipe.toml").train["group_characters"] is True  # the package keeps it


def test_group_characters_is_refused_for_pictures_without_characters(tmp_path):
    tables = folder_recipe(pictures(tmp_path / "pictures", n=12), "mine", size=8, steps=2, batch=4)
    tables["train"]["group_characters"] = True
    path = tmp_path / "recipe.toml"
    dump_recipe(path, {"trainer": "folder-gan", **tables})
    with pytest.raises(RecipeError, match="needs characters to group") as err:
        registry.run(read_recipe(path), tmp_path / "out", tmp_path / "run", log=lambda s: None)
    assert "train.group_characters" in str(err.value)


# --- diversity-sensitive regularisation ---------------------------------------------------------------------------


def test_pair_diversity_pairs_one_characters_seeds_and_divides_by_their_latents():
    labels = grouped_labels(62, 8, 4, torch.Generator().manual_seed(0))
    z = torch.randn(8, 16)
    x = torch.zeros(8, 1, 4, 4)
    x[2:4] = 0.5  # group 1 (elements 2, 3 of the 4 × 2 layout) is lighter than group 0 (elements 0, 1)
    x[6:8] = 0.3  # group 3 against group 2 (elements 4, 5)
    ratio = pair_diversity(x, z, 4)
    pairs = [(0, 2), (1, 3), (4, 6), (5, 7)]  # i with i + B / groups: the same character
    assert all(labels[i] == labels[j] for i, j in pairs)
    want = torch.tensor([abs(float(x[i].mean() - x[j].mean())) / float((z[i] - z[j]).abs().mean()) for i, j in pairs])
    torch.testing.assert_close(ratio, want)
    assert torch.all(pair_diversity(torch.ones(8, 1, 4, 4), z, 4) == 0)  # one drawing for every seed: nothing


def test_diversity_regularisation_trains_differently(tmp_path):
    grouped, _ = train(tmp_path, "grouped", "group_characters = true\n")
    # a cap above any ratio these pictures reach: the reward acts from the first step (under the cap it is flat)
    diverse, _ = train(tmp_path, "diverse", "group_characters = true\ndiversity_weight = 2.0\ndiversity_cap = 100\n")
    assert differ(weights(grouped), weights(diverse))
    capped, _ = train(tmp_path, "capped", "group_characters = true\ndiversity_weight = 2.0\ndiversity_cap = 1e-6\n")
    assert not differ(weights(grouped), weights(capped))  # every pair past the cap: no gradient, the same run

"""Training end to end on a tiny recipe: real fonts, a few steps, a package the app can load; resume; bad recipes."""

from __future__ import annotations

import glob
import os
import textwrap
from pathlib import Path

import pytest
import torch

from studio.cli import main
from studio.errors import RecipeError
from studio.library import load_model, resolve
from studio.request import RenderRequest
from studio.train.common import lr_at
from studio.train.fonts import CHARSET
from studio.train.loops.vae import schedule
from studio.train.recipe import read_recipe
from studio.train.scoring.glyphs import lenient_correct

DEJAVU = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/*.ttf"))
LIBERATION = sorted(glob.glob("/usr/share/fonts/truetype/liberation*/*.ttf"))
needs_fonts = pytest.mark.skipif(len(DEJAVU) + len(LIBERATION) < 6, reason="needs fonts-dejavu and fonts-liberation")


def write_recipe(folder: Path, steps: int = 6, packages: list[str] | None = None, **train) -> Path:
    extra = "".join(f"{k} = {v!r}\n" for k, v in train.items())
    text = textwrap.dedent(f"""\
        trainer = "glyph-vae"
        [package]
        id = "tiny-glyphs"
        name = "Tiny glyphs"
        version = "0.0.1"
        license = "CC0-1.0"
        default_prompt = "Ab"
        [data]
        size = 16
        heldout_fraction = 0.3
        packages = {packages or []!r}
        font_files = ["/usr/share/fonts/truetype/dejavu/*.ttf", "/usr/share/fonts/truetype/liberation*/*.ttf"]
        [model]
        latent_dim = 4
        width = 4
        class_dim = 4
        hidden = 16
        [train]
        steps = {steps}
        batch_fonts = 4
        targets = 3
        context = [1, 3]
        checkpoint_every = 3
        """) + extra + textwrap.dedent("""\
        [evaluate]
        classifier_steps = 3
        prior_samples = 32
        """)
    path = folder / "recipe.toml"
    path.write_text(text)
    return path


@needs_fonts
def test_train_writes_a_package_the_app_renders(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "pkg"
    assert main(["train", str(recipe), "--out", str(out), "--run-dir", str(tmp_path / "run")]) == 0
    err = capsys.readouterr()
    assert "6/6" in err.err  # the progress bar reached the end
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # an ordinary folder, not mkdtemp's private one
    for name in ("model.toml", "weights.safetensors", "directions.safetensors", "preview.png", "recipe.toml"):
        assert (out / name).exists(), name
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask
    entry = resolve(str(out))
    quality = entry.manifest.training["quality"]
    for key in ("heldout_recon_mse_from_8_glyphs", "prior_sample_accuracy", "classifier_accuracy_heldout_real"):
        assert 0.0 <= quality[key] <= 1.0
    assert entry.manifest.conditions.labels == tuple(CHARSET)
    assert (out / "recipe.toml").read_text() == recipe.read_text()
    model = load_model(entry)
    image = model.family.render(model, RenderRequest(model_id=entry.id, params={"prompt": "Hi"}))
    try:
        while True:
            next(image)
    except StopIteration as stop:
        assert stop.value.data.shape == (16, 32, 1)
    assert model.directions is not None and len(model.directions) == 4


@needs_fonts
def test_resume_continues_from_the_checkpoint(tmp_path, capsys):
    recipe = write_recipe(tmp_path, steps=6)
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(tmp_path / "a"), "--run-dir", str(run)]) == 0
    straight = (tmp_path / "a" / "weights.safetensors").read_bytes()
    # Stop after 3 steps (the checkpoint), then resume to 6: the same weights as one straight run.
    recipe3 = recipe
    run2 = tmp_path / "run2"
    from studio.train import common, registry

    real = common.Checkpoint.save
    calls = []

    def stop_after_first(self, step):
        real(self, step)
        calls.append(step)
        if step == 3:
            raise KeyboardInterrupt

    common.Checkpoint.save = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            registry.run(read_recipe(recipe3), tmp_path / "b", run2, log=lambda s: None)
    finally:
        common.Checkpoint.save = real
    assert calls == [3] and not (tmp_path / "b").exists()
    assert main(["train", str(recipe3), "--out", str(tmp_path / "b"), "--run-dir", str(run2), "--resume"]) == 0
    assert "resumed" in capsys.readouterr().out
    assert (tmp_path / "b" / "weights.safetensors").read_bytes() == straight


def test_missing_font_packages_are_named(tmp_path, capsys):
    recipe = write_recipe(tmp_path, packages=["fonts-dejavu", "fonts-surely-not-a-real-package-xyz"])
    assert main(["train", str(recipe), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "fonts-surely-not-a-real-package-xyz" in err and str(recipe) in err and "apt-get install" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_recipe_errors_name_file_and_field(tmp_path):
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace("steps = 6", 'steps = "six"'))
    with pytest.raises(RecipeError, match=r"\[train\.steps\]") as info:
        schedule(read_recipe(recipe))
    assert str(recipe) in str(info.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("trainer = [")
    with pytest.raises(RecipeError, match="not valid TOML"):
        read_recipe(bad)


def test_learning_rate_schedule_warms_up_and_decays(tmp_path):
    s = schedule(read_recipe(write_recipe(tmp_path, steps=1000)))
    lrs = [lr_at(i, s.steps, s.lr, s.warmup) for i in range(1000)]
    assert lrs[0] < lrs[25] and max(lrs) <= s.lr + 1e-12 and lrs[-1] < 0.01 * s.lr


def test_lenient_accuracy_merges_only_confusable_shapes():
    idx = CHARSET.index
    pred = torch.tensor([idx("l"), idx("0"), idx("a"), idx("c")])
    want = torch.tensor([idx("I"), idx("O"), idx("b"), idx("C")])
    assert lenient_correct(pred, want).tolist() == [True, True, False, True]

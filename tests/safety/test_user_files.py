"""Nothing of the user's is deleted or overwritten by accident (issue 16, point 8).

`--force` replaces only a model package (or, for `import --sd`, a Stable Diffusion .safetensors file): a folder of the
user's at the target is refused, naming it, and left as it was. Temporaries are unique names of ours, so a sibling
such as `<out>.partial` or `<out>.tmp` is never touched. Ids and names that become path components (`--id`, a recipe's
[package.id], `--out`'s last part) are checked before any path is built. A killed export's temporaries are swept by
the next export into that folder, and only those.

The CLI cases run the real command in a subprocess (under a timeout) and check: exit 1, one line naming the file or
field, no traceback, nothing written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import make_tiny_package
from studio.errors import StudioError
from studio.io import atomic
from studio.io.atomic import STALE_SECONDS, is_stale_temporary, sweep_stale, temporary_beside
from studio.io.package import NOT_A_PACKAGE, check_replaceable, is_model_package, write_package

REPO = Path(__file__).resolve().parents[2]


class Generator(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z[:, :48]).reshape(-1, 3, 4, 4)


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "gen.pt"
    torch.jit.save(torch.jit.script(Generator()), str(path))
    return path


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The CLI's environment: user folders under tmp_path, no shipped models."""
    (tmp_path / "shipped").mkdir()
    return {**os.environ, "PYTHONPATH": str(REPO), "LATENT_STUDIO_DATA": str(tmp_path / "data"),
            "LATENT_STUDIO_CACHE": str(tmp_path / "cache"), "LATENT_STUDIO_SHIPPED_MODELS": str(tmp_path / "shipped"),
            "QT_QPA_PLATFORM": "offscreen"}


def cli(env: dict[str, str], *argv, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["timeout", "120", sys.executable, "-m", "studio", *map(str, argv)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=150)


def refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The one-line error of a refused command (exit 1, no traceback), which must contain every one of `words`."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latent-studio: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (hidden ones too) with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def wrap(env, generator, *extra):
    return cli(env, "wrap", generator, "--latent", "64", "--image", "4x4x3", *extra)


# --- wrap ----------------------------------------------------------------------------------------------------------


def test_wrap_force_refuses_a_folder_that_is_not_a_package(tmp_path, env, generator):
    mine = tmp_path / "work" / "gen"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("four years of work")
    (mine / "model.toml").write_text("not a manifest = [")  # a model.toml is not enough: it must read as one
    before = tree(tmp_path / "work")
    line = refused(wrap(env, generator, "--out", mine, "--force"), str(mine), NOT_A_PACKAGE)
    assert "refusing to replace it" in line
    assert tree(tmp_path / "work") == before  # intact, and no temporary left beside it


def test_wrap_leaves_a_sibling_named_like_the_old_temporary_alone(tmp_path, env, generator):
    models = tmp_path / "models"
    sibling = models / "gen.partial"
    sibling.mkdir(parents=True)
    (sibling / "keep.txt").write_text("mine")
    proc = wrap(env, generator, "--out", models / "gen")
    assert proc.returncode == 0, proc.stderr
    assert (sibling / "keep.txt").read_text() == "mine"
    assert is_model_package(models / "gen")
    assert sorted(p.name for p in models.iterdir()) == ["gen", "gen.partial"]  # no temporary left
    # --force onto the package it made replaces it, and again leaves nothing beside it
    (models / "gen" / "generator.pt").write_bytes(b"stale")
    proc = wrap(env, generator, "--out", models / "gen", "--force")
    assert proc.returncode == 0, proc.stderr
    assert (models / "gen" / "generator.pt").read_bytes() == generator.read_bytes()
    assert sorted(p.name for p in models.iterdir()) == ["gen", "gen.partial"]
    assert (sibling / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("bad_id", ["../victim", "..", ".hidden"])
def test_wrap_id_is_checked_before_any_path_is_made(tmp_path, env, generator, bad_id):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    (tmp_path / "data" / "models").mkdir(parents=True)
    before = tree(tmp_path)
    refused(wrap(env, generator, "--id", bad_id, "--force"), "--id", "package id")
    assert tree(tmp_path) == before  # nothing made, nothing removed, inside or outside the models folder


# --- import --------------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_checkpoint(tmp_path) -> tuple[Path, Path]:
    """A models folder with the tiny package, and a .pt state dict that fits its architecture."""
    from studio.io.weights import read_tensors

    models = tmp_path / "models"
    package = make_tiny_package(models / "tiny")
    checkpoint = tmp_path / "fine-tuned.pt"
    torch.save(dict(read_tensors(package / "weights.safetensors")), checkpoint)
    return models, checkpoint


def test_import_force_refuses_a_folder_that_is_not_a_package(tmp_path, env, tiny_checkpoint):
    models, checkpoint = tiny_checkpoint
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    before = tree(tmp_path)
    refused(cli(env, "import", checkpoint, "--like", "tiny", "--models-dir", models, "--out", mine, "--force"),
            str(mine), NOT_A_PACKAGE)
    assert tree(tmp_path) == before
    # onto a package, --force replaces it
    proc = cli(env, "import", checkpoint, "--like", "tiny", "--models-dir", models, "--out", tmp_path / "new")
    assert proc.returncode == 0, proc.stderr
    proc = cli(env, "import", checkpoint, "--like", "tiny", "--models-dir", models, "--out", tmp_path / "new",
               "--force", "--name", "Again")
    assert proc.returncode == 0, proc.stderr
    assert 'name = "Again"' in (tmp_path / "new" / "model.toml").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_import_id_is_checked_before_any_path_is_made(tmp_path, env, tiny_checkpoint):
    models, checkpoint = tiny_checkpoint
    before = tree(tmp_path)
    refused(cli(env, "import", checkpoint, "--like", "tiny", "--models-dir", models, "--id", "../../escape"),
            "--id", "'../../escape'")
    assert tree(tmp_path) == before


def test_import_sd_force_replaces_only_a_stable_diffusion_file(tmp_path, env):
    from studio.families.stable_diffusion.files import SD1_TEXT_KEY, UNET_KEY

    checkpoint = tmp_path / "tiny-sd.ckpt"
    torch.save({"state_dict": {UNET_KEY: torch.zeros(2, 4, 3, 3), SD1_TEXT_KEY: torch.zeros(8, 4)}}, checkpoint)
    out = tmp_path / "tiny-sd.safetensors"
    out.write_text("my notes, not weights")
    (tmp_path / "tiny-sd.safetensors.tmp").write_text("mine too")  # the old fixed temporary name
    before = tree(tmp_path)
    refused(cli(env, "import", checkpoint, "--sd", "--force"), str(out), "--out",
            "is not a Stable Diffusion .safetensors file; refusing to replace it")
    assert tree(tmp_path) == before
    out.unlink()
    proc = cli(env, "import", checkpoint, "--sd")
    assert proc.returncode == 0, proc.stderr
    proc = cli(env, "import", checkpoint, "--sd", "--force")  # its own output: replaced
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tiny-sd.safetensors.tmp").read_text() == "mine too"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


# --- recipes -------------------------------------------------------------------------------------------------------


def test_a_recipe_package_id_that_is_a_path_is_refused_before_anything_is_made(tmp_path, env):
    text = (REPO / "recipes" / "glyphs.toml").read_text(encoding="utf-8").replace('id = "glyphs"', 'id = "../x"', 1)
    recipe = tmp_path / "evil.toml"
    recipe.write_text(text, encoding="utf-8")
    work = tmp_path / "work"
    (work / "x").mkdir(parents=True)
    (work / "x" / "keep.txt").write_text("mine")
    before = tree(tmp_path)
    refused(cli(env, "train", recipe, cwd=work), f"{recipe} [package.id]", "'../x'")
    assert tree(tmp_path) == before


def test_read_recipe_names_the_field(tmp_path):
    from studio.errors import RecipeError
    from studio.train.recipe import read_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('trainer = "glyph-vae"\n[package]\nid = "a/b"\nname = "n"\nversion = "1"\nlicense = "x"\n'
                      "[data]\n[train]\n")
    with pytest.raises(RecipeError, match=r"r\.toml \[package\.id\]: the package id 'a/b' may not contain"):
        read_recipe(recipe)


def test_training_refuses_to_replace_a_folder_that_is_not_a_package(tmp_path):
    from studio.errors import RecipeError
    from studio.train import registry
    from studio.train.recipe import read_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('trainer = "glyph-vae"\n[package]\nid = "ok"\nname = "n"\nversion = "1"\nlicense = "x"\n'
                      "[data]\n[train]\n")
    mine = tmp_path / "out"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(RecipeError, match="is not a model package; refusing to replace it"):
        registry.run(read_recipe(recipe), mine, tmp_path / "run")  # refused before any training starts
    assert (mine / "keep.txt").read_text() == "mine" and not (tmp_path / "run").exists()


# --- the package writer ----------------------------------------------------------------------------------------------


def test_write_package_replaces_a_package_but_never_anything_else(tmp_path):
    package = make_tiny_package(tmp_path / "tiny")
    assert is_model_package(package)
    make_tiny_package(tmp_path / "tiny", seed=3)  # a package is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    for name, make in (("file", lambda p: p.write_text("mine")),
                       ("folder", lambda p: (p.mkdir(), (p / "keep.txt").write_text("mine"))),
                       ("link", lambda p: p.symlink_to(package, target_is_directory=True))):
        target = tmp_path / name
        make(target)
        before = tree(tmp_path)
        with pytest.raises(StudioError, match=NOT_A_PACKAGE):
            make_tiny_package(target)
        assert tree(tmp_path) == before, name
    with pytest.raises(StudioError, match=NOT_A_PACKAGE):
        check_replaceable(tmp_path / "folder")
    assert check_replaceable(tmp_path / "new") == tmp_path / "new"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_model_toml_is_not_a_package_and_does_not_block(tmp_path):
    folder = tmp_path / "trap"
    folder.mkdir()
    os.mkfifo(folder / "model.toml")
    assert not is_model_package(folder)  # returns at once: a blocking open would hang here
    with pytest.raises(StudioError, match=NOT_A_PACKAGE):
        write_package(folder, {}, {})


# --- stale temporaries ---------------------------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_our_temporaries_of_dead_processes(tmp_path):
    gone = dead_pid()
    ours_dead = tmp_path / f".walk.mp4.pid{gone}.abc_1234.part.mp4"
    ours_dead_folder = tmp_path / f".frames.pid{gone}.zz99yy88.part"
    ours_alive = tmp_path / f".walk.mp4.pid{os.getpid()}.abcd1234.part.mp4"
    ours_old = tmp_path / f".old.png.pid{os.getpid()}.abcd1234.part.png"
    users = [tmp_path / ".notes.chapter1.part",  # no pid marker
             tmp_path / f".walk.mp4.{gone}.abcd1234.part.mp4",  # a pid, but not our marker
             tmp_path / f".walk.mp4.pid{gone}.abcd1234.part.txt",  # not the name's own suffix
             tmp_path / f"walk.mp4.pid{gone}.abcd1234.part.mp4",  # not hidden
             tmp_path / f".walk.mp4.pid{gone}.abcd12345.part.mp4"]  # not mkstemp's 8 characters
    for path in [ours_dead, ours_alive, ours_old, *users]:
        path.write_bytes(b"x")
    ours_dead_folder.mkdir()
    (ours_dead_folder / "frame-000001.png").write_bytes(b"x")
    day_ago = time.time() - STALE_SECONDS - 60
    os.utime(ours_old, (day_ago, day_ago))
    os.utime(users[0], (day_ago, day_ago))
    assert is_stale_temporary(ours_dead) and not is_stale_temporary(ours_alive)
    removed = sweep_stale(tmp_path)
    assert sorted(removed) == sorted([ours_dead, ours_dead_folder, ours_old])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [ours_alive, *users])
    assert sweep_stale(tmp_path) == []  # once per process and folder


def test_temporaries_carry_the_pid_and_are_swept_at_the_next_export(tmp_path):
    stale = tmp_path / f".a.png.pid{dead_pid()}.abcdefgh.part.png"  # a kill -9 during an earlier export
    stale.write_bytes(b"half a picture")
    with atomic.atomic_path(tmp_path / "b.png") as tmp:  # what every picture, sound and project export does
        tmp.write_bytes(b"a picture")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png"]
    tmp = temporary_beside(tmp_path / "c.png", tmp_path)
    assert tmp.name.startswith(f".c.png.pid{os.getpid()}.") and tmp.name.endswith(".part.png")
    assert tmp in atomic.remove_live() and not tmp.exists()

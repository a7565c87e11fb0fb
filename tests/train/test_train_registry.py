"""The one trainer registry (studio.train.registry): every trainer a recipe names — the repository's recipes and the
shipped models' — resolves to a family loop fed by its data, the folder families map onto it, and no other module of
the app lists trainer names (the command line has no trainer table of its own)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import studio
from studio.errors import RecipeError
from studio.train import registry
from studio.train.recipe import read_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(ROOT.glob("recipes/*.toml")) + sorted(ROOT.glob("models/*/recipe.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_recipe_names_a_trainer_the_registry_runs(path):
    recipe = read_recipe(path)
    trainer = registry.get(recipe.trainer, recipe.path)
    assert trainer.name == recipe.trainer and trainer.loop in ("vae", "gan", "diffusion", "audio")
    assert trainer.data in ("glyphs", "sounds")  # the repository's recipes train on their own data
    assert callable(trainer.load().train)


def test_the_trainers_are_one_loop_per_family_fed_by_two_sources():
    by_loop: dict[str, set[str]] = {}
    for trainer in registry.TRAINERS.values():
        by_loop.setdefault(trainer.loop, set()).add("folder" if trainer.data == "folder" else "recipe")
    assert by_loop == {loop: {"recipe", "folder"} for loop in ("vae", "gan", "diffusion", "audio")}
    assert registry.FOLDER_FAMILIES == ("vae", "gan", "diffusion", "audio")
    for family in registry.FOLDER_FAMILIES:
        trainer = registry.for_folder(family)
        assert trainer.data == "folder" and registry.family_of_run(trainer.name) == family
        assert callable(trainer.load().folder_recipe)
    assert registry.family_of_run("glyph-gan") is None and registry.family_of_run("no-such") is None


def test_unknown_trainers_and_families_are_named(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown trainer 'glyph-flow' \(known: glyph-vae, ") as info:
        registry.get("glyph-flow", tmp_path / "recipe.toml")
    assert info.value.field == "trainer" and str(tmp_path / "recipe.toml") in str(info.value)
    with pytest.raises(RecipeError, match="unknown family 'flow'"):
        registry.for_folder("flow")


def test_the_registry_is_the_only_place_trainer_names_are_listed():
    """No module of the app spells a trainer's name but the registry (the command line looks trainers up there)."""
    package = Path(studio.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in registry.TRAINERS:
                found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert found and all(place.startswith("train/registry.py:") for place in found), found
    cli = (package / "cli.py").read_text(encoding="utf-8")
    assert "studio.train.loops" not in cli and "registry.run(" in cli


def test_importing_the_registry_imports_no_trainer():
    code = "import sys, studio.train.registry; print(sorted(m for m in sys.modules if m.startswith(('torch', " \
           "'studio.train.loops'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}).stdout
    assert out.strip() == "[]"

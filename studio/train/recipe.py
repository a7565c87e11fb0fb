"""Training recipes: `recipe.toml` names the trainer, its data, the model and the schedule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import RecipeError
from studio.files import check_name
from studio.manifest import TomlReader, read_toml


@dataclass(frozen=True)
class Recipe:
    path: Path
    trainer: str
    package: dict[str, Any]  # id, name, version, license, description
    data: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    evaluate: dict[str, Any]
    text: str  # the file as written, copied into the package

    def reader(self) -> TomlReader:
        return TomlReader(self.path, RecipeError)


def read_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    data = read_toml(path, RecipeError)
    r = TomlReader(path, RecipeError)
    trainer = r.get(data, "trainer", str)
    package = r.get(data, "package", dict)
    for key in ("id", "name", "version", "license"):
        r.get(package, key, str, "package.")
    check_name(package["id"], "package id", RecipeError, path, "package.id")  # it names the run and package folders
    return Recipe(path=path, trainer=trainer, package=package, data=r.get(data, "data", dict),
                  model=r.get(data, "model", dict, required=False, default={}),
                  train=r.get(data, "train", dict), evaluate=r.get(data, "evaluate", dict, required=False, default={}),
                  text=path.read_text(encoding="utf-8"))

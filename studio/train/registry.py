"""Every trainer a recipe can name, in one table: `trainer = "…"` → the family's training loop
(studio.train.loops.<loop>) and the data it is fed — the recipe's own (font glyphs, procedural sounds) or a folder of
the user's pictures or sounds. The command line (`latent-studio train RECIPE.toml`, `train --family X --data FOLDER`)
and the app's training dialog find trainers here and nowhere else.

The loops are imported when a recipe runs (importlib), so importing this module costs nothing (no torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from studio.errors import RecipeError


@dataclass(frozen=True)
class Trainer:
    name: str  # as a recipe names it: trainer = "…"
    loop: str  # the family's loop: studio.train.loops.<loop>
    data: str  # what feeds the loop: "glyphs" or "sounds" (the recipe's own), "folder" (the user's)
    folder_family: str = ""  # the --family that trains on a folder with it (folder trainers only)

    @property
    def module(self) -> str:
        return f"studio.train.loops.{self.loop}"

    def load(self) -> ModuleType:
        """The loop's module (imports torch)."""
        return importlib.import_module(self.module)


TRAINERS: dict[str, Trainer] = {t.name: t for t in (
    Trainer("glyph-vae", "vae", "glyphs"),
    Trainer("folder-vae", "vae", "folder", "vae"),
    Trainer("glyph-gan", "gan", "glyphs"),
    Trainer("folder-gan", "gan", "folder", "gan"),
    Trainer("glyph-diffusion", "diffusion", "glyphs"),
    Trainer("folder-diffusion", "diffusion", "folder", "diffusion"),
    Trainer("sound-vae", "audio", "sounds"),
    Trainer("folder-audio", "audio", "folder", "audio"),
)}
FOLDER_FAMILIES = tuple(t.folder_family for t in TRAINERS.values() if t.folder_family)  # vae, gan, diffusion, audio


def names() -> tuple[str, ...]:
    return tuple(TRAINERS)


def get(name: str, path: str | Path | None = None) -> Trainer:
    """The trainer a recipe names; RecipeError naming the recipe's field when there is none of that name."""
    try:
        return TRAINERS[name]
    except KeyError:
        raise RecipeError(f"unknown trainer {name!r} (known: {', '.join(TRAINERS)})", path, "trainer") from None


def for_folder(family: str) -> Trainer:
    """The trainer `train --family FAMILY --data FOLDER` runs."""
    for trainer in TRAINERS.values():
        if trainer.folder_family and trainer.folder_family == family:
            return trainer
    raise RecipeError(f"unknown family {family!r}: train on your own data with one of {', '.join(FOLDER_FAMILIES)}",
                      None, "family")


def family_of_run(name: str) -> str | None:
    """The --family of a folder trainer's run (None for a recipe's own trainer or an unknown name)."""
    trainer = TRAINERS.get(name)
    return trainer.folder_family or None if trainer is not None else None


def run(recipe, out: str | Path, run_dir: str | Path, resume: bool = False, log: Callable[[str], None] = print,
        monitor=None) -> Path:
    """Train `recipe` (a studio.train.recipe.Recipe) with the trainer it names; the package folder `out`. Checkpoints
    go to `run_dir`; with `resume` the run continues from the checkpoint there. A `monitor`
    (studio.train.monitor.Monitor) sees every step and a sample now and then, and can pause or cancel the run
    (TrainingStopped); without one, progress is printed and `log` gets the messages."""
    from studio.files import check_name
    from studio.io.package import check_replaceable
    from studio.train.monitor import Monitor

    trainer = get(recipe.trainer, recipe.path)
    check_name(recipe.package["id"], "package id", RecipeError, recipe.path, "package.id")
    check_replaceable(out, RecipeError)  # refused now, not after the run: only a model package is replaced
    return trainer.load().train(recipe, Path(out), Path(run_dir), data=trainer.data, resume=resume,
                                monitor=monitor or Monitor(log))

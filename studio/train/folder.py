"""Train a model on your own data: a folder of pictures (a VAE, a GAN or a diffusion model) or of sounds (an audio
VAE), into a model package the app opens like the shipped ones.

`train_folder(folder, out, run_dir, model_id, family=…)` is the one entry point (`latent-studio train --family
vae|gan|diffusion|audio --data FOLDER …` and the app's training dialog call it): it writes the recipe of the family's
folder trainer (studio.train.registry) into the run folder and runs it, so a run is reproducible and resumable like
the shipped models' runs (the recipe is kept in the package). `scan_folder(folder, family)` says quickly what a folder
holds before training; `family_defaults(family)` the settings a family takes, with their defaults.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from studio.errors import RecipeError
from studio.train import registry
from studio.train.data.folders import MIN_FILES, FolderSummary, dump_recipe, scan_images, scan_sounds
from studio.train.monitor import Monitor
from studio.train.recipe import read_recipe

_NOT_SETTINGS = ("folder", "model_id")  # the recipe maker's arguments that are not the artist's settings


def _recipe_tables(family: str) -> Callable[..., dict]:
    """The family's maker of the recipe for a folder: `folder_recipe(folder, model_id, **settings)` → its tables."""
    return registry.for_folder(family).load().folder_recipe


def family_defaults(family: str) -> dict[str, object]:
    """The settings `train_folder` takes for `family`, with the family's defaults (its recipe maker's keywords):
    what a dialog offers before training."""
    return {name: p.default for name, p in inspect.signature(_recipe_tables(family)).parameters.items()
            if name not in _NOT_SETTINGS}


def scan_folder(folder: str | Path, family: str) -> FolderSummary:
    """What `folder` holds for `family` (pictures for vae, gan and diffusion; sounds for audio), from the files'
    headers only: quick enough to show in a dialog before training. RecipeError naming the folder when nothing is
    usable; a summary whose `enough` is False when there are fewer files than the family needs."""
    folder = Path(folder)
    registry.for_folder(family)
    if not folder.is_dir():
        raise RecipeError("not a folder" if folder.exists() else "no such folder", folder, "data.folder")
    scan = scan_sounds if family == "audio" else scan_images
    return scan(folder, family, MIN_FILES[family])


def train_folder(folder: str | Path, out: Path, run_dir: Path, model_id: str, *, family: str = "vae",
                 resume: bool = False, log: Callable[[str], None] = print, monitor: Monitor | None = None,
                 **settings) -> Path:
    """What `latent-studio train --family FAMILY --data FOLDER` runs: the family's recipe written to the run folder
    (settings such as size, steps, batch, device; None means the family's default), then run. With `resume` the run
    folder's own recipe is run again from its checkpoint (the settings are not used then). A `monitor` sees every
    step and a sample now and then, and can pause (TrainingStopped; resume=True continues) — see
    studio.train.monitor. Returns the package folder `out`."""
    trainer = registry.for_folder(family)
    run_dir, out = Path(run_dir), Path(out)
    recipe_path = run_dir / "recipe.toml"
    settings = {k: v for k, v in settings.items() if v is not None}
    if not (resume and recipe_path.exists()):
        tables = _recipe_tables(family)
        known = [n for n in inspect.signature(tables).parameters if n not in _NOT_SETTINGS]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise RecipeError(f"the {family} trainer has no setting {', '.join(map(repr, unknown))} (it has: "
                              f"{', '.join(known)})")
        dump_recipe(recipe_path, {"trainer": trainer.name, **tables(Path(folder), model_id, **settings)})
    recipe = read_recipe(recipe_path)
    if recipe.trainer != trainer.name:
        raise RecipeError(f"this run folder holds a {recipe.trainer!r} run, not a {family} one: resume it as that "
                          f"family, or train in another run folder", recipe_path, "trainer")
    return registry.run(recipe, out, run_dir, resume=resume, log=log, monitor=monitor)

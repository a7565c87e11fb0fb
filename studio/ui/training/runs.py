"""What the training dialog knows about runs, without Qt: package ids, the run folders in the user data folder, what a
kept checkpoint says about its run (from its safetensors header alone, through studio.io.weights), the families the
folder trainers offer (studio.train.registry), and the calls into studio.train.folder (imported once the dialog
opens: it brings torch)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from studio.errors import StudioError
from studio.manifest import package_id_from, tomllib  # tomli on Python 3.10
from studio.paths import user_data_dir
from studio.io.safetensors import read_header

FAMILY_LABELS = {"vae": "VAE", "gan": "GAN", "diffusion": "Diffusion", "audio": "Sound"}
FAMILY_TIPS = {"vae": "A variational autoencoder: quick to train, smooth latent space, somewhat soft pictures",
               "gan": "A generative adversarial network: sharper pictures, longer and less steady training",
               "diffusion": "A diffusion model: the best pictures, the longest training and rendering",
               "audio": "A sound VAE: trains on a folder of short sounds"}
IMAGE_FAMILIES = ("vae", "gan", "diffusion")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # as model.toml's id
CHECKPOINT_NAME = "checkpoint.safetensors"


def slugify(name: str) -> str:
    """A package id from a folder name: lower-case [a-z0-9._-], at most 64 characters (as the CLI makes it)."""
    return package_id_from(name, "mine")


def clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def runs_dir() -> Path:
    return user_data_dir() / "runs"


@dataclass(frozen=True)
class RunInfo:
    """What a run's checkpoint says about the run: where it stopped and the recipe it follows."""

    step: int
    total: int  # 0 when the recipe does not say
    folder: str
    trainer: str
    size: int
    fit: str

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.step >= self.total

    @property
    def family(self) -> str | None:
        """The folder family the run trains (None when a recipe's own trainer made it)."""
        from studio.train.registry import family_of_run

        return family_of_run(self.trainer)


def read_checkpoint_info(path: Path) -> RunInfo | None:
    """The step and recipe of a checkpoint, from its safetensors header alone (cheap; no torch); None when there is
    no readable checkpoint."""
    try:
        meta = read_header(path).metadata
        recipe = tomllib.loads(meta.get("recipe", ""))
        data, train = recipe.get("data", {}), recipe.get("train", {})
        return RunInfo(int(meta["step"]), int(train.get("steps", 0)), str(data.get("folder", "")),
                       str(recipe.get("trainer", "")), int(data.get("size", 0)), str(data.get("fit", "")))
    except (StudioError, ValueError, KeyError, TypeError, AttributeError, tomllib.TOMLDecodeError):
        return None


def _folder_training():
    from studio.train import folder  # imports torch: only once the dialog is opened

    return folder


def available_families() -> tuple[str, ...]:
    """The families `train_folder` can train, in the dialog's order."""
    from studio.train.registry import FOLDER_FAMILIES

    return tuple(f for f in FAMILY_LABELS if f in FOLDER_FAMILIES)


def family_defaults(family: str) -> dict[str, object]:
    return _folder_training().family_defaults(family)


def scan_summary(folder: Path, family: str) -> tuple[bool, str]:
    """(Worker thread) what `folder` holds for `family` in one line, and whether it is enough to train on; RecipeError
    when nothing there is usable."""
    found = _folder_training().scan_folder(folder, family)
    if not found.enough:
        return False, (f"{found.summary}: a {FAMILY_LABELS.get(family, family)} needs at least {found.minimum} to "
                       "train on")
    return True, found.summary


def recipe_settings(family: str, wanted: dict) -> dict:
    """The settings in `wanted` that the family's trainer takes (the keywords of its recipe maker); the rest are
    left to its defaults."""
    known = family_defaults(family)
    return {k: v for k, v in wanted.items() if k in known}


def train_folder(**kwargs) -> Path:
    """(Training thread) `studio.train.folder.train_folder`."""
    return _folder_training().train_folder(**kwargs)

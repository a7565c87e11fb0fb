"""The glyph recipes' data: the fonts of Debian's packages rendered to glyphs (studio.train.fonts), split by font
family into training and held-out faces, and drawn as training batches — a random face's random character (GAN,
diffusion) or a set of one face's characters to encode its style from, with others of the face to draw (VAE)."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from studio.errors import RecipeError
from studio.paths import user_cache_dir
from studio.train.fonts import GlyphSet, find_font_files, load_or_build, missing_packages, split_by_family
from studio.train.recipe import Recipe


def load_fonts(recipe: Recipe, log: Callable[[str], None] = print) -> GlyphSet:
    """The recipe's glyph set; fails naming the Debian packages to install when any is missing."""
    r, d = recipe.reader(), recipe.data
    packages = r.get(d, "packages", list, "data.", required=False, default=[])
    missing = missing_packages(packages)
    if missing:
        raise RecipeError("these Debian font packages are not installed: " + " ".join(missing)
                          + "\n  install them with: sudo apt-get install -y " + " ".join(missing), recipe.path,
                          "data.packages")
    size = r.get(d, "size", int, "data.", required=False, default=64)
    patterns = r.get(d, "font_files", list, "data.", required=False, default=[])
    if patterns:
        base = recipe.path.parent
        files = sorted({str(p) for pat in patterns for p in glob.glob(str(base / pat) if not Path(pat).is_absolute()
                                                                       else pat, recursive=True)})
    else:
        roots = r.get(d, "roots", list, "data.", required=False, default=["/usr/share/fonts"])
        files = find_font_files(roots)
    if not files:
        raise RecipeError("no font files found", recipe.path, "data")
    cache = user_cache_dir() / f"glyphs{size}-{recipe.package['id']}.npz"
    log(f"fonts: {len(files)} files; glyph cache {cache}")
    glyphs = load_or_build(cache, font_files=files, size=size)
    log(f"fonts: {len(glyphs.faces)} usable faces")
    return glyphs


@dataclass
class GlyphData:
    glyphs: GlyphSet
    train: torch.Tensor  # (F, 62, S, S) uint8, 255 = ink
    held: torch.Tensor
    train_idx: np.ndarray
    held_idx: np.ndarray

    @property
    def heldout_families(self) -> list[str]:
        return sorted({self.glyphs.faces[i].family for i in self.held_idx})

    def summary(self) -> dict:
        """What a package's training table says about the data."""
        return {"training_faces": len(self.train_idx), "heldout_faces": len(self.held_idx),
                "heldout_families": self.heldout_families}


def glyph_data(recipe: Recipe, seed: int, log: Callable[[str], None] = print) -> GlyphData:
    """The recipe's fonts split by family: a seeded share held out (data.heldout_fraction), or the families another
    package held out (data.heldout_like), so that models of different families are scored on the same designs."""
    glyphs = load_fonts(recipe, log)
    r = recipe.reader()
    same_as = r.get(recipe.data, "heldout_like", str, "data.", required=False, default="")
    if same_as:
        train_idx, held_idx = split_like(glyphs, recipe, same_as)
    else:
        fraction = float(recipe.data.get("heldout_fraction", 0.1))
        train_idx, held_idx = split_by_family(glyphs, heldout_fraction=fraction, seed=seed)
    data = torch.from_numpy(glyphs.images)
    out = GlyphData(glyphs, data[torch.as_tensor(train_idx)], data[torch.as_tensor(held_idx)], train_idx, held_idx)
    log(f"split: {len(train_idx)} training faces, {len(held_idx)} held-out faces "
        f"({len(out.heldout_families)} unseen families)")
    return out


def split_like(glyphs: GlyphSet, recipe: Recipe, package: str) -> tuple[np.ndarray, np.ndarray]:
    """Hold out the font families another package held out (its model.toml's training.heldout_families), so
    that models of different families are scored on the same unseen designs."""
    from studio.manifest import read_toml

    folder = Path(package)
    if not folder.is_absolute() and not folder.exists():
        folder = recipe.path.parent.parent / package
    manifest = read_toml(folder / "model.toml", RecipeError)
    families = set(manifest.get("training", {}).get("heldout_families", []))
    if not families:
        raise RecipeError(f"{folder / 'model.toml'} lists no training.heldout_families", recipe.path,
                          "data.heldout_like")
    held = np.array([i for i, f in enumerate(glyphs.faces) if f.family in families], dtype=np.int64)
    train = np.array([i for i, f in enumerate(glyphs.faces) if f.family not in families], dtype=np.int64)
    if not len(held):
        raise RecipeError(f"none of the fonts installed here belongs to the families {folder} held out",
                          recipe.path, "data.heldout_like")
    return train, held


def ink_at(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 glyphs (..., 64, 64), 255 = ink → float (N, 1, size, size) in [0, 1], area-averaged."""
    x = images.reshape(-1, 1, *images.shape[-2:]).float() / 255.0
    factor = x.shape[-1] // size
    if factor < 1 or factor * size != x.shape[-1]:
        raise RecipeError(f"the glyphs are {x.shape[-1]} pixels, which does not scale down to the model's {size}: "
                          "make data.size a multiple of model.image_size")
    return F.avg_pool2d(x, factor) if factor > 1 else x


def ink_sheet(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of ink cells laid side by side ((N, S, S) each, 1 = ink) → a preview sheet, ink on paper, uint8."""
    sheet = 1.0 - torch.cat([torch.cat(list(cells), dim=1) for cells in rows], dim=0)
    return (sheet.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


# --- batches --------------------------------------------------------------------------------------------------------


class Cells:
    """Glyphs (faces, characters, 1, S, S) in −1 … 1: a batch is a random face's random character, with the character
    as its label."""

    def __init__(self, real: torch.Tensor):
        self.real = real
        self.classes = real.shape[1]

    def draw(self, batch: int, gen: torch.Generator, device: torch.device,
             group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """`group` > 1: the batch holds batch / group characters, each drawn from `group` random faces, laid out as
        the discriminator's minibatch-deviation groups take them (element i is character i mod batch / group)."""
        f = torch.randint(0, len(self.real), (batch,), generator=gen).to(device)
        labels = grouped_labels(self.classes, batch, group, gen).to(device)
        return self.real[f, labels], labels


def grouped_labels(classes: int, batch: int, group: int, gen: torch.Generator) -> torch.Tensor:
    """Random characters for a batch; with `group` > 1, batch / group of them, each repeated `group` times so that
    elements i, i + batch / group, … share one (the layout of the minibatch-deviation groups)."""
    if group <= 1:
        return torch.randint(0, classes, (batch,), generator=gen)
    if batch % group:
        raise ValueError(f"a batch of {batch} does not split into groups of {group}")
    return torch.randint(0, classes, (batch // group,), generator=gen).repeat(group)


class StyleSets:
    """Glyphs (faces, characters, S, S) uint8: a batch is, per face drawn, a set of 1 … `context` of its characters
    that encodes its style and `targets` characters of the same face drawn in that style."""

    def __init__(self, glyphs: torch.Tensor, context: tuple[int, int], targets: int):
        self.glyphs, self.context, self.targets = glyphs, context, targets

    def draw(self, batch: int, gen: torch.Generator, device: torch.device):
        """(context (B, K, 1, S, S) in [0, 1], their characters (B, K), targets (B, T, 1, S, S), theirs (B, T))."""
        n_f, n_c = self.glyphs.shape[:2]
        k = int(torch.randint(self.context[0], self.context[1] + 1, (1,), generator=gen))
        fonts = torch.randint(0, n_f, (batch,), generator=gen)
        ctx = torch.stack([torch.randperm(n_c, generator=gen)[:k] for _ in range(batch)])
        tgt = torch.randint(0, n_c, (batch, self.targets), generator=gen)
        x_ctx = self.glyphs[fonts[:, None], ctx].float().unsqueeze(2) / 255.0
        x_tgt = self.glyphs[fonts[:, None], tgt].float().unsqueeze(2) / 255.0
        return x_ctx.to(device), ctx.to(device), x_tgt.to(device), tgt.to(device)

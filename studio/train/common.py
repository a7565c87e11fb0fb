"""What the glyph trainers of every family share: the split of the font data, the 32-pixel training images,
resumable checkpoints of several networks and optimisers, and the learning-rate curve."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.errors import RecipeError
from studio.train.fonts import GlyphSet, split_by_family
from studio.train.glyphs import load_fonts
from studio.train.recipe import Recipe
from studio.weights import read_tensors, write_tensors


@dataclass
class GlyphData:
    glyphs: GlyphSet
    train: torch.Tensor  # (F, 62, 64, 64) uint8, 255 = ink
    held: torch.Tensor
    train_idx: np.ndarray
    held_idx: np.ndarray

    @property
    def heldout_families(self) -> list[str]:
        return sorted({self.glyphs.faces[i].family for i in self.held_idx})


def glyph_data(recipe: Recipe, seed: int, log: Callable[[str], None] = print) -> GlyphData:
    """The recipe's fonts split by family exactly as the VAE's recipe splits them (same seed, same fraction)."""
    glyphs = load_fonts(recipe, log)  # the shipped recipes read 64-pixel glyphs, as the VAE's does
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


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then a cosine decay to zero."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


TRAINING_TABLES = ("trainer", "data", "model", "train")  # what decides the weights; [package] and [evaluate] do not


def same_training(text_a: str, text_b: str) -> bool:
    """Whether two recipe texts train the same network the same way (their packaging and evaluation may differ,
    so a finished run can be measured again or renamed without training it again)."""
    from studio.manifest import tomllib

    try:
        a, b = tomllib.loads(text_a), tomllib.loads(text_b)
    except tomllib.TOMLDecodeError:
        return False
    return all(a.get(k) == b.get(k) for k in TRAINING_TABLES)


def _fitted(module: nn.Module) -> set[str]:
    """A module's buffers that are fitted after training (a VAE's prior map): not training state, not checkpointed."""
    return set(getattr(module, "PRIOR_BUFFERS", ())) & set(module.state_dict())


class Checkpoint:
    """Networks, optimisers and the data generator of a run, saved every so often with safetensors (never pickle)
    and tied to the recipe text that made them. Buffers fitted after training (`PRIOR_BUFFERS`) are left out."""

    def __init__(self, path: Path, recipe: Recipe, modules: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer], gen: torch.Generator):
        self.path, self.recipe, self.modules, self.optimizers, self.gen = path, recipe, modules, optimizers, gen
        self.t0 = time.perf_counter()
        self.seconds_before = 0.0

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    def save(self, step: int) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self.modules.items():
            tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items() if k not in _fitted(module)})
        for name, opt in self.optimizers.items():
            for idx, st in opt.state_dict()["state"].items():
                for key, value in st.items():
                    tensors[f"opt-{name}.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        tensors["rng"] = self.gen.get_state()
        meta = {"step": str(step), "recipe": self.recipe.text, "format": "latent-studio-checkpoint-2",
                "seconds": f"{self.seconds:.1f}"}
        tmp = self.path.with_suffix(".tmp")
        write_tensors(tensors, tmp, metadata=meta)
        tmp.replace(self.path)

    def load(self) -> int:
        """Restore the run; the step it had reached."""
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != "latent-studio-checkpoint-2" or not same_training(meta.get("recipe", ""),
                                                                                     self.recipe.text):
            raise RecipeError("the checkpoint was made by a recipe that trains differently; remove it or train "
                              "with the recipe that made it", self.path)
        tensors = read_tensors(self.path)
        for name, module in self.modules.items():
            prefix = f"{name}."
            fitted = _fitted(module)
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            state = {k: v for k, v in state.items() if k not in fitted}
            try:
                missing, unexpected = module.load_state_dict(state, strict=False)
                if set(missing) - fitted or unexpected:
                    raise RuntimeError(f"missing {sorted(set(missing) - fitted)}, unexpected {sorted(unexpected)}")
            except RuntimeError as exc:
                raise RecipeError(f"the checkpoint does not fit the recipe's {name}: {exc}", self.path) from None
        for name, opt in self.optimizers.items():
            state = opt.state_dict()
            for idx in range(len(state["param_groups"][0]["params"])):
                prefix = f"opt-{name}.{idx}."
                entry = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                if entry:
                    state["state"][idx] = entry
            opt.load_state_dict(state)
        self.gen.set_state(tensors["rng"])
        self.seconds_before = float(meta.get("seconds", 0.0))
        self.t0 = time.perf_counter()
        return int(meta["step"])


def manifest_head(recipe: Recipe, family: str) -> dict:
    """The first fields of a trained package's model.toml: format, the recipe's [package] table and the family."""
    package = recipe.package
    return {"format": 1, "id": package["id"], "name": package["name"], "family": family,
            "version": package["version"], "license": package["license"],
            "description": package.get("description", "")}


def start_step(ckpt: "Checkpoint", resume: bool, log: Callable[[str], None]) -> int:
    """The step a run starts from: its checkpoint's when resuming one (said in the log), else 0."""
    start = ckpt.load() if resume and ckpt.path.exists() else 0
    if start:
        log(f"resumed from {ckpt.path} at step {start}")
    return start


def denoiser_step(net: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, xt: torch.Tensor, t: torch.Tensor,
                  noise: torch.Tensor, cond: torch.Tensor | None, precision, ema_decay: float) -> torch.Tensor:
    """One optimiser step of an ε-prediction network (MSE to the noise, gradients clipped at 1, then the EMA copy
    follows); `precision` is the autocast context to compute in. The loss, detached."""
    with precision:
        pred = net(xt, t.float()) if cond is None else net(xt, t.float(), cond)
    loss = torch.nn.functional.mse_loss(pred.float(), noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    ema_update(ema, net, ema_decay)
    return loss.detach()

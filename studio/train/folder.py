"""Train a VAE on your own pictures: a folder of PNG / JPEG / WebP / BMP images of any size, fitted to a square
(cropped, padded or stretched), grey or colour, into a model package the app opens like the shipped ones.

It is a recipe trainer (`trainer = "folder-vae"`), so a run is reproducible and resumable like the others;
`latent-studio train --family vae --data FOLDER …` writes the recipe for you.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import tomli_w
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from studio import __version__
from studio.errors import RecipeError
from studio.families.vae import SetVAE, elbo
from studio.latent.directions import Directions
from studio.train.common import Checkpoint, lr_at
from studio.train.package import write_package
from studio.train.monitor import Monitor, check_stop
from studio.train.recipe import Recipe, read_recipe

TRAINER = "folder-vae"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FITS = ("crop", "pad", "stretch")


def fit_image(image: Image.Image, size: int, fit: str) -> Image.Image:
    """A square `size` picture: the centre cropped, the whole padded with its edge colour, or stretched."""
    if fit == "crop":
        return ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)
    if fit == "pad":
        edge = np.asarray(image.convert("RGB"))
        border = np.concatenate([edge[0], edge[-1], edge[:, 0], edge[:, -1]]).mean(0).round().astype(int)
        colour = tuple(int(c) for c in border) if image.mode == "RGB" else int(border.mean())
        return ImageOps.pad(image, (size, size), Image.Resampling.LANCZOS, color=colour)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def load_image_folder(folder: str | Path, size: int, fit: str = "crop",
                      log: Callable[[str], None] = print) -> np.ndarray:
    """Every readable image under `folder`, fitted to size², as float32 (N, C, size, size) in [0, 1]; C is 1 when all
    are grey, else 3. RecipeError naming the folder when nothing usable is there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecipeError("not a folder", folder, "data.folder")
    if fit not in FITS:
        raise RecipeError(f"must be one of {', '.join(FITS)}, got {fit!r}", None, "data.fit")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    images, skipped = [], []
    for path in files:
        try:
            with Image.open(path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
                grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
                image = image.convert("L" if grey else "RGB")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            skipped.append(f"{path.name} ({type(exc).__name__})")
            continue
        images.append(fit_image(image, size, fit))
    if skipped:
        log(f"skipped {len(skipped)} unreadable file(s): {', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''}")
    if not images:
        found = f"{len(files)} image file(s), none readable" if files else "no PNG, JPEG, WebP or BMP files"
        raise RecipeError(f"no usable images: {found}", folder, "data.folder")
    colour = any(im.mode == "RGB" and not _is_grey(im) for im in images)
    arrays = [np.asarray(im.convert("RGB" if colour else "L"), dtype=np.float32) / 255.0 for im in images]
    data = np.stack(arrays)
    data = data.transpose(0, 3, 1, 2) if colour else data[:, None]
    log(f"{len(data)} images from {folder} at {size}×{size} ({'colour' if colour else 'grey'}, {fit})")
    return np.ascontiguousarray(data)


def _is_grey(image: Image.Image) -> bool:
    rgb = np.asarray(image, dtype=np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2 and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 2)


def write_recipe(path: Path, folder: Path, model_id: str, size: int = 64, steps: int = 2000, fit: str = "crop",
                 latent_dim: int = 16, batch: int = 64, name: str = "") -> Path:
    """The recipe `latent-studio train --family vae --data FOLDER` runs (kept in the package: the run reproduces)."""
    recipe = {
        "trainer": TRAINER,
        "package": {"id": model_id, "name": name or model_id, "version": "1.0.0",
                    "license": "the pictures' own licence", "description": f"A VAE trained on the pictures in {folder}."},
        "data": {"folder": str(folder.resolve()), "size": size, "fit": fit},
        "model": {"latent_dim": latent_dim, "width": 32, "hidden": 256},
        "train": {"seed": 0, "steps": steps, "batch": batch, "lr": 1e-3, "warmup": 100, "beta_warmup": 500,
                  "checkpoint_every": 100},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(recipe), encoding="utf-8")
    return path


def train(recipe: Recipe, out: Path, run_dir: Path, resume: bool = False,
          log: Callable[[str], None] = print, monitor: Monitor | None = None) -> Path:
    monitor = monitor or Monitor(log)
    log = monitor.log
    r, d, m, t = recipe.reader(), recipe.data, recipe.model, recipe.train
    size = r.get(d, "size", int, "data.", required=False, default=64)
    if size < 8 or 4 * 2 ** int(math.log2(size // 4)) != size:
        raise RecipeError(f"must be 8, 16, 32, 64, 128 or 256 (4·2^n), got {size}", recipe.path, "data.size")
    folder = Path(r.get(d, "folder", str, "data."))
    data = torch.from_numpy(load_image_folder(folder if folder.is_absolute() else recipe.path.parent / folder, size,
                                              r.get(d, "fit", str, "data.", required=False, default="crop"), log))
    steps = r.get(t, "steps", int, "train.")
    batch = r.get(t, "batch", int, "train.", required=False, default=64)
    lr = float(r.get(t, "lr", (int, float), "train.", required=False, default=1e-3))
    warmup = r.get(t, "warmup", int, "train.", required=False, default=100)
    beta_warmup = r.get(t, "beta_warmup", int, "train.", required=False, default=500)
    seed = r.get(t, "seed", int, "train.", required=False, default=0)
    every = r.get(t, "checkpoint_every", int, "train.", required=False, default=100)
    preview_every = r.get(t, "preview_every", int, "train.", required=False, default=max(1, steps // 20))
    latent_dim = r.get(m, "latent_dim", int, "model.", required=False, default=16)
    cfg = dict(image_size=size, channels=int(data.shape[1]), latent_dim=latent_dim, num_classes=0,
               width=r.get(m, "width", int, "model.", required=False, default=32),
               hidden=r.get(m, "hidden", int, "model.", required=False, default=256), fitted_prior=True)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=gen)
    held = order[:len(data) // 10] if len(data) >= 20 else order[:0]  # a tenth held out to measure, when enough
    train_set = data[order[len(held):]]
    torch.manual_seed(seed)
    net = SetVAE(**cfg)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run_dir / "checkpoint.safetensors", recipe, {"net": net}, {"net": opt}, gen)
    start = ckpt.load() if resume and ckpt.path.exists() else 0
    if start:
        log(f"resumed from {ckpt.path} at step {start}")
    log(f"training {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters for {steps} steps of {batch} "
        f"on {len(train_set)} images")
    monitor.start(steps, start, "img")
    show = torch.randn(16, latent_dim, generator=torch.Generator().manual_seed(seed + 1))  # the same 16 every time
    net.train()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        x = train_set[torch.randint(0, len(train_set), (batch,), generator=gen)]
        flip = torch.rand(batch, generator=gen) < 0.5  # mirrored pictures are pictures too
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        logits, mu, logvar, _ = net(x[:, None], None, None, generator=gen)
        value, nll, kl = elbo(logits.reshape(batch, -1), x.reshape(batch, -1), mu, logvar,
                              beta=min(1.0, (step + 1) / max(1, beta_warmup)))
        loss = -value.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 50.0)
        opt.step()
        monitor.step(step + 1, batch, loss=loss.item(), kl=kl.mean().item())
        if (step + 1) % every == 0 or step + 1 == steps:
            ckpt.save(step + 1)
        if (step + 1) % preview_every == 0 or step + 1 == steps:
            net.eval()
            with torch.inference_mode():
                monitor.sample(step + 1, _sheet(torch.sigmoid(net.decode(show)), cfg["channels"], size))
            net.train()
        check_stop(monitor, step + 1, ckpt.save, ckpt.path)
    monitor.finish()
    net.eval()
    with torch.inference_mode():
        mus = torch.cat([net.encode(train_set[i:i + 256, None])[0] for i in range(0, len(train_set), 256)])
        fitted = len(mus) >= latent_dim  # a Gaussian needs at least as many pictures as latent dimensions
        if fitted:
            net.fit_prior(mus)
        quality = {"training_images": len(train_set), "heldout_images": len(held)}
        if len(held):
            x = data[held]
            recon = torch.sigmoid(net.decode(net.encode(x[:, None])[0]))
            quality["heldout_recon_mse"] = round(float((recon - x).square().mean()), 5)
        preview = torch.sigmoid(net.decode(net.from_prior(torch.randn(16, latent_dim, generator=gen))))
    d = latent_dim
    directions = Directions(torch.eye(d)[:min(16, d)], torch.ones(min(16, d)), torch.zeros(d))
    manifest = {
        "format": 1, "id": recipe.package["id"], "name": recipe.package["name"], "family": "vae",
        "version": recipe.package["version"], "license": recipe.package["license"],
        "description": recipe.package.get("description", ""),
        "output": {"kind": "image", "width": size, "height": size, "channels": cfg["channels"]},
        "latent": {"shape": [latent_dim], "prior": "normal"},
        "conditions": {"kind": "none"},
        "architecture": {"image_size": size, "width": cfg["width"], "hidden": cfg["hidden"],
                         "fitted_prior": True},
        "training": {"trainer": TRAINER, "app_version": __version__, "steps": steps, "batch": batch,
                     "seconds": round(ckpt.seconds, 1), "quality": quality},
    }
    path = write_package(out, manifest, dict(net.state_dict()), directions.to_tensors(),
                         _sheet(preview, cfg["channels"], size), recipe.text)
    log(f"wrote {path}")
    return path


def _sheet(images: torch.Tensor, channels: int, size: int) -> np.ndarray:
    """16 pictures (16, C·size²) in 0…1 → a 4 × 4 uint8 sheet (H, W) grey or (H, W, 3)."""
    sheet = (images.reshape(4, 4, channels, size, size).permute(0, 3, 1, 4, 2)
             .reshape(4 * size, 4 * size, channels) * 255).round().to(torch.uint8).numpy()
    return sheet[..., 0] if channels == 1 else sheet


def train_folder(folder: str | Path, out: Path, run_dir: Path, model_id: str, resume: bool = False,
                 log: Callable[[str], None] = print, monitor: Monitor | None = None, **settings) -> Path:
    """What `latent-studio train --family vae --data FOLDER` runs: the recipe written to the run folder, then run."""
    recipe_path = run_dir / "recipe.toml"
    if not (resume and recipe_path.exists()):
        write_recipe(recipe_path, Path(folder), model_id, **settings)
    return train(read_recipe(recipe_path), out, run_dir, resume=resume, log=log, monitor=monitor)

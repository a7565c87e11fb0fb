"""Train a model on your own data: a folder of pictures (a VAE, a GAN or a diffusion model) or of sounds (an audio
VAE), into a model package the app opens like the shipped ones.

`train_folder(folder, out, run_dir, model_id, family=…)` is the one entry point (`latent-studio train --family
vae|gan|diffusion|audio --data FOLDER …` and the app's training dialog call it): it writes the recipe of the family's
trainer into the run folder and runs it, so a run is reproducible and resumable like the shipped models' runs (the
recipe is kept in the package). `scan_folder(folder, family)` says quickly what a folder holds before training.

This module is also the VAE's trainer (`trainer = "folder-vae"`); the others are `folder_gan`, `folder_diffusion` and
`folder_audio`. Pictures of any size and format are fitted to a square (cropped, padded or stretched), grey or colour.
"""

from __future__ import annotations

import importlib
import inspect
import math
from pathlib import Path
from typing import Callable

import tomli_w
import torch

from studio import __version__
from studio.errors import RecipeError
from studio.nets.setvae import SetVAE, elbo
from studio.latent.directions import Directions
from studio.train.common import Checkpoint, lr_at, manifest_head, start_step
from studio.train.folder_common import (FITS, IMAGE_SUFFIXES, MIN_FILES, SOUND_SUFFIXES, FolderSummary,
                                        fit_image, image_sheet, load_image_folder, load_sound_folder, rand,
                                        scan_images, scan_sounds, train_device)
from studio.train.monitor import Monitor, check_stop
from studio.train.package import write_package
from studio.train.recipe import Recipe, read_recipe

TRAINER = "folder-vae"
FOLDER_FAMILIES = ("vae", "gan", "diffusion", "audio")
TRAINERS = {"vae": "studio.train.folder", "gan": "studio.train.folder_gan",
            "diffusion": "studio.train.folder_diffusion", "audio": "studio.train.folder_audio"}
__all__ = ["FOLDER_FAMILIES", "FolderSummary", "family_defaults", "scan_folder", "train_folder", "load_image_folder", "fit_image",
           "load_sound_folder", "image_sheet", "FITS", "IMAGE_SUFFIXES", "SOUND_SUFFIXES", "write_recipe", "train"]


def check_family(family: str) -> str:
    if family not in FOLDER_FAMILIES:
        raise RecipeError(f"unknown family {family!r}: train on your own data with one of "
                          f"{', '.join(FOLDER_FAMILIES)}", None, "family")
    return family


def family_defaults(family: str) -> dict[str, object]:
    """The settings `train_folder` takes for `family`, with the family's defaults (its trainer's write_recipe
    keywords): what a dialog offers before training."""
    trainer = importlib.import_module(TRAINERS[check_family(family)])
    return {name: p.default for name, p in inspect.signature(trainer.write_recipe).parameters.items()
            if name not in ("path", "folder", "model_id")}


def scan_folder(folder: str | Path, family: str) -> FolderSummary:
    """What `folder` holds for `family` (pictures for vae, gan and diffusion; sounds for audio), from the files'
    headers only: quick enough to show in a dialog before training. RecipeError naming the folder when nothing is
    usable; a summary whose `enough` is False when there are fewer files than the family needs."""
    folder = Path(folder)
    check_family(family)
    if not folder.is_dir():
        raise RecipeError("not a folder" if folder.exists() else "no such folder", folder, "data.folder")
    scan = scan_sounds if family == "audio" else scan_images
    return scan(folder, family, MIN_FILES[family])


def write_recipe(path: Path, folder: Path, model_id: str, size: int = 64, steps: int = 2000, fit: str = "crop",
                 latent_dim: int = 16, batch: int = 64, name: str = "", device: str = "cpu", seed: int = 0) -> Path:
    """The recipe `latent-studio train --family vae --data FOLDER` runs (kept in the package: the run reproduces)."""
    recipe = {
        "trainer": TRAINER,
        "package": {"id": model_id, "name": name or model_id, "version": "1.0.0",
                    "license": "the pictures' own licence",
                    "description": f"A VAE trained on the pictures in {folder}."},
        "data": {"folder": str(folder.resolve()), "size": size, "fit": fit},
        "model": {"latent_dim": latent_dim, "width": 32, "hidden": 256},
        "train": {"seed": seed, "steps": steps, "batch": batch, "lr": 1e-3, "warmup": 100, "beta_warmup": 500,
                  "checkpoint_every": 100, "device": device},
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
    if size < 8 or size > 256 or 4 * 2 ** int(math.log2(size // 4)) != size:
        raise RecipeError(f"must be 8, 16, 32, 64, 128 or 256 (4·2^n), got {size}", recipe.path, "data.size")
    device = train_device(recipe)
    folder = Path(r.get(d, "folder", str, "data."))
    data = torch.from_numpy(load_image_folder(folder if folder.is_absolute() else recipe.path.parent / folder, size,
                                              r.get(d, "fit", str, "data.", required=False, default="crop"), log))
    steps = r.get(t, "steps", int, "train.", check=lambda v: None if v > 0 else f"must be positive, got {v}")
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
    train_set = data[order[len(held):]].to(device)
    torch.manual_seed(seed)
    net = SetVAE(**cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run_dir / "checkpoint.safetensors", recipe, {"net": net}, {"net": opt}, gen)
    start = start_step(ckpt, resume, log)
    log(f"training {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters for {steps} steps of {batch} "
        f"on {len(train_set)} images ({device})")
    monitor.start(steps, start, "img")
    show = torch.randn(16, latent_dim, generator=torch.Generator().manual_seed(seed + 1)).to(device)  # the same 16
    net.train()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        x = train_set[torch.randint(0, len(train_set), (batch,), generator=gen).to(device)]
        flip = rand((batch,), gen, device, normal=False) < 0.5  # mirrored pictures are pictures too
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        mu, logvar = net.encode(x[:, None])
        z = mu + torch.exp(0.5 * logvar) * rand(tuple(mu.shape), gen, device)  # drawn on the CPU: any device
        logits = net.decode(z)
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
                monitor.sample(step + 1, image_sheet(torch.sigmoid(net.decode(show)), cfg["channels"], size))
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
            x = data[held].to(device)
            recon = torch.sigmoid(net.decode(net.encode(x[:, None])[0]))
            quality["heldout_recon_mse"] = round(float((recon - x).square().mean()), 5)
        preview = torch.sigmoid(net.decode(net.from_prior(rand((16, latent_dim), gen, device))))
    d = latent_dim
    directions = Directions(torch.eye(d)[:min(16, d)], torch.ones(min(16, d)), torch.zeros(d))
    manifest = {
        **manifest_head(recipe, "vae"),
        "output": {"kind": "image", "width": size, "height": size, "channels": cfg["channels"]},
        "latent": {"shape": [latent_dim], "prior": "normal"},
        "conditions": {"kind": "none"},
        "architecture": {"image_size": size, "width": cfg["width"], "hidden": cfg["hidden"],
                         "fitted_prior": True},
        "training": {"trainer": TRAINER, "app_version": __version__, "steps": steps, "batch": batch,
                     "seconds": round(ckpt.seconds, 1), "quality": quality},
    }
    weights = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    path = write_package(out, manifest, weights, directions.to_tensors(), image_sheet(preview, cfg["channels"], size),
                         recipe.text)
    log(f"wrote {path}")
    return path


def train_folder(folder: str | Path, out: Path, run_dir: Path, model_id: str, *, family: str = "vae",
                 resume: bool = False, log: Callable[[str], None] = print, monitor: Monitor | None = None,
                 **settings) -> Path:
    """What `latent-studio train --family FAMILY --data FOLDER` runs: the family's recipe written to the run folder
    (settings such as size, steps, batch, device; None means the family's default), then run. With `resume` the run
    folder's own recipe is run again from its checkpoint (the settings are not used then). A `monitor` sees every
    step and a sample now and then, and can pause (TrainingStopped; resume=True continues) — see
    studio.train.monitor. Returns the package folder `out`."""
    trainer = importlib.import_module(TRAINERS[check_family(family)])
    run_dir, out = Path(run_dir), Path(out)
    recipe_path = run_dir / "recipe.toml"
    settings = {k: v for k, v in settings.items() if v is not None}
    if not (resume and recipe_path.exists()):
        known = [n for n in inspect.signature(trainer.write_recipe).parameters if n not in ("path", "folder",
                                                                                              "model_id")]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise RecipeError(f"the {family} trainer has no setting {', '.join(map(repr, unknown))} (it has: "
                              f"{', '.join(known)})")
        trainer.write_recipe(recipe_path, Path(folder), model_id, **settings)
    recipe = read_recipe(recipe_path)
    if recipe.trainer != trainer.TRAINER:
        raise RecipeError(f"this run folder holds a {recipe.trainer!r} run, not a {family} one: resume it as that "
                          f"family, or train in another run folder", recipe_path, "trainer")
    return trainer.train(recipe, out, run_dir, resume=resume, log=log, monitor=monitor)

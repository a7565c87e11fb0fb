"""Train a diffusion model (family `diffusion`) on your own pictures and write a model package
(`trainer = "folder-diffusion"`).

The network is the glyph diffusion model's UNet (`studio.nets.unet.UNet`), unconditional and grey or colour as
the pictures are: it learns to predict the noise ε added to a picture at a random timestep of the recipe's schedule
(cosine by default). AdamW with warm-up and a cosine decay, gradients clipped; the package holds an exponential moving
average of the weights, sampled by the family's own samplers. bfloat16 autocast where the device computes it natively.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch

from studio import __version__
from studio.families.diffusion.family import DEFAULTS
from studio.nets.unet import UNet
from studio.nets.samplers import SCHEDULES, Schedule, make_sampler
from studio.latent.seeds import sample_prior
from studio.train.common import Checkpoint, denoiser_step, lr_at, manifest_head, start_step
from studio.train.folder_common import (MIN_FILES, RecentMean, autocast, data_folder, dump_recipe, image_sheet,
                                        package_table, rand, read_images, schedule_figures, train_device, use_bf16)
from studio.train.monitor import Monitor, check_stop
from studio.train.package import write_package
from studio.train.recipe import Recipe

TRAINER = "folder-diffusion"
MIN_IMAGES = MIN_FILES["diffusion"]
PREVIEW_STEPS = 20  # sampler steps of the previews shown while training (the package's preview uses the default)


def write_recipe(path: Path, folder: Path, model_id: str, size: int = 32, steps: int = 3000, fit: str = "crop",
                 batch: int = 16, base: int = 32, name: str = "", device: str = "cpu", seed: int = 0) -> Path:
    """The recipe `latent-studio train --family diffusion --data FOLDER` runs (kept in the package)."""
    return dump_recipe(path, {
        "trainer": TRAINER,
        "package": package_table(model_id, name, f"A diffusion model trained on the pictures in {folder}.",
                                 "the pictures' own licence"),
        "data": {"folder": str(Path(folder).resolve()), "size": size, "fit": fit, "flip": True},
        "model": {"base": base, "mults": [1, 2, 2], "emb_dim": 128, "attention": True, "schedule": "cosine",
                  "train_timesteps": 1000},
        "train": {"seed": seed, "steps": steps, "batch": batch, "lr": 1e-3, "warmup": 100, "ema": 0.999,
                  "checkpoint_every": 100, "device": device, "bfloat16": "auto"},
    })


def _mults(value: list) -> str | None:
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return f"must be a non-empty array of positive whole numbers, got {value!r}"
    return None


@torch.inference_mode()
def sample(net: UNet, schedule: Schedule, noise: torch.Tensor, seed: int, steps: int = DEFAULTS["steps"],
           sampler_name: str = DEFAULTS["sampler"], eta: float = DEFAULTS["eta"]) -> torch.Tensor:
    """Pictures in [0, 1] from starting noises (N, C, S, S), with the family's sampler settings."""
    sampler = make_sampler(sampler_name, schedule, steps, eta=eta, clip_sample=True)  # as the app samples
    gen = torch.Generator().manual_seed(seed)
    x = sampler.initial(noise)
    for k in range(len(sampler.timesteps)):
        inp = sampler.scale_input(x, k)
        eps = net(inp, torch.full((len(x),), sampler.model_timestep(k), device=x.device)).float()
        x, _ = sampler.step(eps, k, x, gen)
    return (x.clamp(-1, 1) + 1) / 2


def train(recipe: Recipe, out: Path, run_dir: Path, resume: bool = False,
          log: Callable[[str], None] = print, monitor: Monitor | None = None) -> Path:
    monitor = monitor or Monitor(log)
    log = monitor.log
    r, d, m, t = recipe.reader(), recipe.data, recipe.model, recipe.train
    mults = tuple(r.get(m, "mults", list, "model.", required=False, default=[1, 2, 2], check=_mults))
    halvings = 2 ** (len(mults) - 1)
    size = r.get(d, "size", int, "data.", required=False, default=32,
                 check=lambda v: None if 8 <= v <= 256 and v % halvings == 0 else
                 f"must be 8 … 256 and a multiple of {halvings} (the UNet halves it {len(mults) - 1} times), got {v}")
    flip = r.get(d, "flip", bool, "data.", required=False, default=True)
    base = r.get(m, "base", int, "model.", required=False, default=32,
                 check=lambda v: None if v > 0 and v % 8 == 0 else
                 f"must be a positive multiple of 8 (group normalisation), got {v}")
    emb_dim = r.get(m, "emb_dim", int, "model.", required=False, default=128,
                    check=lambda v: None if v >= 8 and v % 2 == 0 else f"must be even and at least 8, got {v}")
    attention = r.get(m, "attention", bool, "model.", required=False, default=True)
    kind = r.get(m, "schedule", str, "model.", required=False, default="cosine",
                 check=lambda v: None if v in SCHEDULES else f"must be one of {', '.join(SCHEDULES)}")
    timesteps = r.get(m, "train_timesteps", int, "model.", required=False, default=1000,
                      check=lambda v: None if v >= 2 else f"must be at least 2, got {v}")
    f = schedule_figures(recipe, default_batch=16, default_lr=1e-3)
    steps, batch, lr, seed = f["steps"], f["batch"], f["lr"], f["seed"]
    ema_max = float(r.get(t, "ema", (int, float), "train.", required=False, default=0.999,
                          check=lambda v: None if 0 <= v < 1 else f"must be in 0 … 1 (exclusive), got {v}"))
    device = train_device(recipe)
    bf16 = use_bf16(recipe, device, log)

    data = read_images(recipe, size, MIN_IMAGES, "a diffusion model", log)
    channels = int(data.shape[1])
    real = (data * 2 - 1).to(device)
    schedule = Schedule.make(kind, timesteps)
    ac = schedule.alphas_cumprod.float().to(device)
    torch.manual_seed(seed)
    net = UNet(size, channels, base, mults, 0, emb_dim, attention).to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run_dir / "checkpoint.safetensors", recipe, {"net": net, "ema": ema}, {"net": opt}, gen)
    start = start_step(ckpt, resume, log)
    log(f"training {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters for {steps} steps of {batch} "
        f"on {len(real)} pictures ({device}{', bfloat16' if bf16 else ''})")
    monitor.start(steps, start, "img")
    show = sample_prior(seed + 1, (channels, size, size), batch=16).to(device)  # the same 16 at every preview
    recent = RecentMean()
    net.train()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, f["warmup"])
        x0 = real[torch.randint(0, len(real), (batch,), generator=gen).to(device)]
        if flip:
            mirror = rand((batch,), gen, device, normal=False) < 0.5
            x0 = torch.where(mirror[:, None, None, None], x0.flip(-1), x0)
        tt = torch.randint(0, timesteps, (batch,), generator=gen).to(device)
        noise = rand(tuple(x0.shape), gen, device)
        a = ac[tt].reshape(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = denoiser_step(net, ema, opt, xt, tt, noise, None, autocast(device, bf16),
                             min(ema_max, (1 + step) / (10 + step)))
        recent.add(loss=loss.item())
        monitor.step(step + 1, batch, loss=loss.item())
        if (step + 1) % f["every"] == 0 or step + 1 == steps:
            ckpt.save(step + 1)
        if (step + 1) % f["preview_every"] == 0 or step + 1 == steps:
            monitor.sample(step + 1, image_sheet(sample(ema, schedule, show, seed + 1, PREVIEW_STEPS), channels, size))
        check_stop(monitor, step + 1, ckpt.save, ckpt.path)
    monitor.finish()
    train_seconds = ckpt.seconds

    quality = {"training_images": len(real), **recent.means(), **denoising_error(ema, real, ac, seed + 3)}
    for key, value in quality.items():
        log(f"  {key}: {value}")
    preview = image_sheet(sample(ema, schedule, show, seed + 1), channels, size)
    manifest = {
        **manifest_head(recipe, "diffusion"),
        "output": {"kind": "image", "width": size, "height": size, "channels": channels},
        "latent": {"shape": [channels, size, size], "prior": "normal"},
        "conditions": {"kind": "none"},
        "architecture": {"base": base, "mults": list(mults), "emb_dim": emb_dim, "attention": attention,
                         "schedule": kind, "train_timesteps": timesteps, "ink_on_paper": False},
        "training": {"trainer": TRAINER, "app_version": __version__, "steps": steps, "batch": batch,
                     "seconds": round(train_seconds, 1), "data": str(data_folder(recipe)), "quality": quality},
    }
    weights = {k: v.detach().float().cpu() for k, v in ema.state_dict().items()}
    path = write_package(out, manifest, weights, None, preview, recipe.text)
    log(f"wrote {path}")
    return path


@torch.inference_mode()
def denoising_error(net: UNet, real: torch.Tensor, ac: torch.Tensor, seed: int, n: int = 64) -> dict:
    """The shipped (EMA) network's noise-prediction error on up to `n` of the pictures at timesteps spread evenly
    over the schedule, with fixed noise: comparable between runs on the same folder."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(real), (n,), generator=gen).to(real.device)
    x0 = real[pick]
    tt = torch.linspace(0, len(ac) - 1, n).round().long().to(real.device)
    noise = rand(tuple(x0.shape), gen, real.device)
    a = ac[tt].reshape(-1, 1, 1, 1)
    eps = net(a.sqrt() * x0 + (1 - a).sqrt() * noise, tt.float()).float()
    per_t = (eps - noise).square().flatten(1).mean(1)
    third = n // 3
    return {"denoising_mse": round(float(per_t.mean()), 5),
            "denoising_mse_low_noise": round(float(per_t[:third].mean()), 5),
            "denoising_mse_high_noise": round(float(per_t[-third:].mean()), 5)}

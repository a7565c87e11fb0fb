"""Train the glyph diffusion model (family `diffusion`) from Debian's fonts and write a model package.

A UNet (`studio.nets.unet.UNet`) learns to predict the noise ε added to 32×32 glyphs at a random timestep of
the recipe's schedule (cosine or linear), told the character except for a share of steps where it gets the "no class"
index, which is what classifier-free guidance needs. Mixed precision (bfloat16) on the CPU; the shipped weights are an
exponential moving average.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from studio import __version__
from studio.families.diffusion.family import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULTS
from studio.nets.unet import UNet
from studio.nets.samplers import SCHEDULES, Schedule, make_sampler
from studio.latent.seeds import sample_prior
from studio.train.common import (Checkpoint, denoiser_step, glyph_data, ink_at, ink_sheet, lr_at,
                                 manifest_head)
from studio.train.fonts import CHARSET
from studio.train.package import write_package
from studio.train.progress import ProgressBar
from studio.train.recipe import Recipe
from studio.train.scoring import balanced_labels, score, shared_classifier, vae_reference

TRAINER = "glyph-diffusion"


def train(recipe: Recipe, out: Path, run_dir: Path, resume: bool = False,
          log: Callable[[str], None] = print) -> Path:
    r, t, m = recipe.reader(), recipe.train, recipe.model
    steps = r.get(t, "steps", int, "train.")
    batch = r.get(t, "batch", int, "train.", required=False, default=64)
    lr = float(r.get(t, "lr", (int, float), "train.", required=False, default=1e-3))
    warmup = r.get(t, "warmup", int, "train.", required=False, default=200)
    drop = float(r.get(t, "class_dropout", (int, float), "train.", required=False, default=0.1))
    ema_max = float(r.get(t, "ema", (int, float), "train.", required=False, default=0.999))
    seed = r.get(t, "seed", int, "train.", required=False, default=0)
    every = r.get(t, "checkpoint_every", int, "train.", required=False, default=250)
    bf16 = bool(r.get(t, "bfloat16", bool, "train.", required=False, default=True))
    size = r.get(m, "image_size", int, "model.", required=False, default=32)
    base = r.get(m, "base", int, "model.", required=False, default=32)
    mults = tuple(r.get(m, "mults", list, "model.", required=False, default=[1, 2, 2]))
    emb_dim = r.get(m, "emb_dim", int, "model.", required=False, default=128)
    attention = bool(r.get(m, "attention", bool, "model.", required=False, default=True))
    kind = r.get(m, "schedule", str, "model.", required=False, default="cosine",
                 check=lambda v: None if v in SCHEDULES else f"must be one of {', '.join(SCHEDULES)}")
    timesteps = r.get(m, "train_timesteps", int, "model.", required=False, default=1000)

    data = glyph_data(recipe, seed, log)
    real = ink_at(data.train, size).reshape(len(data.train), len(CHARSET), 1, size, size) * 2 - 1
    schedule = Schedule.make(kind, timesteps)
    ac = schedule.alphas_cumprod.float()
    torch.manual_seed(seed)
    net = UNet(size, 1, base, mults, len(CHARSET), emb_dim, attention)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run_dir / "checkpoint.safetensors", recipe, {"net": net, "ema": ema}, {"net": opt}, gen)
    start = 0
    if resume and ckpt.path.exists():
        start = ckpt.load()
        log(f"resumed from {ckpt.path} at step {start}")
    log(f"training {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters for {steps} steps of {batch}")
    n_f = real.shape[0]
    bar = ProgressBar(steps, start=start, unit="img")
    net.train()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        f = torch.randint(0, n_f, (batch,), generator=gen)
        labels = torch.randint(0, len(CHARSET), (batch,), generator=gen)
        x0 = real[f, labels]
        tt = torch.randint(0, timesteps, (batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = ac[tt].reshape(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        dropped = torch.rand(batch, generator=gen) < drop
        cond = torch.where(dropped, torch.full_like(labels, len(CHARSET)), labels)
        loss = denoiser_step(net, ema, opt, xt, tt, noise, cond,
                             torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
                             min(ema_max, (1 + step) / (10 + step)))
        bar.update(step + 1, batch, loss=loss.item())
        if (step + 1) % every == 0 or step + 1 == steps:
            ckpt.save(step + 1)
    bar.close()
    train_seconds = ckpt.seconds
    ema.schedule = schedule

    metrics = evaluate(ema, data, recipe, size, seed, log)
    manifest = {
        **manifest_head(recipe, "diffusion"),
        "output": {"kind": "image", "width": size, "height": size, "channels": 1},
        "latent": {"shape": [1, size, size], "prior": "normal"},
        "conditions": {"kind": "text", "alphabet": CHARSET, "default": recipe.package.get("default_prompt", "Aa")},
        "architecture": {"base": base, "mults": list(mults), "emb_dim": emb_dim, "attention": attention,
                         "schedule": kind, "train_timesteps": timesteps, "ink_on_paper": True},
        "training": {
            "trainer": TRAINER, "app_version": __version__, "steps": steps, "batch": batch,
            "seconds": round(train_seconds, 1), "training_faces": len(data.train_idx),
            "heldout_faces": len(data.held_idx), "heldout_families": data.heldout_families,
            "quality": metrics,
        },
    }
    preview = specimen(ema)
    path = write_package(out, manifest, dict(ema.state_dict()), None, preview, recipe.text)
    log(f"wrote {path}")
    return path


def evaluate(ema: UNet, data, recipe: Recipe, size: int, seed: int, log: Callable[[str], None]) -> dict:
    """The quality figures: samples of the family's default sampler settings read by the glyph classifier (accuracy,
    Fréchet distance to held-out real glyphs), the same per sampler, without guidance, and the VAE beside them."""
    ev = recipe.evaluate
    samples = int(ev.get("samples", 620))
    guidance = float(ev.get("guidance", DEFAULTS["guidance"]))
    steps = int(ev.get("steps", DEFAULTS["steps"]))
    clf = shared_classifier(data.train.numpy(), steps=int(ev.get("classifier_steps", 1500)), log=log)
    held = ink_at(data.held, size)
    # the family's defaults on `samples` glyphs; other samplers (η 0) and no guidance beside them on fewer
    compare = int(ev.get("compare_samples", samples))
    settings = [(DEFAULTS["sampler"], DEFAULTS["eta"], guidance, "sample_", samples)]
    for name in ev.get("compare_samplers", []):
        settings.append((name, 0.0, guidance, f"sampler_{name}_", compare))
    if guidance != 1.0:
        settings.append((DEFAULTS["sampler"], DEFAULTS["eta"], 1.0, "sample_unguided_", compare))
    metrics: dict = {"sampler": DEFAULTS["sampler"], "sampler_steps": steps, "sampler_eta": DEFAULTS["eta"],
                     "guidance": guidance, "samples": samples, "compare_samples": compare}
    for name, eta, g, prefix, n in settings:
        log(f"sampling {n} glyphs ({name}, η {eta}, {steps} steps, guidance {g})")
        want = balanced_labels(n, seed + 2)
        ink = sample(ema, seed + 2, want, name, steps, g, eta=eta)
        metrics.update(score(clf, ink, want, held, prefix=prefix))
    vae = Path(str(ev.get("compare_vae", "models/glyphs")))
    if not vae.is_absolute() and not vae.exists():
        vae = recipe.path.parent.parent / vae
    if (vae / "model.toml").exists():
        metrics.update(vae_reference(vae, clf, held, samples, seed + 2))
    for key, value in metrics.items():
        log(f"  {key}: {value}")
    return metrics


@torch.inference_mode()
def sample(net: UNet, seed: int, labels: torch.Tensor, sampler_name: str = DEFAULT_SAMPLER,
           steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, batch: int = 256,
           noise: torch.Tensor | None = None, eta: float | None = None) -> torch.Tensor:
    """One sample per label with classifier-free guidance, ink in [0, 1] (N, 1, S, S)."""
    s = net.image_size
    if noise is None:
        noise = sample_prior(seed, (1, s, s), batch=len(labels))
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(labels), batch):
        lab = labels[i:i + batch]
        sampler = make_sampler(sampler_name, net.schedule, steps, eta=DEFAULTS["eta"] if eta is None else eta,
                               clip_sample=True)  # as the app samples
        x = sampler.initial(noise[i:i + batch])
        both = torch.cat([lab, torch.full_like(lab, net.num_classes)])
        for k in range(len(sampler.timesteps)):
            inp = sampler.scale_input(x, k)
            tt = torch.full((2 * len(lab),), sampler.model_timestep(k))
            eps_c, eps_u = net(torch.cat([inp, inp]), tt, both).chunk(2)
            x, _ = sampler.step(eps_u + guidance * (eps_c - eps_u), k, x, gen)
        out.append((x.clamp(-1, 1) + 1) / 2)
    return torch.cat(out)


@torch.inference_mode()
def specimen(net: UNet, seeds=range(6), text: str = "AaBbGgQqRr3") -> np.ndarray:
    """A preview sheet: one row per seed (the same starting noise for every character), ink on paper."""
    labels = torch.tensor([CHARSET.index(ch) for ch in text])
    rows = []
    for seed in seeds:
        noise = sample_prior(seed, (1, net.image_size, net.image_size))[None].expand(len(text), -1, -1, -1)
        img = sample(net, seed, labels, noise=noise)
        rows.append(img[:, 0])
    return ink_sheet(rows)

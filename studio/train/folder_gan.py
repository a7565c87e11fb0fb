"""Train a style-based GAN (family `gan`) on your own pictures and write a model package (`trainer = "folder-gan"`).

The networks are the glyph GAN's (`studio.nets.stylegan.StyleGenerator`, `studio.train.glyph_gan.Discriminator`),
unconditional and grey or colour as the pictures are. A folder holds tens or hundreds of pictures, not the tens of
thousands a GAN usually sees, so the discriminator looks at every picture (real or made) through the same random,
differentiable changes — colour, translation and cutout (DiffAugment, Zhao et al. 2020) — and cannot simply memorise
the folder. Loss: non-saturating logistic with lazy R1 on the (augmented) reals; style-mixing regularisation; the
package holds an exponential moving average of the generator. bfloat16 autocast where the device computes it natively.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from studio import __version__
from studio.errors import RecipeError
from studio.nets.stylegan import StyleGenerator
from studio.latent.directions import principal_directions
from studio.latent.seeds import sample_prior
from studio.train.common import Checkpoint, ema_update, manifest_head, start_step
from studio.train.folder_common import (MIN_FILES, RecentMean, autocast, data_folder, dump_recipe, image_sheet,
                                        package_table, positive, rand, read_images, schedule_figures, train_device,
                                        use_bf16)
from studio.train.glyph_gan import Discriminator
from studio.train.monitor import Monitor, check_stop
from studio.train.package import write_package
from studio.train.recipe import Recipe

TRAINER = "folder-gan"
MIN_IMAGES = MIN_FILES["gan"]
SIZES = (8, 16, 32, 64, 128, 256)
AUGMENTS = ("color", "translation", "cutout")


def write_recipe(path: Path, folder: Path, model_id: str, size: int = 32, steps: int = 3000, fit: str = "crop",
                 batch: int = 16, latent_dim: int = 64, width: int = 32, max_width: int = 128,
                 augment: str = "color,translation,cutout", name: str = "", device: str = "cpu",
                 seed: int = 0) -> Path:
    """The recipe `latent-studio train --family gan --data FOLDER` runs (kept in the package: the run reproduces)."""
    return dump_recipe(path, {
        "trainer": TRAINER,
        "package": package_table(model_id, name, f"A GAN trained on the pictures in {folder}.",
                                 "the pictures' own licence"),
        "data": {"folder": str(Path(folder).resolve()), "size": size, "fit": fit, "flip": True},
        "model": {"latent_dim": latent_dim, "width": width, "max_width": max_width, "mapping_layers": 2},
        "train": {"seed": seed, "steps": steps, "batch": batch, "lr": 0.0025, "warmup": 100, "r1_gamma": 0.1,
                  "r1_every": 16, "style_mixing": 0.5, "ema_images": 5000, "augment": augment,
                  "checkpoint_every": 100, "device": device, "bfloat16": "auto"},
    })


def level_widths(size: int, width: int, max_width: int) -> list[int]:
    """The generator's channels at 4×4, 8×8 … size×size: `width` at full size, doubling toward 4×4 up to
    `max_width` (the discriminator mirrors them)."""
    levels = int(math.log2(size // 4))
    return [min(max_width, width * 2 ** (levels - i)) for i in range(levels + 1)]


# --- differentiable augmentation ------------------------------------------------------------------------------------


def augment(x: torch.Tensor, policy: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """Pictures (B, C, S, S) in −1 … 1, changed at random the same differentiable way for reals and fakes: colour
    (brightness, saturation, contrast), translation by up to an eighth (empty edges are zero) and a cutout of a
    quarter of the area. The numbers come from the CPU generator (the same on every device)."""
    b, c, s, _ = x.shape
    dev, dt = x.device, x.dtype

    def u(*shape):
        return torch.rand((b, *shape), generator=gen).to(dev, dt)

    if "color" in policy:
        x = x + (u(1, 1, 1) - 0.5)
        if c > 1:
            mean = x.mean(1, keepdim=True)
            x = (x - mean) * (u(1, 1, 1) * 2) + mean
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * (u(1, 1, 1) + 0.5) + mean
    if "translation" in policy:
        shift = max(1, s // 8)
        move = (torch.randint(-shift, shift + 1, (b, 2), generator=gen) * 2 / s).to(dev, dt)
        theta = torch.zeros(b, 2, 3, device=dev, dtype=dt)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, :, 2] = move
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if "cutout" in policy:
        half = s // 2
        corner = torch.randint(-(half // 2), s - half // 2, (b, 2), generator=gen).to(dev)
        pos = torch.arange(s, device=dev)
        ys = (pos[None] >= corner[:, :1]) & (pos[None] < corner[:, :1] + half)
        xs = (pos[None] >= corner[:, 1:]) & (pos[None] < corner[:, 1:] + half)
        x = x * (~(ys[:, :, None] & xs[:, None, :]))[:, None].to(dt)
    return x


def _policy(recipe: Recipe) -> tuple[str, ...]:
    text = recipe.reader().get(recipe.train, "augment", str, "train.", required=False, default=",".join(AUGMENTS))
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    wrong = [p for p in parts if p not in AUGMENTS]
    if wrong:
        raise RecipeError(f"unknown augmentation {', '.join(wrong)} (known: {', '.join(AUGMENTS)}; \"\" for none)",
                          recipe.path, "train.augment")
    return parts


def _ws(g: StyleGenerator, z: torch.Tensor, gen: torch.Generator, prob: float) -> torch.Tensor:
    """w per layer; with probability `prob` a second z takes over from a random layer (style-mixing
    regularisation, so that mixing styles across layers works at render time)."""
    w = g.map(z)[:, None].expand(-1, g.num_ws, -1)
    if prob > 0 and float(torch.rand((), generator=gen)) < prob:
        cut = int(torch.randint(1, g.num_ws, (), generator=gen))
        w2 = g.map(rand(tuple(z.shape), gen, z.device))[:, None].expand(-1, g.num_ws, -1)
        w = torch.cat([w[:, :cut], w2[:, cut:]], 1)
    return w


# --- training -------------------------------------------------------------------------------------------------------


def train(recipe: Recipe, out: Path, run_dir: Path, resume: bool = False,
          log: Callable[[str], None] = print, monitor: Monitor | None = None) -> Path:
    monitor = monitor or Monitor(log)
    log = monitor.log
    r, d, m, t = recipe.reader(), recipe.data, recipe.model, recipe.train
    size = r.get(d, "size", int, "data.", required=False, default=32,
                 check=lambda v: None if v in SIZES else f"must be one of {', '.join(map(str, SIZES))} (4·2^n), "
                 f"got {v}")
    flip = r.get(d, "flip", bool, "data.", required=False, default=True)
    latent_dim = r.get(m, "latent_dim", int, "model.", required=False, default=64, check=positive)
    width = r.get(m, "width", int, "model.", required=False, default=32, check=positive)
    max_width = r.get(m, "max_width", int, "model.", required=False, default=128, check=positive)
    mapping_layers = r.get(m, "mapping_layers", int, "model.", required=False, default=2, check=positive)
    f = schedule_figures(recipe, default_batch=16, default_lr=0.0025)
    steps, batch, lr, seed = f["steps"], f["batch"], f["lr"], f["seed"]
    if batch < 2:
        raise RecipeError(f"a GAN's discriminator compares pictures within a batch: needs at least 2, got {batch}",
                          recipe.path, "train.batch")
    r1_gamma = float(r.get(t, "r1_gamma", (int, float), "train.", required=False, default=0.1))
    r1_every = r.get(t, "r1_every", int, "train.", required=False, default=16, check=positive)
    mixing = float(r.get(t, "style_mixing", (int, float), "train.", required=False, default=0.5))
    ema_images = float(r.get(t, "ema_images", (int, float), "train.", required=False, default=5000))
    policy = _policy(recipe)
    device = train_device(recipe)
    bf16 = use_bf16(recipe, device, log)

    data = read_images(recipe, size, MIN_IMAGES, "a GAN", log)
    channels = int(data.shape[1])
    real = (data * 2 - 1).to(device)  # −1 … 1
    g_widths = level_widths(size, width, max_width)
    d_widths = g_widths[::-1]
    torch.manual_seed(seed)
    g = StyleGenerator(size, channels, latent_dim, latent_dim, 0, 1, mapping_layers, tuple(g_widths)).to(device)
    disc = Discriminator(size, channels, 0, tuple(d_widths)).to(device)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
    c = r1_every / (r1_every + 1)  # lazy regularisation: adjust D's Adam for the extra R1 steps
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr * c, betas=(0.0, 0.99 ** c), eps=1e-8)
    gen = torch.Generator().manual_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run_dir / "checkpoint.safetensors", recipe, {"g": g, "d": disc, "g_ema": g_ema},
                      {"g": opt_g, "d": opt_d}, gen)
    start = start_step(ckpt, resume, log)
    log(f"training G {sum(p.numel() for p in g.parameters()) / 1e6:.2f} M + D "
        f"{sum(p.numel() for p in disc.parameters()) / 1e6:.2f} M parameters for {steps} steps of {batch} on "
        f"{len(real)} pictures ({device}{', bfloat16' if bf16 else ''}; augment: {', '.join(policy) or 'none'})")
    monitor.start(steps, start, "img")
    show_gen = torch.Generator().manual_seed(seed + 1)  # the same 16 pictures at every preview
    show_z = torch.randn(16, latent_dim, generator=show_gen).to(device)
    show_noise = g.make_noise(16, show_gen, device)
    recent = RecentMean()
    warm = max(1, f["warmup"])
    for step in range(start, steps):
        # warm-up, constant, then a cosine fall to a tenth over the second half
        fall = max(0, step - steps // 2) / max(1, steps - steps // 2)
        scale = min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fall)))
        for opt, base in ((opt_g, lr), (opt_d, lr * c)):
            for group in opt.param_groups:
                group["lr"] = base * scale
        x_real = real[torch.randint(0, len(real), (batch,), generator=gen).to(device)]
        if flip:
            mirror = rand((batch,), gen, device, normal=False) < 0.5
            x_real = torch.where(mirror[:, None, None, None], x_real.flip(-1), x_real)

        # --- discriminator ---
        with autocast(device, bf16), torch.no_grad():
            x_fake = g.synthesis(_ws(g, rand((batch, latent_dim), gen, device), gen, mixing), None,
                                 g.make_noise(batch, gen, device))
        seen_real = augment(x_real, policy, gen)
        seen_fake = augment(x_fake.float(), policy, gen)
        with autocast(device, bf16):
            logit_r, _ = disc(seen_real)
            logit_f, _ = disc(seen_fake)
        loss_d = F.softplus(logit_f.float()).mean() + F.softplus(-logit_r.float()).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if r1_gamma > 0 and step % r1_every == 0:  # R1 in full precision: the gradient penalty is delicate
            xr = seen_real.detach().requires_grad_(True)
            logit, _ = disc(xr)
            (grad,) = torch.autograd.grad(logit.sum(), xr, create_graph=True)
            r1 = grad.square().sum((1, 2, 3)).mean() * (r1_gamma / 2) * r1_every
            opt_d.zero_grad(set_to_none=True)
            r1.backward()
            opt_d.step()

        # --- generator ---
        with autocast(device, bf16):
            ws = _ws(g, rand((batch, latent_dim), gen, device), gen, mixing)
            x_fake = g.synthesis(ws, None, g.make_noise(batch, gen, device))
        seen = augment(x_fake.float(), policy, gen)
        with autocast(device, bf16):
            logit_g, _ = disc(seen)
        loss_g = F.softplus(-logit_g.float()).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            g.w_avg.lerp_(ws[:, 0].float().mean(0), 1 - 0.995)
        # EMA half-life: ema_images, but at most a twentieth of the pictures seen so far (early on it follows closely)
        half_life = max(1.0, min(ema_images, (step + 1) * batch * 0.05))
        ema_update(g_ema, g, 0.5 ** (batch / half_life))
        figures = {"d": loss_d.item(), "g": loss_g.item()}
        recent.add(loss_d=figures["d"], loss_g=figures["g"], real_logit=logit_r.float().mean().item(),
                   fake_logit=logit_f.float().mean().item())
        monitor.step(step + 1, batch, loss=figures["d"] + figures["g"], **figures)
        if (step + 1) % f["every"] == 0 or step + 1 == steps:
            ckpt.save(step + 1)
        if (step + 1) % f["preview_every"] == 0 or step + 1 == steps:
            with torch.inference_mode():
                shown = g_ema(show_z, None, noise=show_noise).float()
            monitor.sample(step + 1, image_sheet((shown + 1) / 2, channels, size))
        check_stop(monitor, step + 1, ckpt.save, ckpt.path)
    monitor.finish()
    train_seconds = ckpt.seconds

    g_ema.eval()
    with torch.inference_mode():
        z = sample_prior(seed + 7, (latent_dim,), batch=4096)
        w = torch.cat([g_ema.map(z[i:i + 1024].to(device)).float().cpu() for i in range(0, 4096, 1024)])
        shown = g_ema(show_z, None, noise=show_noise).float()
    directions = principal_directions(w, k=min(16, latent_dim))
    quality = {"training_images": len(real), **recent.means()}
    for key, value in quality.items():
        log(f"  {key}: {value}")
    manifest = {
        **manifest_head(recipe, "gan"),
        "output": {"kind": "image", "width": size, "height": size, "channels": channels},
        "latent": {"shape": [latent_dim], "prior": "normal"},
        "conditions": {"kind": "none"},
        "architecture": {"image_size": size, "widths": g_widths, "class_dim": 1, "mapping_layers": mapping_layers,
                         "ink_on_paper": False},
        "training": {"trainer": TRAINER, "app_version": __version__, "steps": steps, "batch": batch,
                     "seconds": round(train_seconds, 1), "data": str(data_folder(recipe)),
                     "augment": list(policy), "quality": quality},
    }
    weights = {k: v.detach().float().cpu() for k, v in g_ema.state_dict().items()}
    path = write_package(out, manifest, weights, directions.to_tensors(),
                         image_sheet((shown + 1) / 2, channels, size), recipe.text)
    log(f"wrote {path}")
    return path

"""The diffusion loop (family `diffusion`): a UNet (studio.nets.unet.UNet) learns to predict the noise ε added to a
picture at a random timestep of the recipe's schedule (cosine or linear). AdamW with warm-up and a cosine decay,
gradients clipped at 1; the package holds an exponential moving average of the weights, sampled by the family's own
samplers. bfloat16 autocast where asked.

Two sources feed it:
- `glyph-diffusion`, the recipe's fonts (studio.train.data.glyphs): told the character, except for a share of steps
  (train.class_dropout) where it gets the "no class" index, which is what classifier-free guidance needs. Scored by
  the glyph classifier on samples of the family's default sampler settings, per sampler and without guidance.
- `folder-diffusion`, a folder of the user's pictures (studio.train.data.folders): unconditional, grey or colour,
  mirrored half the time; scored by the noise-prediction error at timesteps spread over the schedule.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from studio.errors import RecipeError
from studio.families.diffusion.family import (DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULTS,
                                             DiffusionNet)
from studio.latent.seeds import sample_prior
from studio.nets.samplers import SCHEDULES, Schedule, make_sampler
from studio.nets.unet import UNet
from studio.train.common import (RecentMean, Run, ScheduleDefaults, ema_update, lr_at, rand, read_schedule,
                                 set_lr)
from studio.train.data.folders import (MIN_FILES, Pictures, data_folder, image_sheet, package_table,
                                       read_images)
from studio.train.data.glyphs import Cells, glyph_data, ink_at, ink_sheet
from studio.train.fonts import CHARSET
from studio.train.monitor import Monitor
from studio.train.recipe import Recipe
from studio.train.scoring.glyphs import balanced_labels, score, shared_classifier, vae_reference

PREVIEW_STEPS = 20  # sampler steps of the previews shown while training (the package's preview uses the default)
TRAIN_SCHEDULES: dict[str, ScheduleDefaults] = {  # the [train] defaults of each source
    "glyphs": dict(batch=64, lr=1e-3, warmup=200, checkpoint_every=250),
    "folder": dict(batch=16, lr=1e-3, warmup=100, checkpoint_every=100),
}
BFLOAT16: dict[str, bool | str] = {"glyphs": True, "folder": "auto"}


def denoiser_step(net: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer, xt: torch.Tensor,
                  t: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor | None, precision,
                  ema_decay: float) -> torch.Tensor:
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


def train(recipe: Recipe, out: Path, run_dir: Path, *, data: str, resume: bool = False,
          monitor: Monitor | None = None) -> Path:
    """Run a diffusion recipe fed by `data` ("glyphs" or "folder"): the loop, then the measures and the package."""
    monitor = monitor or Monitor()
    r, m, t = recipe.reader(), recipe.model, recipe.train
    mults = tuple(r.get(m, "mults", list, "model.", required=False, default=[1, 2, 2], check=_mults))
    source = (_Glyphs if data == "glyphs" else _Folder)(recipe, mults)
    flip = r.get(recipe.data, "flip", bool, "data.", required=False, default=data == "folder")
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
    s = read_schedule(recipe, **TRAIN_SCHEDULES[data])
    drop = float(r.get(t, "class_dropout", (int, float), "train.", required=False, default=0.1))
    ema_max = float(r.get(t, "ema", (int, float), "train.", required=False, default=0.999,
                          check=lambda v: None if 0 <= v < 1 else f"must be in 0 … 1 (exclusive), got {v}"))
    run = Run(recipe, run_dir, resume, monitor, s)
    run.precision(BFLOAT16[data])
    source.load(run, flip)
    device, gen, batch, classes = run.device, run.gen, s.batch, source.real.classes
    schedule = Schedule.make(kind, timesteps)
    ac = schedule.alphas_cumprod.float().to(device)
    run.seed_weights()
    net = DiffusionNet(source.size, source.channels, base, mults, classes, emb_dim, attention).to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    ema.schedule = schedule  # how the samplers see it
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=0.0)
    run.begin({"net": net, "ema": ema}, {"net": opt}, source.about)
    recent = RecentMean()
    net.train()
    for step in run.steps(lambda: (source.preview(ema, PREVIEW_STEPS),)):
        set_lr(opt, lr_at(step, s.steps, s.lr, s.warmup))
        x0, labels = source.real.draw(batch, gen, device)
        tt = torch.randint(0, timesteps, (batch,), generator=gen).to(device)
        noise = rand(tuple(x0.shape), gen, device)
        a = ac[tt].reshape(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        cond = None
        if labels is not None:  # now and then no class: classifier-free guidance learns the unconditional too
            dropped = rand((batch,), gen, device, normal=False) < drop
            cond = torch.where(dropped, torch.full_like(labels, classes), labels)
        loss = denoiser_step(net, ema, opt, xt, tt, noise, cond, run.autocast(),
                             min(ema_max, (1 + step) / (10 + step)))
        recent.add(loss=loss.item())
        run.report(step, batch, loss=loss.item())
    sections = {
        "output": {"kind": "image", "width": source.size, "height": source.size, "channels": source.channels},
        "latent": {"shape": [source.channels, source.size, source.size], "prior": "normal"},
        "conditions": source.conditions,
        "architecture": {"base": base, "mults": list(mults), "emb_dim": emb_dim, "attention": attention,
                         "schedule": kind, "train_timesteps": timesteps, "ink_on_paper": data == "glyphs"},
    }
    training, preview = source.finish(run, ema, recent)
    weights = {k: v.detach().float().cpu() for k, v in ema.state_dict().items()}
    return run.write(out, "diffusion", sections, training, weights, None, preview)


def _mults(value: list) -> str | None:
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return f"must be a non-empty array of positive whole numbers, got {value!r}"
    return None


# --- the recipe's fonts ---------------------------------------------------------------------------------------------


class _Glyphs:
    channels = 1

    def __init__(self, recipe: Recipe, mults: tuple[int, ...]):
        self.recipe = recipe
        self.size = recipe.reader().get(recipe.model, "image_size", int, "model.", required=False, default=32)
        self.conditions = {"kind": "text", "alphabet": CHARSET,
                           "default": recipe.package.get("default_prompt", "Aa")}

    def load(self, run: Run, flip: bool) -> None:
        if flip:
            raise RecipeError("glyphs are not mirrored (a mirrored glyph is another character)", self.recipe.path,
                              "data.flip")
        self.data = glyph_data(self.recipe, run.schedule.seed, run.log)
        size = self.size
        real = ink_at(self.data.train, size).reshape(len(self.data.train), len(CHARSET), 1, size, size) * 2 - 1
        self.real = Cells(real.to(run.device))
        self.about = f"on {len(self.data.train)} faces"

    def preview(self, ema: DiffusionNet, steps: int = DEFAULT_STEPS) -> np.ndarray:
        return specimen(ema, seeds=range(2), steps=steps)

    def finish(self, run: Run, ema: DiffusionNet, recent: RecentMean) -> tuple[dict, np.ndarray]:
        ema = ema.cpu()  # measured on the CPU
        metrics = evaluate(ema, self.data, self.recipe, self.size, run.schedule.seed, run.log)
        return {**self.data.summary(), "quality": metrics}, specimen(ema)


def evaluate(ema: DiffusionNet, data, recipe: Recipe, size: int, seed: int, log) -> dict:
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
def sample(net: DiffusionNet, seed: int, labels: torch.Tensor, sampler_name: str = DEFAULT_SAMPLER,
           steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, batch: int = 256,
           noise: torch.Tensor | None = None, eta: float | None = None) -> torch.Tensor:
    """One sample per label with classifier-free guidance, ink in [0, 1] (N, 1, S, S), on the CPU."""
    s, device = net.image_size, next(net.parameters()).device
    if noise is None:
        noise = sample_prior(seed, (1, s, s), batch=len(labels))
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(labels), batch):
        lab = labels[i:i + batch].to(device)
        sampler = make_sampler(sampler_name, net.schedule, steps, eta=DEFAULTS["eta"] if eta is None else eta,
                               clip_sample=True)  # as the app samples
        x = sampler.initial(noise[i:i + batch].to(device))
        both = torch.cat([lab, torch.full_like(lab, net.num_classes)])
        for k in range(len(sampler.timesteps)):
            inp = sampler.scale_input(x, k)
            tt = torch.full((2 * len(lab),), sampler.model_timestep(k), device=device)
            eps_c, eps_u = net(torch.cat([inp, inp]), tt, both).float().chunk(2)
            x, _ = sampler.step(eps_u + guidance * (eps_c - eps_u), k, x, gen)
        out.append(((x.clamp(-1, 1) + 1) / 2).cpu())
    return torch.cat(out)


@torch.inference_mode()
def specimen(net: DiffusionNet, seeds=range(6), text: str = "AaBbGgQqRr3", steps: int = DEFAULT_STEPS) -> np.ndarray:
    """A preview sheet: one row per seed (the same starting noise for every character), ink on paper."""
    labels = torch.tensor([CHARSET.index(ch) for ch in text])
    rows = []
    for seed in seeds:
        noise = sample_prior(seed, (1, net.image_size, net.image_size))[None].expand(len(text), -1, -1, -1)
        img = sample(net, seed, labels, noise=noise, steps=steps)
        rows.append(img[:, 0])
    return ink_sheet(rows)


# --- a folder of pictures -------------------------------------------------------------------------------------------


class _Folder:
    conditions = {"kind": "none"}

    def __init__(self, recipe: Recipe, mults: tuple[int, ...]):
        halvings = 2 ** (len(mults) - 1)
        self.recipe = recipe
        self.size = recipe.reader().get(
            recipe.data, "size", int, "data.", required=False, default=32,
            check=lambda v: None if 8 <= v <= 256 and v % halvings == 0 else
            f"must be 8 … 256 and a multiple of {halvings} (the UNet halves it {len(mults) - 1} times), got {v}")

    def load(self, run: Run, flip: bool) -> None:
        data = read_images(self.recipe, self.size, MIN_FILES["diffusion"], "a diffusion model", run.log)
        self.channels = int(data.shape[1])
        self.real = Pictures((data * 2 - 1).to(run.device), flip)  # −1 … 1
        self.about = f"on {len(data)} pictures"
        self.seed = run.schedule.seed
        self.show = sample_prior(self.seed + 1, (self.channels, self.size, self.size), batch=16).to(run.device)

    def preview(self, ema: DiffusionNet, steps: int = DEFAULTS["steps"]) -> np.ndarray:
        """The same 16 starting noises at every preview."""
        return image_sheet(sample_pictures(ema, ema.schedule, self.show, self.seed + 1, steps), self.channels,
                           self.size)

    def finish(self, run: Run, ema: DiffusionNet, recent: RecentMean) -> tuple[dict, np.ndarray]:
        ac = ema.schedule.alphas_cumprod.float().to(run.device)
        quality = {"training_images": len(self.real.images), **recent.means(),
                   **denoising_error(ema, self.real.images, ac, self.seed + 3)}
        for key, value in quality.items():
            run.log(f"  {key}: {value}")
        return {"data": str(data_folder(self.recipe)), "quality": quality}, self.preview(ema)


@torch.inference_mode()
def sample_pictures(net: UNet, schedule: Schedule, noise: torch.Tensor, seed: int, steps: int = DEFAULTS["steps"],
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


def folder_recipe(folder: Path, model_id: str, size: int = 32, steps: int = 3000, fit: str = "crop",
                  batch: int = 16, base: int = 32, name: str = "", device: str = "cpu", seed: int = 0) -> dict:
    """The tables of the recipe `latent-studio train --family diffusion --data FOLDER` runs (studio.train.folder names
    the trainer and writes it to the run folder, and the package keeps it: the run reproduces)."""
    return {
        "package": package_table(model_id, name, f"A diffusion model trained on the pictures in {folder}.",
                                 "the pictures' own licence"),
        "data": {"folder": str(Path(folder).resolve()), "size": size, "fit": fit, "flip": True},
        "model": {"base": base, "mults": [1, 2, 2], "emb_dim": 128, "attention": True, "schedule": "cosine",
                  "train_timesteps": 1000},
        "train": {"seed": seed, "steps": steps, "batch": batch, "lr": 1e-3, "warmup": 100, "ema": 0.999,
                  "checkpoint_every": 100, "device": device, "bfloat16": "auto"},
    }

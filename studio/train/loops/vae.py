"""The VAE loop (family `vae`): a set VAE (studio.nets.setvae.SetVAE) encodes a set of pictures into one latent and
draws pictures from it. Loss: the ELBO (Bernoulli likelihood, the KL weighed in over train.beta_warmup steps); Adam
with warm-up and a cosine decay, gradients clipped at 50. Afterwards a Gaussian is fitted to the encoded training data:
the artist's prior, whose principal axes are the sliders.

Two sources feed it:
- `glyph-vae`, the recipe's fonts (studio.train.data.glyphs): a few glyphs of one face make the set, other characters
  of the same face are drawn from its latent (the character is the condition). Scored on held-out font families:
  reconstruction, and how often a glyph classifier reads prior samples as the asked-for character.
- `folder-vae`, a folder of the user's pictures (studio.train.data.folders): every picture is a set of one and its own
  target, mirrored half the time; unconditional. With twenty pictures or more a tenth is held out to measure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studio.errors import RecipeError
from studio.latent.directions import Directions, principal_directions
from studio.latent.seeds import sample_prior
from studio.nets.setvae import SetVAE, elbo
from studio.train.common import Run, Schedule, ScheduleDefaults, lr_at, rand, read_schedule, set_lr
from studio.train.data.folders import (Pictures, data_folder, image_sheet, load_image_folder,
                                       package_table)
from studio.train.data.glyphs import StyleSets, glyph_data
from studio.train.fonts import CHARSET
from studio.train.monitor import Monitor
from studio.train.recipe import Recipe
from studio.train.scoring.glyphs import CONFUSABLE, GlyphClassifier, classifier_for, classify, lenient_correct

SCHEDULES: dict[str, ScheduleDefaults] = {  # the [train] defaults of each source
    "glyphs": dict(batch_key="batch_fonts", batch=16, lr=2e-3, warmup=lambda steps: max(1, steps // 50),
                   checkpoint_every=200),
    "folder": dict(batch=64, lr=1e-3, warmup=100, checkpoint_every=100),
}
BETA_WARMUP = {"glyphs": 0, "folder": 500}


def schedule(recipe: Recipe, data: str = "glyphs") -> Schedule:
    """The [train] figures of a VAE recipe fed by `data` (glyphs or folder), with that source's defaults."""
    return read_schedule(recipe, **SCHEDULES[data])


def train(recipe: Recipe, out: Path, run_dir: Path, *, data: str, resume: bool = False,
          monitor: Monitor | None = None) -> Path:
    """Run a VAE recipe fed by `data` ("glyphs" or "folder"): the loop, then the prior, the measures and the package."""
    monitor = monitor or Monitor()
    r, t = recipe.reader(), recipe.train
    source = (_Glyphs if data == "glyphs" else _Folder)(recipe)
    s = schedule(recipe, data)
    beta = float(r.get(t, "beta", (int, float), "train.", required=False, default=1.0))
    beta_warmup = r.get(t, "beta_warmup", int, "train.", required=False, default=BETA_WARMUP[data])
    run = Run(recipe, run_dir, resume, monitor, s)
    source.load(run)
    run.seed_weights()
    net = SetVAE(**source.config).to(run.device)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr)
    run.begin({"net": net}, {"net": opt}, source.about)

    def preview() -> tuple:
        net.eval()
        with torch.inference_mode():
            sheet = source.preview(net)
        net.train()
        return (sheet,)

    net.train()
    for step in run.steps(preview):
        set_lr(opt, lr_at(step, s.steps, s.lr, s.warmup))
        x_ctx, ctx, x_tgt, tgt = source.sets.draw(s.batch, run.gen, run.device)
        mu, logvar = net.encode(x_ctx, ctx)
        z = mu + torch.exp(0.5 * logvar) * rand(tuple(mu.shape), run.gen, run.device)  # drawn on the CPU: any device
        b, k = x_tgt.shape[:2]
        # The k targets share one latent: the KL is paid once per set, the likelihood once per target.
        logits = net.decode(z.repeat_interleave(k, 0) if k > 1 else z, None if tgt is None else tgt.reshape(-1))
        value, _, kl = elbo(logits.reshape(b, -1), x_tgt.reshape(b, -1), mu, logvar,
                            beta=beta * min(1.0, (step + 1) / max(1, beta_warmup)))
        loss = -value.mean() / k
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 50.0)
        opt.step()
        run.report(step, b * k, loss=loss.item(), kl=kl.mean().item())
    net.eval()
    return source.finish(run, net, out)


# --- the recipe's fonts ---------------------------------------------------------------------------------------------

EVAL_CONTEXT = "AaBbGgRr"  # glyphs an artist would give to capture a style


class _Glyphs:
    def __init__(self, recipe: Recipe):
        r, t = recipe.reader(), recipe.train
        ctx = r.get(t, "context", list, "train.", required=False, default=[1, 4])
        if len(ctx) != 2 or not all(isinstance(c, int) and c > 0 for c in ctx) or ctx[0] > ctx[1]:
            raise r.fail("train.context", f"must be [min, max] glyphs per style set, got {ctx!r}")
        self.recipe, self.context = recipe, (ctx[0], ctx[1])
        self.targets = r.get(t, "targets", int, "train.", required=False, default=8,
                             check=lambda v: None if v > 0 else f"must be positive, got {v}")

    def load(self, run: Run) -> None:
        m = self.recipe.model
        self.data = glyph_data(self.recipe, run.schedule.seed, run.log)
        size = self.data.glyphs.size
        self.config = dict(image_size=size, channels=1, latent_dim=int(m.get("latent_dim", 32)),
                           num_classes=len(CHARSET), width=int(m.get("width", 32)),
                           class_dim=int(m.get("class_dim", 32)), hidden=int(m.get("hidden", 256)),
                           fitted_prior=bool(m.get("fitted_prior", True)))
        self.sets = StyleSets(self.data.train, self.context, self.targets)
        self.about = f"on {len(self.data.train)} faces"

    def preview(self, net: SetVAE) -> np.ndarray:
        return specimen(net)

    def finish(self, run: Run, net: SetVAE, out: Path) -> Path:
        recipe, cfg, data, seed = self.recipe, self.config, self.data, run.schedule.seed
        net = net.cpu()  # measured on the CPU
        with torch.inference_mode():
            mus = encode_fonts(net, data.train)
        d = cfg["latent_dim"]
        if net.fitted_prior:
            net.fit_prior(mus)
            # The artist's latent coordinates are the principal axes of the encoded styles, each scaled to unit
            # spread: principal direction k is axis k.
            directions = Directions(torch.eye(d)[:min(16, d)], torch.ones(min(16, d)), torch.zeros(d))
        else:
            directions = principal_directions(mus, k=min(16, d))
        ev = recipe.evaluate
        clf = classifier_for(run.run_dir, data.train.numpy(), steps=int(ev.get("classifier_steps", 1500)),
                             seed=seed + 1, log=run.log)
        metrics = evaluate(net, clf, data.held, samples=int(ev.get("prior_samples", 2480)), seed=seed + 2)
        for key, value in metrics.items():
            run.log(f"  {key}: {value}")
        sections = {
            "output": {"kind": "image", "width": cfg["image_size"], "height": cfg["image_size"], "channels": 1},
            "latent": {"shape": [d], "prior": "normal"},
            "conditions": {"kind": "text", "alphabet": CHARSET,
                           "default": recipe.package.get("default_prompt", "Aa")},
            "architecture": {"image_size": cfg["image_size"], "width": cfg["width"], "class_dim": cfg["class_dim"],
                             "hidden": cfg["hidden"], "fitted_prior": cfg["fitted_prior"], "ink_on_paper": True},
        }
        return run.write(out, "vae", sections, {**data.summary(), "quality": metrics},
                         {k: v.detach().cpu() for k, v in net.state_dict().items()}, directions, specimen(net))


@torch.inference_mode()
def encode_fonts(model: SetVAE, data: torch.Tensor, chars: str = EVAL_CONTEXT, batch: int = 64) -> torch.Tensor:
    idx = torch.tensor([CHARSET.index(c) for c in chars])
    out = []
    for i in range(0, len(data), batch):
        x = data[i:i + batch][:, idx].float().unsqueeze(2) / 255.0
        mu, _ = model.encode(x, idx.expand(len(x), -1))
        out.append(mu)
    return torch.cat(out)


@torch.inference_mode()
def decode_all(model: SetVAE, z: torch.Tensor) -> torch.Tensor:
    """z (N, D) → (N, 62, S, S) probabilities of ink."""
    n, c = len(z), len(CHARSET)
    labels = torch.arange(c).repeat(n)
    return torch.sigmoid(model.decode(z.repeat_interleave(c, 0), labels)).reshape(n, c, model.image_size,
                                                                                   model.image_size)


@torch.inference_mode()
def evaluate(model: SetVAE, clf: GlyphClassifier, held: torch.Tensor, samples: int,
             seed: int) -> dict[str, float | str]:
    held_f = held.float() / 255.0
    # Reconstruction: style from 8 glyphs of a held-out font, all 62 glyphs redrawn and compared.
    mus = encode_fonts(model, held)
    recon = torch.cat([decode_all(model, mus[i:i + 16]) for i in range(0, len(mus), 16)])
    mse_all = F.mse_loss(recon, held_f).item()
    # From one glyph: the glyph itself redrawn.
    one = []
    for ch in "aR":
        ci = CHARSET.index(ch)
        x = held_f[:, ci:ci + 1].unsqueeze(2)
        mu, _ = model.encode(x, torch.full((len(x), 1), ci))
        one.append(F.mse_loss(torch.sigmoid(model.decode(mu, torch.full((len(x),), ci))), held_f[:, ci:ci + 1]
                              .reshape(len(x), 1, *held.shape[-2:])).item())
    # The classifier on real held-out glyphs (its own accuracy bounds what it can say about samples).
    real_x = held_f.reshape(-1, 1, *held.shape[-2:])
    real_y = torch.arange(len(CHARSET)).repeat(len(held))
    real_pred = classify(clf, real_x)
    # Prior samples: the artist's latent w ~ N(0, I) with a random character each, through the fitted prior; and,
    # for comparison, the same draws fed to the decoder as z directly (a plain VAE's prior).
    gen = torch.Generator().manual_seed(seed)
    w = sample_prior(seed, (model.latent_dim,), batch=samples)
    want = torch.randint(0, len(CHARSET), (samples,), generator=gen)

    def predict(z: torch.Tensor) -> torch.Tensor:
        return classify(clf, torch.cat([torch.sigmoid(model.decode(z[i:i + 256], want[i:i + 256]))
                                        for i in range(0, samples, 256)]))

    pred, raw_pred = predict(model.from_prior(w)), predict(w)
    # Held-out styles redrawn from 8 of their glyphs: do all 62 still read as the right character?
    style_pred = classify(clf, recon.reshape(-1, 1, *held.shape[-2:]))
    return {
        "heldout_recon_mse_from_8_glyphs": round(mse_all, 5),
        "heldout_recon_mse_from_1_glyph": round(float(np.mean(one)), 5),
        "classifier_accuracy_heldout_real": round((real_pred == real_y).float().mean().item(), 4),
        "classifier_accuracy_heldout_real_lenient": round(lenient_correct(real_pred, real_y).float().mean().item(), 4),
        "prior_sample_accuracy": round((pred == want).float().mean().item(), 4),
        "prior_sample_accuracy_lenient": round(lenient_correct(pred, want).float().mean().item(), 4),
        "prior_sample_accuracy_unfitted_prior": round((raw_pred == want).float().mean().item(), 4),
        "heldout_redrawn_accuracy": round((style_pred == real_y).float().mean().item(), 4),
        "prior_samples": samples,
        "lenient_groups": " ".join(CONFUSABLE),
    }


@torch.inference_mode()
def specimen(model: SetVAE, seeds=range(4), text: str = "AaBbGgQqRr3") -> np.ndarray:
    """A preview sheet: one row per prior seed, ink on paper, uint8 (H, W)."""
    rows = []
    device = next(model.parameters()).device
    labels = torch.tensor([CHARSET.index(c) for c in text], device=device)
    for seed in seeds:
        z = model.from_prior(sample_prior(seed, (model.latent_dim,)).to(device)).expand(len(text), -1)
        cells = torch.sigmoid(model.decode(z, labels))[:, 0].float().cpu()
        rows.append(torch.cat(list(cells), dim=1))
    sheet = 1.0 - torch.cat(rows, dim=0)
    return (sheet.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


# --- a folder of pictures -------------------------------------------------------------------------------------------


class _Folder:
    def __init__(self, recipe: Recipe):
        r, d, m = recipe.reader(), recipe.data, recipe.model
        self.recipe = recipe
        self.size = r.get(d, "size", int, "data.", required=False, default=64)
        if self.size < 8 or self.size > 256 or 4 * 2 ** int(math.log2(self.size // 4)) != self.size:
            raise RecipeError(f"must be 8, 16, 32, 64, 128 or 256 (4·2^n), got {self.size}", recipe.path,
                              "data.size")
        self.fit = r.get(d, "fit", str, "data.", required=False, default="crop")
        self.flip = r.get(d, "flip", bool, "data.", required=False, default=True)
        self.latent_dim = r.get(m, "latent_dim", int, "model.", required=False, default=16)
        self.width = r.get(m, "width", int, "model.", required=False, default=32)
        self.hidden = r.get(m, "hidden", int, "model.", required=False, default=256)

    def load(self, run: Run) -> None:
        data = torch.from_numpy(load_image_folder(data_folder(self.recipe), self.size, self.fit, run.log))
        self.config = dict(image_size=self.size, channels=int(data.shape[1]), latent_dim=self.latent_dim,
                           num_classes=0, width=self.width, hidden=self.hidden, fitted_prior=True)
        order = torch.randperm(len(data), generator=run.gen)
        self.data = data
        self.held = order[:len(data) // 10] if len(data) >= 20 else order[:0]  # a tenth held out, when enough
        self.train_set = data[order[len(self.held):]].to(run.device)
        self.sets = _SetsOfOne(Pictures(self.train_set, self.flip))
        self.about = f"on {len(self.train_set)} images"
        self.show = torch.randn(16, self.latent_dim, generator=torch.Generator().manual_seed(run.schedule.seed + 1)
                                ).to(run.device)  # the same 16 at every preview

    def preview(self, net: SetVAE) -> np.ndarray:
        return image_sheet(torch.sigmoid(net.decode(self.show)), self.config["channels"], self.size)

    def finish(self, run: Run, net: SetVAE, out: Path) -> Path:
        size, channels, dim, device = self.size, self.config["channels"], self.latent_dim, run.device
        train_set = self.train_set
        with torch.inference_mode():
            mus = torch.cat([net.encode(train_set[i:i + 256, None])[0] for i in range(0, len(train_set), 256)])
            if len(mus) >= dim:  # a Gaussian needs at least as many pictures as latent dimensions
                net.fit_prior(mus)
            quality: dict[str, float] = {"training_images": len(train_set), "heldout_images": len(self.held)}
            if len(self.held):
                x = self.data[self.held].to(device)
                recon = torch.sigmoid(net.decode(net.encode(x[:, None])[0]))
                quality["heldout_recon_mse"] = round(float((recon - x).square().mean()), 5)
            preview = torch.sigmoid(net.decode(net.from_prior(rand((16, dim), run.gen, device))))
        directions = Directions(torch.eye(dim)[:min(16, dim)], torch.ones(min(16, dim)), torch.zeros(dim))
        sections = {
            "output": {"kind": "image", "width": size, "height": size, "channels": channels},
            "latent": {"shape": [dim], "prior": "normal"},
            "conditions": {"kind": "none"},
            "architecture": {"image_size": size, "width": self.width, "hidden": self.hidden, "fitted_prior": True},
        }
        return run.write(out, "vae", sections, {"quality": quality},
                         {k: v.detach().cpu() for k, v in net.state_dict().items()}, directions,
                         image_sheet(preview, channels, size))


class _SetsOfOne:
    """Pictures as the VAE's sets: each its own set of one and its own target, without labels."""

    def __init__(self, pictures: Pictures):
        self.pictures = pictures

    def draw(self, batch: int, gen: torch.Generator, device: torch.device):
        x, _ = self.pictures.draw(batch, gen, device)
        return x[:, None], None, x[:, None], None


def folder_recipe(folder: Path, model_id: str, size: int = 64, steps: int = 2000, fit: str = "crop",
                  latent_dim: int = 16, batch: int = 64, name: str = "", device: str = "cpu", seed: int = 0) -> dict:
    """The tables of the recipe `latent-studio train --family vae --data FOLDER` runs (studio.train.folder names
    the trainer and writes it to the run folder, and the package keeps it: the run reproduces)."""
    return {
        "package": package_table(model_id, name, f"A VAE trained on the pictures in {folder}.",
                                 "the pictures' own licence"),
        "data": {"folder": str(Path(folder).resolve()), "size": size, "fit": fit},
        "model": {"latent_dim": latent_dim, "width": 32, "hidden": 256},
        "train": {"seed": seed, "steps": steps, "batch": batch, "lr": 1e-3, "warmup": 100, "beta_warmup": 500,
                  "checkpoint_every": 100, "device": device},
    }

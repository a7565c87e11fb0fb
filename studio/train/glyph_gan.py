"""Train the style-based glyph GAN (family `gan`) from Debian's fonts and write a model package.

Generator: `studio.nets.stylegan.StyleGenerator`, conditioned on the character beside w. Discriminator: residual, with
a minibatch-deviation channel, a projection head for the character (Miyato & Koyama 2018) and an auxiliary classifier
head trained on real glyphs only, whose loss on fakes keeps the generator drawing the asked-for character (AC-GAN).
Loss: non-saturating logistic with lazy R1 on reals; style-mixing regularisation; the shipped generator is an
exponential moving average of the trained one. Mixed precision (bfloat16) on the CPU: AMX makes it about 2× faster.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio import __version__
from studio.nets.stylegan import EqConv, EqLinear, StyleGenerator
from studio.latent.directions import principal_directions
from studio.latent.seeds import sample_prior
from studio.train.common import Checkpoint, ema_update, glyph_data, ink_at, ink_sheet, manifest_head
from studio.train.fonts import CHARSET
from studio.train.package import write_package
from studio.train.progress import ProgressBar
from studio.train.recipe import Recipe
from studio.train.scoring import balanced_labels, score, shared_classifier, vae_reference

TRAINER = "glyph-gan"


class Discriminator(nn.Module):
    def __init__(self, image_size: int = 32, channels: int = 1, num_classes: int = 0,
                 widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        levels = int(math.log2(image_size // 4))
        if len(widths) != levels + 1:
            raise ValueError(f"widths needs {levels + 1} entries, got {len(widths)}")
        self.from_rgb = EqConv(channels, widths[0], 1)
        self.blocks = nn.ModuleList()
        for i in range(levels):
            self.blocks.append(nn.ModuleList([EqConv(widths[i], widths[i], 3), EqConv(widths[i], widths[i + 1], 3,
                                                                                     down=True),
                                              EqConv(widths[i], widths[i + 1], 1, down=True, bias=False)]))
        top = widths[-1]
        self.final_conv = EqConv(top + 1, top, 3)
        self.fc = EqLinear(top * 16, top)
        self.out = EqLinear(top, 1)
        self.num_classes = num_classes
        if num_classes:
            self.embed = nn.Embedding(num_classes, top)
            self.aux = EqLinear(top, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (B, C, S, S) in −1 … 1 → realness logits (B,), and character logits (B, classes)."""
        h = F.leaky_relu(self.from_rgb(x), 0.2) * math.sqrt(2)
        for conv, down, skip in self.blocks:
            y = F.leaky_relu(conv(h), 0.2) * math.sqrt(2)
            y = F.leaky_relu(down(y), 0.2) * math.sqrt(2)
            h = (y + skip(h)) / math.sqrt(2)
        # minibatch standard deviation over groups of 4
        b = h.shape[0]
        g = math.gcd(4, b)
        std = h.float().reshape(g, -1, *h.shape[1:]).std(0, unbiased=False).mean((1, 2, 3))  # (b/g,)
        std = std.to(h.dtype).repeat(g)[:, None, None, None].expand(-1, 1, *h.shape[2:])
        h = F.leaky_relu(self.final_conv(torch.cat([h, std], 1)), 0.2) * math.sqrt(2)
        f = F.leaky_relu(self.fc(h.flatten(1)), 0.2) * math.sqrt(2)
        logit = self.out(f)[:, 0]
        aux = None
        if self.num_classes:
            logit = logit + (self.embed(labels) * f).sum(1) / math.sqrt(f.shape[1])
            aux = self.aux(f)
        return logit, aux


def _mixed_ws(g: StyleGenerator, z: torch.Tensor, gen: torch.Generator, prob: float) -> torch.Tensor:
    """w per layer; with probability `prob` a second z takes over from a random layer (style-mixing
    regularisation, so that mixing styles across layers works at render time)."""
    w = g.map(z)[:, None].expand(-1, g.num_ws, -1)
    if prob > 0 and float(torch.rand((), generator=gen)) < prob:
        cut = int(torch.randint(1, g.num_ws, (), generator=gen))
        w2 = g.map(torch.randn(z.shape, generator=gen))[:, None].expand(-1, g.num_ws, -1)
        w = torch.cat([w[:, :cut], w2[:, cut:]], 1)
    return w


def train(recipe: Recipe, out: Path, run_dir: Path, resume: bool = False,
          log: Callable[[str], None] = print) -> Path:
    r, t, m = recipe.reader(), recipe.train, recipe.model
    steps = r.get(t, "steps", int, "train.")
    batch = r.get(t, "batch", int, "train.", required=False, default=32)
    lr = float(r.get(t, "lr", (int, float), "train.", required=False, default=0.0025))
    r1_gamma = float(r.get(t, "r1_gamma", (int, float), "train.", required=False, default=0.1))
    r1_every = r.get(t, "r1_every", int, "train.", required=False, default=16)
    aux_weight = float(r.get(t, "aux_weight", (int, float), "train.", required=False, default=1.0))
    mixing = float(r.get(t, "style_mixing", (int, float), "train.", required=False, default=0.5))
    ema_kimg = float(r.get(t, "ema_images", (int, float), "train.", required=False, default=10000))
    seed = r.get(t, "seed", int, "train.", required=False, default=0)
    every = r.get(t, "checkpoint_every", int, "train.", required=False, default=250)
    size = r.get(m, "image_size", int, "model.", required=False, default=32)
    g_widths = tuple(r.get(m, "widths", list, "model.", required=False, default=[128, 128, 64, 32]))
    d_widths = tuple(r.get(m, "d_widths", list, "model.", required=False, default=[32, 64, 128, 128]))
    latent_dim = r.get(m, "latent_dim", int, "model.", required=False, default=128)
    class_dim = r.get(m, "class_dim", int, "model.", required=False, default=64)
    mapping_layers = r.get(m, "mapping_layers", int, "model.", required=False, default=4)
    bf16 = bool(r.get(t, "bfloat16", bool, "train.", required=False, default=True))

    data = glyph_data(recipe, seed, log)
    real = ink_at(data.train, size).reshape(len(data.train), len(CHARSET), 1, size, size) * 2 - 1  # −1 … 1
    torch.manual_seed(seed)
    g = StyleGenerator(size, 1, latent_dim, latent_dim, len(CHARSET), class_dim, mapping_layers, g_widths)
    d = Discriminator(size, 1, len(CHARSET), d_widths)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
    c = r1_every / (r1_every + 1)  # lazy regularisation: adjust D's Adam for the extra R1 steps
    opt_d = torch.optim.Adam(d.parameters(), lr=lr * c, betas=(0.0, 0.99 ** c), eps=1e-8)
    gen = torch.Generator().manual_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run_dir / "checkpoint.safetensors", recipe, {"g": g, "d": d, "g_ema": g_ema},
                      {"g": opt_g, "d": opt_d}, gen)
    start = 0
    if resume and ckpt.path.exists():
        start = ckpt.load()
        log(f"resumed from {ckpt.path} at step {start}")
    log(f"training G {sum(p.numel() for p in g.parameters()) / 1e6:.2f} M + D "
        f"{sum(p.numel() for p in d.parameters()) / 1e6:.2f} M parameters for {steps} steps of {batch}")
    ema_decay = 0.5 ** (batch / max(ema_kimg, 1.0))
    n_f = real.shape[0]
    bar = ProgressBar(steps, start=start, unit="img")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    for step in range(start, steps):
        # warm-up, constant, then a cosine fall to a tenth over the second half
        fall = max(0, step - steps // 2) / max(1, steps - steps // 2)
        scale = min(1.0, (step + 1) / max(1, steps // 50)) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fall)))
        for opt, base in ((opt_g, lr), (opt_d, lr * c)):
            for group in opt.param_groups:
                group["lr"] = base * scale
        f = torch.randint(0, n_f, (batch,), generator=gen)
        labels = torch.randint(0, len(CHARSET), (batch,), generator=gen)
        x_real = real[f, labels]
        z = torch.randn(batch, latent_dim, generator=gen)
        fake_labels = torch.randint(0, len(CHARSET), (batch,), generator=gen)
        noise = g.make_noise(batch, gen)

        # --- discriminator ---
        with autocast:
            with torch.no_grad():
                x_fake = g.synthesis(_mixed_ws(g, z, gen, mixing), fake_labels, noise)
            logit_r, aux_r = d(x_real, labels)
            logit_f, _ = d(x_fake.detach(), fake_labels)
        loss_d = F.softplus(logit_f.float()).mean() + F.softplus(-logit_r.float()).mean() \
            + aux_weight * F.cross_entropy(aux_r.float(), labels)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if r1_gamma > 0 and step % r1_every == 0:  # R1 in full precision: the gradient penalty is delicate
            xr = x_real.detach().requires_grad_(True)
            logit, _ = d(xr, labels)
            (grad,) = torch.autograd.grad(logit.sum(), xr, create_graph=True)
            r1 = grad.square().sum((1, 2, 3)).mean() * (r1_gamma / 2) * r1_every
            opt_d.zero_grad(set_to_none=True)
            r1.backward()
            opt_d.step()

        # --- generator ---
        z = torch.randn(batch, latent_dim, generator=gen)
        with autocast:
            ws = _mixed_ws(g, z, gen, mixing)
            x_fake = g.synthesis(ws, fake_labels, g.make_noise(batch, gen))
            logit_f, aux_f = d(x_fake, fake_labels)
        loss_g = F.softplus(-logit_f.float()).mean() + aux_weight * F.cross_entropy(aux_f.float(), fake_labels)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            g.w_avg.lerp_(ws[:, 0].float().mean(0), 1 - 0.995)
        ema_update(g_ema, g, ema_decay)
        bar.update(step + 1, batch, d=loss_d.item(), g=loss_g.item())
        if (step + 1) % every == 0 or step + 1 == steps:
            ckpt.save(step + 1)
    bar.close()
    train_seconds = ckpt.seconds
    g_ema.eval()

    with torch.inference_mode():
        w = torch.cat([g_ema.map(sample_prior(seed + 7, (latent_dim,), batch=4096)[i:i + 1024])
                       for i in range(0, 4096, 1024)])
    directions = principal_directions(w, k=16)

    ev = recipe.evaluate
    samples = int(ev.get("samples", 2480))
    clf = shared_classifier(data.train.numpy(), steps=int(ev.get("classifier_steps", 1500)), log=log)
    held = ink_at(data.held, size)
    want = balanced_labels(samples, seed + 2)
    metrics = {}
    for psi, prefix in ((1.0, "sample_"), (0.7, "sample_psi_0.7_")):
        ink = sample(g_ema, seed + 2, want, psi)
        metrics.update(score(clf, ink, want, held, prefix=prefix))
    native = data.held.shape[-1]  # real glyphs at the data's own size: the classifier's ceiling, the data's spread
    real_scores = score(clf, ink_at(data.held, native), torch.arange(len(CHARSET)).repeat(len(data.held)),
                        ink_at(data.train[:len(data.held)], native), prefix="heldout_real_")
    metrics["classifier_accuracy_heldout_real"] = real_scores["heldout_real_accuracy"]
    metrics["frechet_distance_heldout_vs_training_real"] = real_scores["heldout_real_frechet_distance"]
    vae = Path(str(ev.get("compare_vae", "models/glyphs")))
    if not vae.is_absolute():
        vae = (recipe.path.parent.parent / vae) if not vae.exists() else vae
    if (vae / "model.toml").exists():
        metrics.update(vae_reference(vae, clf, held, samples, seed + 2))
    metrics["samples"] = samples
    for key, value in metrics.items():
        log(f"  {key}: {value}")

    manifest = {
        **manifest_head(recipe, "gan"),
        "output": {"kind": "image", "width": size, "height": size, "channels": 1},
        "latent": {"shape": [latent_dim], "prior": "normal"},
        "conditions": {"kind": "text", "alphabet": CHARSET, "default": recipe.package.get("default_prompt", "Aa")},
        "architecture": {"image_size": size, "widths": list(g_widths), "class_dim": class_dim,
                         "mapping_layers": mapping_layers, "ink_on_paper": True},
        "training": {
            "trainer": TRAINER, "app_version": __version__, "steps": steps, "batch": batch,
            "seconds": round(train_seconds, 1), "training_faces": len(data.train_idx),
            "heldout_faces": len(data.held_idx), "heldout_families": data.heldout_families,
            "quality": metrics,
        },
    }
    path = write_package(out, manifest, dict(g_ema.state_dict()), directions.to_tensors(), specimen(g_ema),
                         recipe.text)
    log(f"wrote {path}")
    return path


@torch.inference_mode()
def sample(g: StyleGenerator, seed: int, labels: torch.Tensor, psi: float = 1.0, batch: int = 256) -> torch.Tensor:
    """One prior sample per label, ink in [0, 1] (N, 1, S, S)."""
    z = sample_prior(seed, (g.z_dim,), batch=len(labels))
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(labels), batch):
        n = len(labels[i:i + batch])
        img = g(z[i:i + batch], labels[i:i + batch], psi=psi, noise=g.make_noise(n, gen))
        out.append((img.clamp(-1, 1) + 1) / 2)
    return torch.cat(out)


@torch.inference_mode()
def specimen(g: StyleGenerator, seeds=range(6), text: str = "AaBbGgQqRr3") -> np.ndarray:
    """A preview sheet: one row per seed (the same w for every character), ink on paper, uint8 (H, W)."""
    labels = torch.tensor([CHARSET.index(ch) for ch in text])
    rows = []
    for seed in seeds:
        z = sample_prior(seed, (g.z_dim,))[None].expand(len(text), -1)
        noise = [n.expand(len(text), -1, -1, -1) for n in g.make_noise(1, torch.Generator().manual_seed(seed))]
        img = (g(z, labels, noise=noise).clamp(-1, 1) + 1) / 2
        rows.append(img[:, 0])
    return ink_sheet(rows)

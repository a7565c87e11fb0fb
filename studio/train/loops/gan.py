"""The GAN loop (family `gan`): a style-based generator (studio.nets.stylegan.StyleGenerator) against a residual
discriminator with a minibatch-deviation channel. Loss: non-saturating logistic with lazy R1 on the (augmented)
reals; style-mixing regularisation; the package holds an exponential moving average of the generator. Adam with a
warm-up, then a cosine fall to a tenth over the second half. bfloat16 autocast where asked (R1 in full precision).

Options that bring it to StyleGAN2's faithful recipe (their defaults keep the loop as it trained the shipped
glyph-gan, so older recipes reproduce their packages): train.conditioning = "projection" drops the auxiliary
classifier (see below) and conditions the discriminator by projection alone; train.pl_weight > 0 adds lazy
path-length regularisation every train.pl_every steps (half a batch, full precision, G's Adam adjusted like D's for
R1); train.mapping_lr_mul sets the mapping network's learning-rate multiplier (StyleGAN's 0.01 barely moves it in a
few thousand steps; packages always store it at 0.01, so the app reads any run the same way). Two more against
the collapse of a character-conditioned GAN onto one style per character: train.group_characters puts one character
in each minibatch-deviation group (so the discriminator's deviation channel measures the spread of styles within a
character, as it does for an unconditional GAN), and train.diversity_weight adds diversity-sensitive regularisation
(DSGAN) over pairs of one character's seeds.

Two sources feed it:
- `glyph-gan`, the recipe's fonts (studio.train.data.glyphs): conditioned on the character, through a projection head
  (Miyato & Koyama 2018) and, with train.conditioning = "aux" (the default), an auxiliary classifier head trained on
  real glyphs only, whose loss on fakes keeps the generator drawing the asked-for character (AC-GAN; it also pulls
  every seed toward the most recognisable drawing of the character, which narrows the styles). Scored by the glyph classifier against held-out families.
- `folder-gan`, a folder of the user's pictures (studio.train.data.folders): unconditional, grey or colour. A folder
  holds tens or hundreds of pictures, not the tens of thousands a GAN usually sees, so the discriminator looks at
  every picture (real or made) through the same random, differentiable changes — colour, translation and cutout
  (DiffAugment, Zhao et al. 2020) — and the moving average follows closely early on (train.ema_rampup).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TypedDict, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.errors import RecipeError
from studio.latent.directions import principal_directions
from studio.latent.seeds import sample_prior
from studio.nets.stylegan import EqConv, EqLinear, StyleGenerator
from studio.train.common import (RecentMean, Run, ScheduleDefaults, ema_update, positive, rand, read_schedule,
                                 set_lr)
from studio.train.data.folders import (MIN_FILES, Pictures, data_folder, image_sheet, package_table,
                                       read_images)
from studio.train.data.glyphs import Cells, glyph_data, grouped_labels, ink_at, ink_sheet
from studio.train.fonts import CHARSET
from studio.train.monitor import Monitor
from studio.train.recipe import Recipe
from studio.train.scoring.glyphs import balanced_labels, score, shared_classifier, vae_reference

SIZES = (8, 16, 32, 64, 128, 256)
AUGMENTS = ("color", "translation", "cutout")
# how the discriminator hears the character: "aux" = projection head + auxiliary classifier whose loss on fakes
# steers the generator (AC-GAN; narrows each character's styles), "projection" = projection head only (StyleGAN2-ADA)
CONDITIONINGS = ("aux", "projection")
PL_DECAY = 0.01  # the path-length target follows the running mean of the lengths (StyleGAN2)
PL_BATCH_SHRINK = 2  # the path-length step draws half a batch
# the defaults of each source: [train] figures, then the rest
class _SourceDefaults(TypedDict):
    ema_images: float
    ema_rampup: float
    augment: str
    flip: bool
    bfloat16: bool | str


SCHEDULES: dict[str, ScheduleDefaults] = {
    "glyphs": dict(batch=32, lr=0.0025, warmup=lambda steps: max(1, steps // 50), checkpoint_every=250),
    "folder": dict(batch=16, lr=0.0025, warmup=100, checkpoint_every=100),
}
DEFAULTS: dict[str, _SourceDefaults] = {
    "glyphs": dict(ema_images=10000, ema_rampup=0.0, augment="", flip=False, bfloat16=True),
    "folder": dict(ema_images=5000, ema_rampup=0.05, augment=",".join(AUGMENTS), flip=True, bfloat16="auto"),
}


class Discriminator(nn.Module):
    def __init__(self, image_size: int = 32, channels: int = 1, num_classes: int = 0,
                 widths: tuple[int, ...] = (32, 64, 128, 128), aux: bool = True):
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
        self.has_aux = bool(num_classes) and aux
        if num_classes:
            self.embed = nn.Embedding(num_classes, top)
        if self.has_aux:
            self.aux = EqLinear(top, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (B, C, S, S) in −1 … 1 → realness logits (B,), and character logits (B, classes) when the
        discriminator has the auxiliary classifier (else None)."""
        h = F.leaky_relu(self.from_rgb(x), 0.2) * math.sqrt(2)
        for block in self.blocks:
            conv, down, skip = cast(nn.ModuleList, block)  # 3×3, 3×3 down, 1×1 skip down
            y = F.leaky_relu(conv(h), 0.2) * math.sqrt(2)
            y = F.leaky_relu(down(y), 0.2) * math.sqrt(2)
            h = (y + skip(h)) / math.sqrt(2)
        # minibatch standard deviation over groups of 4
        b = h.shape[0]
        g = deviation_group(b)
        std = h.float().reshape(g, -1, *h.shape[1:]).std(0, unbiased=False).mean((1, 2, 3))  # (b/g,)
        std = std.to(h.dtype).repeat(g)[:, None, None, None].expand(-1, 1, *h.shape[2:])
        h = F.leaky_relu(self.final_conv(torch.cat([h, std], 1)), 0.2) * math.sqrt(2)
        f = F.leaky_relu(self.fc(h.flatten(1)), 0.2) * math.sqrt(2)
        logit = self.out(f)[:, 0]
        aux = None
        if self.num_classes:
            logit = logit + (self.embed(labels) * f).sum(1) / math.sqrt(f.shape[1])
        if self.has_aux:
            aux = self.aux(f)
        return logit, aux


def pair_diversity(x: torch.Tensor, z: torch.Tensor, groups: int) -> torch.Tensor:
    """Pictures `x` (B, …) and their latents `z` (B, D) as `groups` blocks of B / groups: block 0 is paired with
    block 1 element by element, block 2 with 3, …, so each pair is i and i + B / groups, two members of one
    minibatch-deviation group (one character when the labels are grouped; see deviation_group). Each pair's mean
    absolute picture difference over its mean absolute latent difference (DSGAN's ratio), one value a pair."""
    xs = x.float().reshape(groups, -1, *x.shape[1:])
    zs = z.float().reshape(groups, -1, z.shape[-1])
    pairs = groups // 2 * 2
    dx = (xs[0:pairs:2] - xs[1:pairs:2]).abs().flatten(2).mean(2)
    dz = (zs[0:pairs:2] - zs[1:pairs:2]).abs().mean(2)
    return (dx / dz.clamp(min=1e-8)).flatten()


def deviation_group(batch: int) -> int:
    """How many pictures the discriminator's minibatch standard deviation pools (StyleGAN's 4, or fewer to divide
    the batch): pictures i, i + batch / group, … form one group."""
    return math.gcd(4, batch)


class PathLengthMean(nn.Module):
    """The running mean of the path lengths (a buffer, so the checkpoint keeps it and a resumed run goes on alike)."""

    mean: torch.Tensor

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))


def path_length_penalty(g: StyleGenerator, ws: torch.Tensor, labels: torch.Tensor | None, gen: torch.Generator,
                        state: PathLengthMean) -> torch.Tensor:
    """StyleGAN2's path-length regularisation: ‖J_wᵀ y‖ for random images y (unit variance per pixel, scaled by
    1/√pixels) should be the same for every w — a fixed step in w changes the image by a fixed amount — so the
    penalty is the squared deviation of each sample's length from their running mean (updated here). `ws` must be
    part of the graph that makes the images (B, num_ws, w_dim)."""
    img = g.synthesis(ws, labels, g.make_noise(ws.shape[0], gen, ws.device))
    y = rand(tuple(img.shape), gen, img.device) / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img.float() * y).sum(), ws, create_graph=True)
    lengths = grad.float().square().sum(2).mean(1).sqrt()
    with torch.no_grad():
        state.mean.copy_(state.mean.lerp(lengths.mean(), PL_DECAY))
    return (lengths - state.mean).square().mean()


def mixed_ws(g: StyleGenerator, z: torch.Tensor, gen: torch.Generator, prob: float) -> torch.Tensor:
    """w per layer; with probability `prob` a second z takes over from a random layer (style-mixing
    regularisation, so that mixing styles across layers works at render time)."""
    w = g.map(z)[:, None].expand(-1, g.num_ws, -1)
    if prob > 0 and float(torch.rand((), generator=gen)) < prob:
        cut = int(torch.randint(1, g.num_ws, (), generator=gen))
        w2 = g.map(rand(tuple(z.shape), gen, z.device))[:, None].expand(-1, g.num_ws, -1)
        w = torch.cat([w[:, :cut], w2[:, cut:]], 1)
    return w


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


def train(recipe: Recipe, out: Path, run_dir: Path, *, data: str, resume: bool = False,
          monitor: Monitor | None = None) -> Path:
    """Run a GAN recipe fed by `data` ("glyphs" or "folder"): the loop, then the directions, measures and package."""
    monitor = monitor or Monitor()
    r, t, defaults = recipe.reader(), recipe.train, DEFAULTS[data]
    source = (_Glyphs if data == "glyphs" else _Folder)(recipe)
    s = read_schedule(recipe, **SCHEDULES[data])
    if s.batch < 2:
        raise RecipeError(f"a GAN's discriminator compares pictures within a batch: needs at least 2, got {s.batch}",
                          recipe.path, "train.batch")
    r1_gamma = float(r.get(t, "r1_gamma", (int, float), "train.", required=False, default=0.1))
    r1_every = r.get(t, "r1_every", int, "train.", required=False, default=16, check=positive)
    aux_weight = float(r.get(t, "aux_weight", (int, float), "train.", required=False, default=1.0))
    conditioning = r.get(t, "conditioning", str, "train.", required=False, default="aux",
                         check=lambda v: None if v in CONDITIONINGS else
                         f"must be {' or '.join(repr(c) for c in CONDITIONINGS)}, got {v!r}")
    pl_weight = float(r.get(t, "pl_weight", (int, float), "train.", required=False, default=0.0,
                            check=lambda v: None if v >= 0 else f"must not be negative, got {v}"))
    pl_every = r.get(t, "pl_every", int, "train.", required=False, default=4, check=positive)
    mapping_lr_mul = float(r.get(t, "mapping_lr_mul", (int, float), "train.", required=False, default=0.01,
                                 check=lambda v: None if 0 < v <= 1 else f"must be above 0 and at most 1, got {v}"))
    # group_characters: each minibatch-deviation group holds one character (real: from different faces; made: from
    # different seeds), so the deviation the discriminator sees is the spread of styles within a character — with
    # characters mixed in a group it is the spread between characters, and a generator that draws every character
    # in one style goes unseen (the collapse of glyph-gan 1.0.0)
    group_characters = r.get(t, "group_characters", bool, "train.", required=False, default=False)
    # diversity_weight > 0: diversity-sensitive regularisation (Yang et al. 2019, "DSGAN"): the generator is
    # rewarded for making pictures of one character differ as much as their latents do, up to diversity_cap (the
    # mean absolute pixel difference, −1 … 1 scale, per unit of mean absolute z difference); pairs are made of
    # the same character's seeds within a deviation group, so it needs group_characters on a source with characters
    diversity_weight = float(r.get(t, "diversity_weight", (int, float), "train.", required=False, default=0.0,
                                   check=lambda v: None if v >= 0 else f"must not be negative, got {v}"))
    diversity_cap = float(r.get(t, "diversity_cap", (int, float), "train.", required=False, default=0.2,
                                check=lambda v: None if v > 0 else f"must be above 0, got {v}"))
    mixing = float(r.get(t, "style_mixing", (int, float), "train.", required=False, default=0.5))
    ema_images = float(r.get(t, "ema_images", (int, float), "train.", required=False,
                             default=defaults["ema_images"]))
    ema_rampup = float(r.get(t, "ema_rampup", (int, float), "train.", required=False,
                             default=defaults["ema_rampup"],
                             check=lambda v: None if v >= 0 else f"must not be negative, got {v}"))
    policy = _policy(recipe, defaults["augment"])
    flip = r.get(recipe.data, "flip", bool, "data.", required=False, default=defaults["flip"])
    run = Run(recipe, run_dir, resume, monitor, s)
    run.precision(defaults["bfloat16"])
    source.load(run, flip)
    device, gen, batch, latent_dim, classes = run.device, run.gen, s.batch, source.latent_dim, source.real.classes
    if group_characters and not classes:
        raise RecipeError("train.group_characters needs characters to group: this source has none", recipe.path,
                          "train.group_characters")
    group = deviation_group(batch) if group_characters else 1
    if diversity_weight > 0 and classes and group < 2:
        raise RecipeError("train.diversity_weight compares seeds of one character: it needs group_characters = "
                          "true (and a batch of at least 2)", recipe.path, "train.diversity_weight")
    if diversity_weight > 0 and batch % 2:
        raise RecipeError(f"train.diversity_weight compares pictures in pairs: the batch must be even, got {batch}",
                          recipe.path, "train.batch")
    run.seed_weights()
    g = StyleGenerator(source.size, source.channels, latent_dim, latent_dim, classes, source.class_dim,
                       source.mapping_layers, tuple(source.g_widths), mapping_lr_mul=mapping_lr_mul).to(device)
    d = Discriminator(source.size, source.channels, classes, tuple(source.d_widths),
                      aux=conditioning == "aux").to(device)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    # lazy path-length steps: G's Adam adjusted as D's is for R1 (none when there are none: today's recipes)
    cg = pl_every / (pl_every + 1) if pl_weight > 0 else 1.0
    opt_g = torch.optim.Adam(g.parameters(), lr=s.lr * cg, betas=(0.0, 0.99 ** cg), eps=1e-8)
    pl_state = PathLengthMean().to(device)
    c = r1_every / (r1_every + 1)  # lazy regularisation: adjust D's Adam for the extra R1 steps
    opt_d = torch.optim.Adam(d.parameters(), lr=s.lr * c, betas=(0.0, 0.99 ** c), eps=1e-8)
    augments = f"; augment: {', '.join(policy) or 'none'}" if data == "folder" else ""
    modules: dict[str, nn.Module] = {"g": g, "d": d, "g_ema": g_ema}
    if pl_weight > 0:
        modules["pl"] = pl_state
    run.begin(modules, {"g": opt_g, "d": opt_d}, source.about + augments)
    source.start_preview(g, run)
    recent = RecentMean()

    def seen(x: torch.Tensor) -> torch.Tensor:  # what the discriminator sees
        return augment(x.float(), policy, gen) if policy else x

    for step in run.steps(lambda: (source.preview(g_ema),)):
        # warm-up, constant, then a cosine fall to a tenth over the second half
        fall = max(0, step - s.steps // 2) / max(1, s.steps - s.steps // 2)
        scale = min(1.0, (step + 1) / max(1, s.warmup)) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fall)))
        set_lr(opt_g, s.lr * cg * scale)
        set_lr(opt_d, s.lr * c * scale)
        x_real, labels = (cast(Cells, source.real).draw(batch, gen, device, group) if group > 1  # glyphs only
                          else source.real.draw(batch, gen, device))
        z = rand((batch, latent_dim), gen, device)
        fake_labels = grouped_labels(classes, batch, group, gen).to(device) if classes else None
        noise = g.make_noise(batch, gen, device)

        # --- discriminator ---
        with run.autocast(), torch.no_grad():
            x_fake = g.synthesis(mixed_ws(g, z, gen, mixing), fake_labels, noise)
        seen_real, seen_fake = seen(x_real), seen(x_fake)
        with run.autocast():
            logit_r, aux_r = d(seen_real, labels)
            logit_f, _ = d(seen_fake, fake_labels)
        loss_d = F.softplus(logit_f.float()).mean() + F.softplus(-logit_r.float()).mean()
        if aux_r is not None and labels is not None:  # both with classes
            loss_d = loss_d + aux_weight * F.cross_entropy(aux_r.float(), labels)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if r1_gamma > 0 and step % r1_every == 0:  # R1 in full precision: the gradient penalty is delicate
            xr = seen_real.detach().requires_grad_(True)
            logit, _ = d(xr, labels)
            (grad,) = torch.autograd.grad(logit.sum(), xr, create_graph=True)
            r1 = grad.square().sum((1, 2, 3)).mean() * (r1_gamma / 2) * r1_every
            opt_d.zero_grad(set_to_none=True)
            r1.backward()
            opt_d.step()

        # --- generator ---
        z = rand((batch, latent_dim), gen, device)
        with run.autocast():
            ws = mixed_ws(g, z, gen, mixing)
            x_fake = g.synthesis(ws, fake_labels, g.make_noise(batch, gen, device))
        seen_g = seen(x_fake)
        with run.autocast():
            logit_g, aux_g = d(seen_g, fake_labels)
        loss_g = F.softplus(-logit_g.float()).mean()
        if diversity_weight > 0:
            diversity = pair_diversity(x_fake, z, max(group, 2)).clamp(max=diversity_cap)
            loss_g = loss_g - diversity_weight * diversity.mean()
        if aux_g is not None and fake_labels is not None:
            loss_g = loss_g + aux_weight * F.cross_entropy(aux_g.float(), fake_labels)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if pl_weight > 0 and step % pl_every == 0:  # in full precision, like R1
            n = max(1, batch // PL_BATCH_SHRINK)
            ws_pl = mixed_ws(g, rand((n, latent_dim), gen, device), gen, mixing)
            pl = path_length_penalty(g, ws_pl, fake_labels[:n] if fake_labels is not None else None, gen, pl_state)
            opt_g.zero_grad(set_to_none=True)
            (pl * pl_weight * pl_every).backward()
            opt_g.step()
        with torch.no_grad():
            g.w_avg.lerp_(ws[:, 0].float().mean(0), 1 - 0.995)
        # EMA half-life: ema_images, at first at most ema_rampup of the pictures seen so far (it follows closely)
        half_life = min(ema_images, (step + 1) * batch * ema_rampup) if ema_rampup > 0 else ema_images
        ema_update(g_ema, g, 0.5 ** (batch / max(1.0, half_life)))
        figures = {"d": loss_d.item(), "g": loss_g.item()}
        recent.add(loss_d=figures["d"], loss_g=figures["g"], real_logit=logit_r.float().mean().item(),
                   fake_logit=logit_f.float().mean().item())
        run.report(step, batch, loss=figures["d"] + figures["g"], **figures)
    g_ema.eval()
    with torch.inference_mode():
        z = sample_prior(s.seed + 7, (latent_dim,), batch=4096)
        w = torch.cat([g_ema.map(z[i:i + 1024].to(device)).float().cpu() for i in range(0, 4096, 1024)])
    directions = principal_directions(w, k=min(16, latent_dim))
    sections = {
        "output": {"kind": "image", "width": source.size, "height": source.size, "channels": source.channels},
        "latent": {"shape": [latent_dim], "prior": "normal"},
        "conditions": source.conditions,
        "architecture": {"image_size": source.size, "widths": list(source.g_widths), "class_dim": source.class_dim,
                         "mapping_layers": source.mapping_layers, "ink_on_paper": data == "glyphs"},
    }
    training, preview = source.finish(run, g_ema, recent, policy)
    weights = {k: v.float().cpu() for k, v in g_ema.packaged_state().items()}
    return run.write(out, "gan", sections, training, weights, directions, preview)


def _policy(recipe: Recipe, default: str) -> tuple[str, ...]:
    text = recipe.reader().get(recipe.train, "augment", str, "train.", required=False, default=default)
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    wrong = [p for p in parts if p not in AUGMENTS]
    if wrong:
        raise RecipeError(f"unknown augmentation {', '.join(wrong)} (known: {', '.join(AUGMENTS)}; \"\" for none)",
                          recipe.path, "train.augment")
    return parts


# --- the recipe's fonts ---------------------------------------------------------------------------------------------


class _Glyphs:
    channels = 1

    def __init__(self, recipe: Recipe):
        r, m = recipe.reader(), recipe.model
        self.recipe = recipe
        self.size = r.get(m, "image_size", int, "model.", required=False, default=32)
        self.g_widths = list(r.get(m, "widths", list, "model.", required=False, default=[128, 128, 64, 32]))
        self.d_widths = list(r.get(m, "d_widths", list, "model.", required=False, default=[32, 64, 128, 128]))
        self.latent_dim = r.get(m, "latent_dim", int, "model.", required=False, default=128)
        self.class_dim = r.get(m, "class_dim", int, "model.", required=False, default=64)
        self.mapping_layers = r.get(m, "mapping_layers", int, "model.", required=False, default=4)
        self.conditions = {"kind": "text", "alphabet": CHARSET,
                           "default": recipe.package.get("default_prompt", "Aa")}

    def load(self, run: Run, flip: bool) -> None:
        self.data = glyph_data(self.recipe, run.schedule.seed, run.log)
        size = self.size
        real = ink_at(self.data.train, size).reshape(len(self.data.train), len(CHARSET), 1, size, size) * 2 - 1
        if flip:
            raise RecipeError("glyphs are not mirrored (a mirrored glyph is another character)", self.recipe.path,
                              "data.flip")
        self.real = Cells(real.to(run.device))
        self.about = f"on {len(self.data.train)} faces"

    def start_preview(self, g: StyleGenerator, run: Run) -> None:
        pass

    def preview(self, g_ema: StyleGenerator) -> np.ndarray:
        return specimen(g_ema, seeds=range(4))

    def finish(self, run: Run, g_ema: StyleGenerator, recent: RecentMean,
               policy: tuple[str, ...]) -> tuple[dict, np.ndarray]:
        recipe, data, size, seed = self.recipe, self.data, self.size, run.schedule.seed
        g_ema = g_ema.cpu()  # measured on the CPU
        ev = recipe.evaluate
        samples = int(ev.get("samples", 2480))
        clf = shared_classifier(data.train.numpy(), steps=int(ev.get("classifier_steps", 1500)), log=run.log)
        held = ink_at(data.held, size)
        want = balanced_labels(samples, seed + 2)
        metrics = {}
        for psi, prefix in ((1.0, "sample_"), (0.7, "sample_psi_0.7_")):
            ink = sample(g_ema, seed + 2, want, psi)
            metrics.update(score(clf, ink, want, held, prefix=prefix))
        native = data.held.shape[-1]  # real glyphs at the data's own size: the classifier's ceiling, the spread
        real_scores = score(clf, ink_at(data.held, native), torch.arange(len(CHARSET)).repeat(len(data.held)),
                            ink_at(data.train[:len(data.held)], native), prefix="heldout_real_")
        metrics["classifier_accuracy_heldout_real"] = real_scores["heldout_real_accuracy"]
        metrics["frechet_distance_heldout_vs_training_real"] = real_scores["heldout_real_frechet_distance"]
        if "heldout_real_style_spread" in real_scores:  # how differently real typefaces draw a character
            metrics["style_spread_heldout_real"] = real_scores["heldout_real_style_spread"]
        vae = Path(str(ev.get("compare_vae", "models/glyphs")))
        if not vae.is_absolute():
            vae = (recipe.path.parent.parent / vae) if not vae.exists() else vae
        if (vae / "model.toml").exists():
            metrics.update(vae_reference(vae, clf, held, samples, seed + 2))
        metrics["samples"] = samples
        for key, value in metrics.items():
            run.log(f"  {key}: {value}")
        return {**data.summary(), "quality": metrics}, specimen(g_ema)


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
    device = next(g.parameters()).device
    labels = torch.tensor([CHARSET.index(ch) for ch in text], device=device)
    rows = []
    for seed in seeds:
        z = sample_prior(seed, (g.z_dim,))[None].expand(len(text), -1).to(device)
        noise = [n.expand(len(text), -1, -1, -1) for n in g.make_noise(1, torch.Generator().manual_seed(seed), device)]
        img = (g(z, labels, noise=noise).clamp(-1, 1) + 1) / 2
        rows.append(img[:, 0].float().cpu())
    return ink_sheet(rows)


# --- a folder of pictures -------------------------------------------------------------------------------------------


class _Folder:
    class_dim = 1
    conditions = {"kind": "none"}

    def __init__(self, recipe: Recipe):
        r, d, m = recipe.reader(), recipe.data, recipe.model
        self.recipe = recipe
        self.size = r.get(d, "size", int, "data.", required=False, default=32,
                          check=lambda v: None if v in SIZES else f"must be one of {', '.join(map(str, SIZES))} "
                          f"(4·2^n), got {v}")
        self.latent_dim = r.get(m, "latent_dim", int, "model.", required=False, default=64, check=positive)
        width = r.get(m, "width", int, "model.", required=False, default=32, check=positive)
        max_width = r.get(m, "max_width", int, "model.", required=False, default=128, check=positive)
        self.mapping_layers = r.get(m, "mapping_layers", int, "model.", required=False, default=2, check=positive)
        self.g_widths = level_widths(self.size, width, max_width)
        self.d_widths = self.g_widths[::-1]

    def load(self, run: Run, flip: bool) -> None:
        data = read_images(self.recipe, self.size, MIN_FILES["gan"], "a GAN", run.log)
        self.channels = int(data.shape[1])
        self.real = Pictures((data * 2 - 1).to(run.device), flip)  # −1 … 1
        self.about = f"on {len(data)} pictures"

    def start_preview(self, g: StyleGenerator, run: Run) -> None:
        show_gen = torch.Generator().manual_seed(run.schedule.seed + 1)  # the same 16 pictures at every preview
        self.show_z = torch.randn(16, self.latent_dim, generator=show_gen).to(run.device)
        self.show_noise = g.make_noise(16, show_gen, run.device)

    @torch.inference_mode()
    def preview(self, g_ema: StyleGenerator) -> np.ndarray:
        shown = g_ema(self.show_z, None, noise=self.show_noise).float()
        return image_sheet((shown + 1) / 2, self.channels, self.size)

    def finish(self, run: Run, g_ema: StyleGenerator, recent: RecentMean,
               policy: tuple[str, ...]) -> tuple[dict, np.ndarray]:
        quality = {"training_images": len(self.real.images), **recent.means()}
        for key, value in quality.items():
            run.log(f"  {key}: {value}")
        return {"data": str(data_folder(self.recipe)), "augment": list(policy), "quality": quality}, \
            self.preview(g_ema)


def level_widths(size: int, width: int, max_width: int) -> list[int]:
    """The generator's channels at 4×4, 8×8 … size×size: `width` at full size, doubling toward 4×4 up to
    `max_width` (the discriminator mirrors them)."""
    levels = int(math.log2(size // 4))
    return [min(max_width, width * 2 ** (levels - i)) for i in range(levels + 1)]


def folder_recipe(folder: Path, model_id: str, size: int = 32, steps: int = 3000, fit: str = "crop",
                  batch: int = 16, latent_dim: int = 64, width: int = 32, max_width: int = 128,
                  augment: str = "color,translation,cutout", name: str = "", device: str = "cpu",
                  seed: int = 0) -> dict:
    """The tables of the recipe `latent-studio train --family gan --data FOLDER` runs (studio.train.folder names
    the trainer and writes it to the run folder, and the package keeps it: the run reproduces)."""
    return {
        "package": package_table(model_id, name, f"A GAN trained on the pictures in {folder}.",
                                 "the pictures' own licence"),
        "data": {"folder": str(Path(folder).resolve()), "size": size, "fit": fit, "flip": True},
        "model": {"latent_dim": latent_dim, "width": width, "max_width": max_width, "mapping_layers": 2},
        "train": {"seed": seed, "steps": steps, "batch": batch, "lr": 0.0025, "warmup": 100, "r1_gamma": 0.1,
                  "r1_every": 16, "style_mixing": 0.5, "ema_images": 5000, "augment": augment,
                  "checkpoint_every": 100, "device": device, "bfloat16": "auto"},
    }

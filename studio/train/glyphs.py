"""Train the glyph-style VAE from Debian's fonts and write a model package.

The model (family `vae`, text condition) encodes a few glyphs of one font into a style latent and draws any of the
62 characters in that style. Quality is measured on held-out font families: reconstruction error, and the share of
prior samples that a separately trained glyph classifier reads as the asked-for character.
"""

from __future__ import annotations

import glob
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio import __version__
from studio.errors import RecipeError
from studio.nets.setvae import SetVAE, elbo
from studio.latent.directions import Directions, principal_directions
from studio.latent.seeds import sample_prior
from studio.paths import user_cache_dir
from studio.train.fonts import CHARSET, GlyphSet, find_font_files, load_or_build, missing_packages, split_by_family
from studio.train.package import write_package
from studio.train.progress import ProgressBar
from studio.train.recipe import Recipe
from studio.weights import read_tensors, write_tensors

TRAINER = "glyph-vae"
# Characters whose shapes coincide in many typefaces: reported as a second, lenient accuracy.
CONFUSABLE = ["Il1", "O0o", "Cc", "Ss", "Uu", "Vv", "Ww", "Xx", "Zz", "Kk", "Pp", "Yy", "Jj"]


@dataclass
class Schedule:
    steps: int
    batch_fonts: int
    context_min: int
    context_max: int
    targets: int
    lr: float
    beta: float
    beta_warmup: int
    checkpoint_every: int
    seed: int


def _schedule(recipe: Recipe) -> Schedule:
    r, t = recipe.reader(), recipe.train
    ctx = r.get(t, "context", list, "train.", required=False, default=[1, 4])
    if len(ctx) != 2 or not all(isinstance(c, int) and c > 0 for c in ctx) or ctx[0] > ctx[1]:
        raise r.fail("train.context", f"must be [min, max] glyphs per style set, got {ctx!r}")
    return Schedule(
        steps=r.get(t, "steps", int, "train."), batch_fonts=r.get(t, "batch_fonts", int, "train.", required=False,
                                                                   default=16),
        context_min=ctx[0], context_max=ctx[1],
        targets=r.get(t, "targets", int, "train.", required=False, default=8),
        lr=float(r.get(t, "lr", (int, float), "train.", required=False, default=2e-3)),
        beta=float(r.get(t, "beta", (int, float), "train.", required=False, default=1.0)),
        beta_warmup=r.get(t, "beta_warmup", int, "train.", required=False, default=0),
        checkpoint_every=r.get(t, "checkpoint_every", int, "train.", required=False, default=200),
        seed=r.get(t, "seed", int, "train.", required=False, default=0),
    )


def load_fonts(recipe: Recipe, log: Callable[[str], None] = print) -> GlyphSet:
    """The recipe's glyph set; fails naming the Debian packages to install when any is missing."""
    r, d = recipe.reader(), recipe.data
    packages = r.get(d, "packages", list, "data.", required=False, default=[])
    missing = missing_packages(packages)
    if missing:
        raise RecipeError("these Debian font packages are not installed: " + " ".join(missing)
                          + "\n  install them with: sudo apt-get install -y " + " ".join(missing), recipe.path,
                          "data.packages")
    size = r.get(d, "size", int, "data.", required=False, default=64)
    patterns = r.get(d, "font_files", list, "data.", required=False, default=[])
    if patterns:
        base = recipe.path.parent
        files = sorted({str(p) for pat in patterns for p in glob.glob(str(base / pat) if not Path(pat).is_absolute()
                                                                       else pat, recursive=True)})
    else:
        roots = r.get(d, "roots", list, "data.", required=False, default=["/usr/share/fonts"])
        files = find_font_files(roots)
    if not files:
        raise RecipeError("no font files found", recipe.path, "data")
    cache = user_cache_dir() / f"glyphs{size}-{recipe.package['id']}.npz"
    log(f"fonts: {len(files)} files; glyph cache {cache}")
    glyphs = load_or_build(cache, font_files=files, size=size)
    log(f"fonts: {len(glyphs.faces)} usable faces")
    return glyphs


# --- the glyph classifier used to score the model --------------------------------------------------------------


class GlyphClassifier(nn.Module):
    def __init__(self, classes: int = len(CHARSET)):
        super().__init__()
        self.net = nn.Sequential(
            nn.AvgPool2d(2),  # 64 → 32: enough to tell characters apart, 4× cheaper
            nn.Conv2d(1, 32, 3, 1, 1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, 1, 1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(128 * 16, 256), nn.SiLU(), nn.Dropout(0.2), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 64:
            x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True)
        return self.net(x)


def _shift(x: torch.Tensor, gen: torch.Generator, max_px: int = 3) -> torch.Tensor:
    dx, dy = (torch.randint(-max_px, max_px + 1, (2,), generator=gen)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def train_classifier(images: np.ndarray, steps: int, seed: int = 1, batch: int = 256,
                     log: Callable[[str], None] = print, bf16: bool = False) -> GlyphClassifier:
    """images (F, 62, S, S) uint8 of training fonts → a 62-way classifier (bf16: mixed precision on the CPU, about
    3× faster where the CPU has AMX)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = GlyphClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=max(steps, 1))
    data = torch.from_numpy(images)
    n_f, n_c = data.shape[:2]
    bar = ProgressBar(steps, unit="img")
    model.train()
    for step in range(1, steps + 1):
        f = torch.randint(0, n_f, (batch,), generator=gen)
        c = torch.randint(0, n_c, (batch,), generator=gen)
        x = _shift(data[f, c].float().unsqueeze(1) / 255.0, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), c)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(step, batch, loss=loss.item())
    bar.close()
    return model.eval()


def classifier_for(run_dir: Path, images: np.ndarray, steps: int, seed: int,
                   log: Callable[[str], None] = print, bf16: bool = False) -> GlyphClassifier:
    """The scoring classifier for these training images: reused from the run folder when it was trained on the
    same data with the same settings, else trained and saved there."""
    path = run_dir / "classifier.safetensors"
    key = {"steps": str(steps), "seed": str(seed), "data": hashlib.sha256(images.tobytes()).hexdigest()}
    if bf16:
        key["precision"] = "bfloat16"
    if path.exists():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if all(meta.get(k) == v for k, v in key.items()):
            model = GlyphClassifier()
            model.load_state_dict(read_tensors(path))
            log(f"reusing the glyph classifier in {path}")
            return model.eval()
    log("training the glyph classifier that scores the model")
    model = train_classifier(images, steps=steps, seed=seed, log=log, bf16=bf16)
    write_tensors(model.state_dict(), path, metadata=key)
    return model


@torch.inference_mode()
def classify(model: GlyphClassifier, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def lenient_correct(pred: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    group = torch.arange(len(CHARSET))
    for chars in CONFUSABLE:
        first = CHARSET.index(chars[0])
        for ch in chars:
            group[CHARSET.index(ch)] = first
    return group[pred] == group[want]


# --- training ---------------------------------------------------------------------------------------------------


def _batch(data: torch.Tensor, s: Schedule, gen: torch.Generator):
    n_f, n_c = data.shape[:2]
    k = int(torch.randint(s.context_min, s.context_max + 1, (1,), generator=gen))
    fonts = torch.randint(0, n_f, (s.batch_fonts,), generator=gen)
    ctx = torch.stack([torch.randperm(n_c, generator=gen)[:k] for _ in range(s.batch_fonts)])
    tgt = torch.randint(0, n_c, (s.batch_fonts, s.targets), generator=gen)
    x_ctx = data[fonts[:, None], ctx].float().unsqueeze(2) / 255.0
    x_tgt = data[fonts[:, None], tgt].float().unsqueeze(2) / 255.0
    return x_ctx, ctx, x_tgt, tgt


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, step: int,
                     recipe_text: str, seconds: float = 0.0) -> None:
    # The fitted prior is set after training, from the finished network: it is not training state.
    tensors = {f"model.{k}": v for k, v in model.state_dict().items() if not k.startswith("prior_")}
    state = opt.state_dict()
    for idx, st in state["state"].items():
        for key, value in st.items():
            tensors[f"opt.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["rng"] = gen.get_state()
    meta = {"step": str(step), "recipe": recipe_text, "format": "latent-studio-checkpoint-1",
            "seconds": f"{seconds:.1f}"}
    tmp = path.with_suffix(".tmp")
    write_tensors(tensors, tmp, metadata=meta)
    tmp.replace(path)


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                     recipe_text: str) -> tuple[int, float]:
    """Restore a checkpoint; the step it reached and the training seconds spent to get there."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("recipe") != recipe_text:
        raise RecipeError("the checkpoint was made by a different recipe; remove it or train with the recipe "
                          "that made it", path)
    tensors = read_tensors(path)
    missing, unexpected = model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                                                strict=False)
    if unexpected or any(not k.startswith("prior_") for k in missing):
        raise RecipeError(f"the checkpoint does not fit the recipe's network (missing {missing}, unexpected "
                          f"{unexpected})", path)
    state = opt.state_dict()
    for idx in range(len(state["param_groups"][0]["params"])):
        entry = {key.split(".", 2)[2]: v for key, v in tensors.items() if key.startswith(f"opt.{idx}.")}
        if entry:
            state["state"][idx] = entry
    opt.load_state_dict(state)
    gen.set_state(tensors["rng"])
    return int(meta["step"]), float(meta.get("seconds", 0.0))


def _lr_at(step: int, s: Schedule) -> float:
    warm = max(1, s.steps // 50)
    if step < warm:
        return s.lr * (step + 1) / warm
    return s.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, s.steps - warm)))


def train(recipe: Recipe, out: Path, run_dir: Path, resume: bool = False,
          log: Callable[[str], None] = print) -> Path:
    """Run the recipe: data, VAE training (checkpointed, resumable), classifier, metrics, package."""
    s = _schedule(recipe)
    glyphs = load_fonts(recipe, log)
    data_all = torch.from_numpy(glyphs.images)
    heldout_fraction = float(recipe.data.get("heldout_fraction", 0.1))
    train_idx, held_idx = split_by_family(glyphs, heldout_fraction=heldout_fraction, seed=s.seed)
    data = data_all[torch.as_tensor(train_idx)]
    log(f"split: {len(train_idx)} training faces, {len(held_idx)} held-out faces "
        f"({len({glyphs.faces[i].family for i in held_idx})} unseen families)")

    cfg = dict(image_size=glyphs.size, channels=1, latent_dim=int(recipe.model.get("latent_dim", 32)),
               num_classes=len(CHARSET), width=int(recipe.model.get("width", 32)),
               class_dim=int(recipe.model.get("class_dim", 32)), hidden=int(recipe.model.get("hidden", 256)),
               fitted_prior=bool(recipe.model.get("fitted_prior", True)))
    torch.manual_seed(s.seed)
    model = SetVAE(**cfg)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.safetensors"
    start, seconds_before = 0, 0.0
    if resume and ckpt.exists():
        start, seconds_before = _load_checkpoint(ckpt, model, opt, gen, recipe.text)
        log(f"resumed from {ckpt} at step {start}")
    elif ckpt.exists():
        log(f"starting over; an older checkpoint at {ckpt} will be replaced (use --resume to continue it)")
    log(f"training {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters for {s.steps} steps")
    bar = ProgressBar(s.steps, start=start, unit="img")
    t0 = time.perf_counter()
    model.train()
    for step in range(start, s.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, s)
        beta = s.beta * min(1.0, (step + 1) / s.beta_warmup) if s.beta_warmup else s.beta
        x_ctx, ctx, x_tgt, tgt = _batch(data, s, gen)
        logits, mu, logvar, _ = model(x_ctx, ctx, tgt, generator=gen)
        b, t = tgt.shape
        # The T targets share one latent: the KL is paid once per style set, the likelihood once per glyph.
        value, nll, kl = elbo(logits.reshape(b, -1), x_tgt.reshape(b, -1), mu, logvar, beta=beta)
        loss = -value.mean() / t
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        opt.step()
        bar.update(step + 1, b * t, loss=loss.item(), nll=nll.mean().item() / t, kl=kl.mean().item())
        if (step + 1) % s.checkpoint_every == 0 or step + 1 == s.steps:
            _save_checkpoint(ckpt, model, opt, gen, step + 1, recipe.text, seconds_before + time.perf_counter() - t0)
    bar.close()
    train_seconds = seconds_before + time.perf_counter() - t0
    model.eval()

    with torch.inference_mode():
        mus = encode_fonts(model, data)
    if model.fitted_prior:
        model.fit_prior(mus)
        # The artist's latent coordinates are the principal axes of the encoded styles, each scaled to unit
        # spread: principal direction k is axis k.
        d = cfg["latent_dim"]
        directions = Directions(torch.eye(d)[:min(16, d)], torch.ones(min(16, d)), torch.zeros(d))
    else:
        directions = principal_directions(mus, k=min(16, cfg["latent_dim"]))

    ev = recipe.evaluate
    clf = classifier_for(run_dir, data.numpy(), steps=int(ev.get("classifier_steps", 1500)), seed=s.seed + 1, log=log)
    metrics = evaluate(model, clf, data, data_all[torch.as_tensor(held_idx)], samples=int(ev.get("prior_samples", 2480)),
                       seed=s.seed + 2)
    for key, value in metrics.items():
        log(f"  {key}: {value}")
    preview = specimen(model, seeds=range(4))

    manifest = {
        "format": 1, "id": recipe.package["id"], "name": recipe.package["name"], "family": "vae",
        "version": recipe.package["version"], "license": recipe.package["license"],
        "description": recipe.package.get("description", ""),
        "output": {"kind": "image", "width": glyphs.size, "height": glyphs.size, "channels": 1},
        "latent": {"shape": [cfg["latent_dim"]], "prior": "normal"},
        "conditions": {"kind": "text", "alphabet": CHARSET, "default": recipe.package.get("default_prompt", "Aa")},
        "architecture": {"image_size": cfg["image_size"], "width": cfg["width"], "class_dim": cfg["class_dim"],
                         "hidden": cfg["hidden"], "fitted_prior": cfg["fitted_prior"], "ink_on_paper": True},
        "training": {
            "trainer": TRAINER, "app_version": __version__, "steps": s.steps, "seconds": round(train_seconds, 1),
            "training_faces": len(train_idx), "heldout_faces": len(held_idx),
            "heldout_families": sorted({glyphs.faces[i].family for i in held_idx}),
            "quality": metrics,
        },
    }
    weights = {k: v for k, v in model.state_dict().items()}
    path = write_package(out, manifest, weights, directions.to_tensors(), preview, recipe.text)
    log(f"wrote {path}")
    return path


# --- measuring ------------------------------------------------------------------------------------------------------

EVAL_CONTEXT = "AaBbGgRr"  # glyphs an artist would give to capture a style


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
def evaluate(model: SetVAE, clf: GlyphClassifier, train_data: torch.Tensor, held: torch.Tensor, samples: int,
             seed: int) -> dict[str, float]:
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
    labels = torch.tensor([CHARSET.index(c) for c in text])
    for seed in seeds:
        z = model.from_prior(sample_prior(seed, (model.latent_dim,))).expand(len(text), -1)
        cells = torch.sigmoid(model.decode(z, labels))[:, 0]
        rows.append(torch.cat(list(cells), dim=1))
    sheet = 1.0 - torch.cat(rows, dim=0)
    return (sheet.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


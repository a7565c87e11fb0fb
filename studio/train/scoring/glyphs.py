"""Scoring glyph models of every family the same way: a glyph classifier (GlyphClassifier, here) trained on the
training fonts reads samples; we report the share it reads as the intended character, and a Fréchet distance between
the classifier's features of samples and of held-out real glyphs (FID's formula, on this classifier instead of
Inception).

All figures compare at 32×32: the classifier's first layer averages 64×64 input down to 32×32, and 32×32 samples are
enlarged by pixel repetition, which that layer undoes exactly. So a 64-pixel model, a 32-pixel model and the real
glyphs are all seen at the same resolution.

Style spread (style_spread): how differently the samples of one character are drawn across seeds — the mean
pairwise feature distance within a character, averaged over characters. A model can read right and still draw one
typeface for every seed (a collapse the accuracy misses and the Fréchet distance only hints at); this names it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.paths import user_cache_dir
from studio.train.fonts import CHARSET
from studio.train.progress import ProgressBar
from studio.io.safetensors import read_header
from studio.io.weights import read_tensors, write_tensors

if TYPE_CHECKING:
    from studio.nets.setvae import SetVAE

# Characters whose shapes coincide in many typefaces: reported as a second, lenient accuracy.
CONFUSABLE = ["Il1", "O0o", "Cc", "Ss", "Uu", "Vv", "Ww", "Xx", "Zz", "Kk", "Pp", "Yy", "Jj"]


# --- the glyph classifier -------------------------------------------------------------------------------------------


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
        meta = read_header(path).metadata
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


# --- scores ---------------------------------------------------------------------------------------------------------




def shared_classifier(train_images: np.ndarray, steps: int = 1500, seed: int = 1,
                      log: Callable[[str], None] = print) -> GlyphClassifier:
    """The scoring classifier for these training glyphs (F, 62, 64, 64), trained once and kept in the user cache,
    so that every family's recipe is scored by the same one."""
    folder = user_cache_dir() / "glyph-scoring"
    folder.mkdir(parents=True, exist_ok=True)
    return classifier_for(folder, train_images, steps=steps, seed=seed, log=log, bf16=True)


def to_classifier_input(ink: torch.Tensor) -> torch.Tensor:
    """Cells (N, 1, S, S) with 1 = ink in [0, 1] → the classifier's 64×64 input."""
    if ink.shape[-1] == 64:
        return ink
    if 64 % ink.shape[-1] == 0:
        return F.interpolate(ink, scale_factor=64 // ink.shape[-1], mode="nearest")
    return F.interpolate(ink, size=(64, 64), mode="bilinear", antialias=True)


@torch.inference_mode()
def features(clf: GlyphClassifier, ink: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's penultimate features (N, 256) and its predictions (N,)."""
    feats, preds = [], []
    body, head = clf.net[:-2], clf.net[-1]  # [..., Linear → 256, SiLU] | Dropout | Linear → classes
    for i in range(0, len(ink), batch):
        f = body(to_classifier_input(ink[i:i + batch].float()))
        feats.append(f)
        preds.append(head(f).argmax(1))
    return torch.cat(feats), torch.cat(preds)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½) between two sets of feature rows (float64, via eigh: no scipy)."""
    rows_a, rows_b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = rows_a.mean(0), rows_b.mean(0)
    cov_a, cov_b = np.cov(rows_a, rowvar=False), np.cov(rows_b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def style_spread(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Per-character style spread: the mean Euclidean distance between the features (N, D) of two different samples
    of the same character, averaged over the characters that have at least two samples (each character counts the
    same). 0 when every character is drawn the same way whatever the seed; larger when the seeds give more varied
    styles. Measured in the scoring classifier's feature space (the one the Fréchet distance uses), so it is the
    within-character part of what the Fréchet distance sees, and real glyphs of many typefaces give the yardstick."""
    rows = feats.double()
    spreads = []
    for c in torch.unique(labels):
        group = rows[labels == c]
        n = len(group)
        if n < 2:
            continue
        dist = torch.cdist(group, group)  # (n, n), zero diagonal
        spreads.append(dist.sum().item() / (n * (n - 1)))
    if not spreads:
        raise ValueError("style spread needs at least two samples of some character")
    return float(np.mean(spreads))


def balanced_labels(samples: int, seed: int) -> torch.Tensor:
    """`samples` class indices, every character equally often (±1), in a seeded random order."""
    reps = -(-samples // len(CHARSET))
    labels = torch.arange(len(CHARSET)).repeat(reps)[:samples]
    return labels[torch.randperm(samples, generator=torch.Generator().manual_seed(seed))]


def score(clf: GlyphClassifier, samples_ink: torch.Tensor, want: torch.Tensor, held_ink: torch.Tensor,
          prefix: str = "") -> dict[str, float]:
    """Accuracy (strict and lenient) of samples against the characters they were asked for, the Fréchet distance of
    their features to the held-out real glyphs', and their per-character style spread (style_spread; left out when no
    character was drawn twice)."""
    f_s, pred = features(clf, samples_ink)
    f_r, _ = features(clf, held_ink)
    out = {
        f"{prefix}accuracy": round((pred == want).float().mean().item(), 4),
        f"{prefix}accuracy_lenient": round(lenient_correct(pred, want).float().mean().item(), 4),
        f"{prefix}frechet_distance": round(frechet_distance(f_s, f_r), 3),
    }
    if len(want) > len(torch.unique(want)):  # some character drawn twice: a spread to measure
        out[f"{prefix}style_spread"] = round(style_spread(f_s, want), 3)
    return out


@torch.inference_mode()
def vae_reference(folder: Path, clf: GlyphClassifier, held_ink: torch.Tensor, samples: int,
                  seed: int) -> dict[str, float]:
    """The shipped glyph VAE scored the same way (prior samples, one balanced random character each), so the
    families' figures stand side by side."""
    from studio.latent.seeds import sample_prior
    from studio.library import load_model, resolve

    model = load_model(resolve(str(folder)), "cpu", torch.float32)
    net = cast("SetVAE", model.network)  # the glyph VAE's network
    want = balanced_labels(samples, seed)
    w = sample_prior(seed, (net.latent_dim,), batch=samples)
    ink = torch.cat([torch.sigmoid(net.decode(net.from_prior(w[i:i + 256]), want[i:i + 256]))
                     for i in range(0, samples, 256)])
    out = score(clf, ink, want, held_ink)
    return {"vae_" + k: v for k, v in out.items()}

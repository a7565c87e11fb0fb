"""Scoring glyph models of every family the same way: a glyph classifier trained on the training fonts reads samples;
we report the share it reads as the intended character, and a Fréchet distance between the classifier's features of
samples and of held-out real glyphs (FID's formula, on this classifier instead of Inception).

All figures compare at 32×32: the classifier's first layer averages 64×64 input down to 32×32, and 32×32 samples are
enlarged by pixel repetition, which that layer undoes exactly. So a 64-pixel model, a 32-pixel model and the real
glyphs are all seen at the same resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from studio.paths import user_cache_dir
from studio.train.fonts import CHARSET
from studio.train.glyphs import GlyphClassifier, classifier_for, lenient_correct


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
    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def balanced_labels(samples: int, seed: int) -> torch.Tensor:
    """`samples` class indices, every character equally often (±1), in a seeded random order."""
    reps = -(-samples // len(CHARSET))
    labels = torch.arange(len(CHARSET)).repeat(reps)[:samples]
    return labels[torch.randperm(samples, generator=torch.Generator().manual_seed(seed))]


def score(clf: GlyphClassifier, samples_ink: torch.Tensor, want: torch.Tensor, held_ink: torch.Tensor,
          prefix: str = "") -> dict[str, float]:
    """Accuracy (strict and lenient) of samples against the characters they were asked for, and the Fréchet
    distance of their features to the held-out real glyphs'."""
    f_s, pred = features(clf, samples_ink)
    f_r, _ = features(clf, held_ink)
    return {
        f"{prefix}accuracy": round((pred == want).float().mean().item(), 4),
        f"{prefix}accuracy_lenient": round(lenient_correct(pred, want).float().mean().item(), 4),
        f"{prefix}frechet_distance": round(frechet_distance(f_s, f_r), 3),
    }


@torch.inference_mode()
def vae_reference(folder: Path, clf: GlyphClassifier, held_ink: torch.Tensor, samples: int,
                  seed: int) -> dict[str, float]:
    """The shipped glyph VAE scored the same way (prior samples, one balanced random character each), so the
    families' figures stand side by side."""
    from studio.latent.seeds import sample_prior
    from studio.library import load_model, resolve

    model = load_model(resolve(str(folder)), "cpu", torch.float32)
    net = model.network
    want = balanced_labels(samples, seed)
    w = sample_prior(seed, (net.latent_dim,), batch=samples)
    ink = torch.cat([torch.sigmoid(net.decode(net.from_prior(w[i:i + 256]), want[i:i + 256]))
                     for i in range(0, samples, 256)])
    out = score(clf, ink, want, held_ink)
    return {"vae_" + k: v for k, v in out.items()}

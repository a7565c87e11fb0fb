"""Train the one-shot sound model (family `audio-vae`) on procedural drums and notes and write a model package.

The sounds come from `studio.train.sounds` (kick, snare, hat, open hat, tom, clap, pluck, bass, bell, pad, each with
randomised parameters). Training, held-out and classifier sets use disjoint seeds. The VAE learns log-magnitude
spectrograms with a Laplace likelihood (L1) and a KL term; afterwards a Gaussian is fitted to the encoded training
latents (the artist's prior) and the package is scored:

- reconstruction of held-out sounds (encode → decode → Griffin-Lim) by a multi-resolution STFT distance, beside the
  same distance for Griffin-Lim on the true magnitudes (what the phase recovery alone costs);
- the share of prior samples that a separately trained sound classifier (its own log-mel front end, trained on its
  own sounds) assigns to the class that was asked for, beside its accuracy on held-out real sounds;
- the spread of prior samples of a class against the spread of real sounds of that class (a collapse shows here).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio import __version__
from studio.errors import RecipeError
from studio.io.colormap import MAGMA
from studio.nets.spectrogram import SpecFormat, SpecVAE, finish_waves
from studio.latent.directions import Directions
from studio.train.common import Checkpoint, lr_at, manifest_head
from studio.train.package import write_package
from studio.train.progress import ProgressBar
from studio.train.recipe import Recipe
from studio.train.sounds import KINDS, LENGTH, SAMPLE_RATE, sound_set
from studio.weights import read_tensors, write_tensors

TRAINER = "sound-vae"
HELD_SEED = 1_000_000  # held-out sounds: seeds from here
CLASSIFIER_SEED = 2_000_000  # the classifier's own training sounds


# --- the scoring classifier -----------------------------------------------------------------------------------------


def mel_matrix(n_fft: int, sample_rate: int, bands: int = 64, low: float = 30.0) -> torch.Tensor:
    """Triangular mel filters (bands, n_fft // 2 + 1)."""
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(mel(low), mel(sample_rate / 2), bands + 2) / 2595) - 1)
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    m = np.zeros((bands, len(freqs)))
    for i in range(bands):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        rise = (freqs - lo) / max(mid - lo, 1e-9)
        fall = (hi - freqs) / max(hi - mid, 1e-9)
        m[i] = np.clip(np.minimum(rise, fall), 0, None)
        if m[i].sum() == 0:  # a band narrower than a bin: take the nearest bin
            m[i, np.argmin(np.abs(freqs - mid))] = 1.0
    return torch.tensor(m, dtype=torch.float32)


class SoundClassifier(nn.Module):
    """A small CNN over 64-band log-mel spectrograms (its own front end, not the VAE's picture)."""

    def __init__(self, classes: int = len(KINDS), sample_rate: int = SAMPLE_RATE, n_fft: int = 1024, hop: int = 256):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("mel", mel_matrix(n_fft, sample_rate))
        self.register_buffer("window", torch.hann_window(n_fft))
        ch = [1, 24, 48, 96, 128]
        layers = []
        for a, b in zip(ch[:-1], ch[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.SiLU(), nn.MaxPool2d(2, ceil_mode=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * ch[-1], classes)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Waves (B, samples) → log-mel (B, 1, 64, frames) in dB, floored at −100 dB."""
        spec = torch.stft(wave.float(), self.n_fft, self.hop, window=self.window, return_complex=True).abs()
        power = self.mel @ (spec / (self.n_fft / 4)) ** 2
        return (10 * torch.log10(power + 1e-10) / 50.0 + 1.0).unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        h = self.body(self.features(wave))
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))


def train_classifier(waves: torch.Tensor, labels: torch.Tensor, steps: int, seed: int,
                     sample_rate: int = SAMPLE_RATE, batch: int = 64,
                     log: Callable[[str], None] = print) -> SoundClassifier:
    """Train on `waves` with random gain (±9 dB) and a random delay up to 20 ms."""
    torch.manual_seed(seed)
    clf = SoundClassifier(sample_rate=sample_rate)
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    bar = ProgressBar(steps, unit="sound")
    clf.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, 2e-3, 50)
        idx = torch.randint(0, len(waves), (batch,), generator=gen)
        x = waves[idx] * 10 ** (torch.empty(batch, 1).uniform_(-9, 9, generator=gen) / 20)
        shift = int(torch.randint(0, max(1, int(0.02 * sample_rate)), (1,), generator=gen))
        x = F.pad(x, (shift, 0))[:, :waves.shape[1]]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = clf(x)
        loss = F.cross_entropy(logits.float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(step + 1, batch, loss=loss.item())
    bar.close()
    return clf.eval()


def classifier_for(run_dir: Path, steps: int, per_kind: int, seed: int, sample_rate: int = SAMPLE_RATE,
                   length: int = LENGTH, log: Callable[[str], None] = print) -> SoundClassifier:
    """The run's scoring classifier, trained once and kept in the run folder (safetensors)."""
    path = run_dir / f"sound-classifier-{sample_rate}.safetensors"
    clf = SoundClassifier(sample_rate=sample_rate)
    if path.exists():
        clf.load_state_dict(read_tensors(path))
        log(f"sound classifier from {path}")
        return clf.eval()
    log(f"training the sound classifier on {per_kind} sounds of each class (seeds from {CLASSIFIER_SEED})")
    waves, labels = sound_set(per_kind, CLASSIFIER_SEED, sample_rate=sample_rate, length=length)
    clf = train_classifier(torch.from_numpy(waves), torch.from_numpy(labels), steps, seed, sample_rate, log=log)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(dict(clf.state_dict()), path)
    return clf


@torch.inference_mode()
def classify(clf: SoundClassifier, waves: torch.Tensor, batch: int = 128) -> torch.Tensor:
    return torch.cat([clf(waves[i:i + batch]).argmax(1) for i in range(0, len(waves), batch)])


# --- distances ------------------------------------------------------------------------------------------------------

MRSTFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


def mrstft_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT distance per pair of waves (B, samples): over three resolutions, the mean of spectral
    convergence ‖|A| − |B|‖ / ‖|A|‖ and the mean absolute difference of log magnitudes (as in Parallel WaveGAN)."""
    total = torch.zeros(a.shape[0])
    resolutions = [r for r in MRSTFT_RESOLUTIONS if r[0] // 2 < a.shape[1]]  # (short sounds: the finer ones)
    if not resolutions:
        raise ValueError(f"sounds of {a.shape[1]} samples are too short for a multi-resolution STFT distance")
    for n_fft, hop in resolutions:
        win = torch.hann_window(n_fft)
        sa = torch.stft(a.float(), n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-5)
        sb = torch.stft(b.float(), n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-5)
        sc = (sa - sb).flatten(1).norm(dim=1) / sa.flatten(1).norm(dim=1).clamp_min(1e-5)
        mag = (sa.log() - sb.log()).abs().flatten(1).mean(1)
        total += sc + mag
    return total / len(resolutions)


def spread(features: torch.Tensor) -> float:
    """Mean pairwise L1 distance between feature rows (the variety of a set of sounds)."""
    f = features.flatten(1)
    if len(f) < 2:
        raise ValueError("the spread of fewer than two sounds is undefined")
    return float(torch.cdist(f, f, p=1).sum() / (len(f) * (len(f) - 1)) / f.shape[1])


# --- training -------------------------------------------------------------------------------------------------------


def train(recipe: Recipe, out: Path, run_dir: Path, resume: bool = False,
          log: Callable[[str], None] = print) -> Path:
    r, t, m, d = recipe.reader(), recipe.train, recipe.model, recipe.data
    steps = r.get(t, "steps", int, "train.")
    batch = r.get(t, "batch", int, "train.", required=False, default=32)
    lr = float(r.get(t, "lr", (int, float), "train.", required=False, default=1e-3))
    warmup = r.get(t, "warmup", int, "train.", required=False, default=200)
    beta = float(r.get(t, "beta", (int, float), "train.", required=False, default=1.0))
    beta_warmup = r.get(t, "beta_warmup", int, "train.", required=False, default=500)
    scale = float(r.get(t, "recon_scale", (int, float), "train.", required=False, default=0.5))
    seed = r.get(t, "seed", int, "train.", required=False, default=0)
    every = r.get(t, "checkpoint_every", int, "train.", required=False, default=250)
    bf16 = bool(r.get(t, "bfloat16", bool, "train.", required=False, default=True))
    per_kind = r.get(d, "per_kind", int, "data.", required=False, default=400)
    at_least_2 = lambda v: None if v >= 2 else f"must be at least 2 (the spread of a class needs pairs), got {v}"  # noqa: E731
    held_per_kind = r.get(d, "heldout_per_kind", int, "data.", required=False, default=50, check=at_least_2)
    r.get(recipe.evaluate, "prior_samples_per_class", int, "evaluate.", required=False, default=50, check=at_least_2)
    sample_rate = r.get(d, "sample_rate", int, "data.", required=False, default=SAMPLE_RATE)
    length = r.get(d, "length", int, "data.", required=False, default=LENGTH)
    cfg = {
        "latent_dim": r.get(m, "latent_dim", int, "model.", required=False, default=16),
        "width": r.get(m, "width", int, "model.", required=False, default=16),
        "levels": r.get(m, "levels", int, "model.", required=False, default=6),
        "max_width": r.get(m, "max_width", int, "model.", required=False, default=128),
        "class_dim": r.get(m, "class_dim", int, "model.", required=False, default=16),
        "hidden": r.get(m, "hidden", int, "model.", required=False, default=256),
    }
    if per_kind < cfg["latent_dim"]:
        raise RecipeError(f"the prior of each class is fitted to its encoded sounds: needs at least latent_dim = "
                          f"{cfg['latent_dim']} per class, got {per_kind}", recipe.path, "data.per_kind")
    fmt = SpecFormat(r.get(m, "n_fft", int, "model.", required=False, default=1024),
                     r.get(m, "hop", int, "model.", required=False, default=256), length)
    iterations = r.get(m, "griffin_lim_iterations", int, "model.", required=False, default=48)

    log(f"synthesising {per_kind} sounds of each of {len(KINDS)} classes ({', '.join(KINDS)})")
    waves, labels = sound_set(per_kind, 0, sample_rate=sample_rate, length=length)
    pictures = torch.cat([fmt.to_picture(torch.from_numpy(waves[i:i + 256])) for i in range(0, len(waves), 256)])
    pictures = pictures.to(torch.float16)  # half the memory; the network reads float32
    labels_t = torch.from_numpy(labels)
    torch.manual_seed(seed)
    net = SpecVAE(fmt.bins, fmt.frames, num_classes=len(KINDS), fitted_prior=True, class_prior=True, **cfg)
    with torch.no_grad():  # start near the mean picture (mostly silence) rather than at grey
        net.dec_out.bias.fill_(math.log(pictures.float().mean() / (1 - pictures.float().mean())))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run_dir / "checkpoint.safetensors", recipe, {"net": net}, {"net": opt}, gen)
    start = 0
    if resume and ckpt.path.exists():
        start = ckpt.load()
        log(f"resumed from {ckpt.path} at step {start}")
    log(f"training {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters for {steps} steps of {batch} "
        f"on {len(waves)} sounds")
    bar = ProgressBar(steps, start=start, unit="sound")
    net.train()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        idx = torch.randint(0, len(pictures), (batch,), generator=gen)
        x = pictures[idx].float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, mu, logvar = net(x, labels_t[idx], gen)
        mu, logvar = mu.float(), logvar.float()
        nll = (torch.sigmoid(logits.float()) - x).abs().flatten(1).sum(1) / scale
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        b = beta * min(1.0, (step + 1) / max(1, beta_warmup))
        loss = (nll + b * kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 100.0)
        opt.step()
        bar.update(step + 1, batch, loss=loss.item(), l1=nll.mean().item() * scale / x[0].numel(),
                   kl=kl.mean().item())
        if (step + 1) % every == 0 or step + 1 == steps:
            ckpt.save(step + 1)
    bar.close()
    train_seconds = ckpt.seconds
    net.eval()

    with torch.inference_mode():
        mus = torch.cat([net.encode(pictures[i:i + 256].float(), labels_t[i:i + 256])[0]
                         for i in range(0, len(pictures), 256)])
    net.fit_prior(mus, labels_t)
    with torch.no_grad():  # the package holds float16 weights (half the download): measure what is shipped
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    dim = cfg["latent_dim"]
    # The artist's coordinates are the principal axes of each class's encoded sounds, each at unit spread: direction
    # k is axis k, so the sliders move along the ways the training sounds of the class vary most.
    directions = Directions(torch.eye(dim)[:min(16, dim)], torch.ones(min(16, dim)), torch.zeros(dim))

    ev = recipe.evaluate
    clf = classifier_for(run_dir, int(ev.get("classifier_steps", 600)), int(ev.get("classifier_per_kind", 200)),
                         seed + 1, sample_rate, length, log)
    metrics = evaluate(net, fmt, clf, held_per_kind, int(ev.get("prior_samples_per_class", 50)), iterations,
                       seed + 2, sample_rate, length, log)
    manifest = {
        **manifest_head(recipe, "audio-vae"),
        "output": {"kind": "audio", "sample_rate": sample_rate, "channels": 1, "length": length},
        "latent": {"shape": [dim], "prior": "normal"},
        "conditions": {"kind": "class", "labels": list(KINDS), "default": recipe.package.get("default_class", "kick")},
        "architecture": {**{k: v for k, v in cfg.items() if k != "latent_dim"}, "n_fft": fmt.n_fft, "hop": fmt.hop,
                         "db_floor": fmt.db_floor, "db_ceiling": fmt.db_ceiling, "fitted_prior": True,
                         "class_prior": True,
                         "griffin_lim_iterations": iterations},
        "training": {
            "trainer": TRAINER, "app_version": __version__, "steps": steps, "batch": batch,
            "seconds": round(train_seconds, 1), "training_sounds": len(waves), "weights": "float16",
            "heldout_sounds": held_per_kind * len(KINDS), "quality": metrics,
        },
    }
    preview = specimen(net)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    path = write_package(out, manifest, weights, directions.to_tensors(), preview, recipe.text)
    log(f"wrote {path}")
    return path


# --- measuring ------------------------------------------------------------------------------------------------------


@torch.inference_mode()
def decode_waves(net: SpecVAE, fmt: SpecFormat, z: torch.Tensor, labels: torch.Tensor, iterations: int,
                 sample_rate: int, batch: int = 64) -> torch.Tensor:
    """Decoder latents z (the decoder's own, not the artist's) with their classes → waves, as the app renders them."""
    out = []
    for i in range(0, len(z), batch):
        picture = torch.sigmoid(net.decode(z[i:i + batch], labels[i:i + batch]))
        out.append(finish_waves(fmt.to_wave(picture, iterations), sample_rate))
    return torch.cat(out)


@torch.inference_mode()
def evaluate(net: SpecVAE, fmt: SpecFormat, clf: SoundClassifier, held_per_kind: int, samples_per_class: int,
             iterations: int, seed: int, sample_rate: int = SAMPLE_RATE, length: int = LENGTH,
             log: Callable[[str], None] = print) -> dict:
    held_np, held_labels_np = sound_set(held_per_kind, HELD_SEED, sample_rate=sample_rate, length=length)
    held, held_labels = torch.from_numpy(held_np), torch.from_numpy(held_labels_np)
    pictures = fmt.to_picture(held)
    mu = torch.cat([net.encode(pictures[i:i + 128], held_labels[i:i + 128])[0] for i in range(0, len(held), 128)])
    recon = decode_waves(net, fmt, mu, held_labels, iterations, sample_rate)
    floor = torch.cat([finish_waves(fmt.to_wave(pictures[i:i + 64], iterations), sample_rate)
                       for i in range(0, len(held), 64)])
    recon_pictures = torch.cat([torch.sigmoid(net.decode(mu[i:i + 128], held_labels[i:i + 128]))
                                for i in range(0, len(held), 128)])
    db_error = float((recon_pictures - pictures).abs().mean() * (fmt.db_ceiling - fmt.db_floor))

    gen = torch.Generator().manual_seed(seed)
    want = torch.arange(len(KINDS)).repeat_interleave(samples_per_class)
    w = torch.randn(len(want), net.latent_dim, generator=gen)
    prior = decode_waves(net, fmt, net.from_prior(w, want), want, iterations, sample_rate)
    unfitted = decode_waves(net, fmt, w, want, iterations, sample_rate)

    got_real, got_recon = classify(clf, held), classify(clf, recon)
    got_prior, got_unfitted = classify(clf, prior), classify(clf, unfitted)
    per_class = {kind: round(float((got_prior[want == i] == i).float().mean()), 3) for i, kind in enumerate(KINDS)}
    spreads = []
    for i in range(len(KINDS)):
        real_f = clf.features(held[held_labels == i])
        fake_f = clf.features(prior[want == i])
        spreads.append(spread(fake_f) / spread(real_f))
    metrics = {
        "heldout_sounds": len(held),
        "recon_mrstft_heldout": round(float(mrstft_distance(held, recon).mean()), 4),
        "recon_mrstft_griffin_lim_floor": round(float(mrstft_distance(held, floor).mean()), 4),
        "recon_spectrogram_db_error": round(db_error, 3),
        "classifier_accuracy_heldout_real": round(float((got_real == held_labels).float().mean()), 4),
        "classifier_accuracy_reconstructed": round(float((got_recon == held_labels).float().mean()), 4),
        "prior_samples": len(want),
        "prior_sample_accuracy": round(float((got_prior == want).float().mean()), 4),
        "prior_sample_accuracy_unfitted_prior": round(float((got_unfitted == want).float().mean()), 4),
        "prior_sample_accuracy_per_class": per_class,
        "prior_spread_vs_real": round(float(np.mean(spreads)), 3),
        "mrstft_resolutions": [list(r) for r in MRSTFT_RESOLUTIONS],
        "griffin_lim_iterations": iterations,
    }
    for key, value in metrics.items():
        log(f"  {key}: {value}")
    return metrics


GAP_GREY = 0x50  # between the tiles of a preview (silence is black)


@torch.inference_mode()
def specimen(net: SpecVAE, seeds=range(4), kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """A preview: prior-sample spectrograms, one row per seed, one column per class (low notes at the bottom),
    in the app's colours, RGB uint8."""
    rows = []
    for seed in seeds:
        w = torch.randn(1, net.latent_dim, generator=torch.Generator().manual_seed(seed)).expand(len(kinds), -1)
        classes = torch.arange(len(kinds))
        pics = torch.sigmoid(net.decode(net.from_prior(w, classes), classes))[:, 0]  # (K, bins, frames)
        pics = F.avg_pool2d(pics[:, None], (4, 1))[:, 0].flip(1)  # bins / 4, low frequencies at the bottom
        tiles = MAGMA[(pics.clamp(0, 1) * 255).round().to(torch.uint8).numpy()]  # (K, H, W, 3)
        gap = np.full((tiles.shape[1], 4, 3), GAP_GREY, np.uint8)
        rows.append(np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], 1))
    hgap = np.full((4, *rows[0].shape[1:]), GAP_GREY, np.uint8)
    return np.concatenate([part for row in rows for part in (row, hgap)][:-1], 0)


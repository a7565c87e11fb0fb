"""Measuring sound models (studio.nets.spectrogram.SpecVAE): a separately trained sound classifier (its own log-mel
front end, trained on its own procedural sounds) reads prior samples of each class; a multi-resolution STFT distance
says how well held-out sounds come back (encode → decode → Griffin-Lim), beside the same distance for Griffin-Lim on
the true magnitudes (what the phase recovery alone costs); the spread of prior samples of a class against that of real
sounds of the class shows a collapse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.nets.spectrogram import SpecFormat, SpecVAE, finish_waves
from studio.train.common import lr_at
from studio.train.progress import ProgressBar
from studio.train.sounds import KINDS, LENGTH, SAMPLE_RATE, sound_set
from studio.io.weights import read_tensors, write_tensors

HELD_SEED = 1_000_000  # held-out procedural sounds: seeds from here (training sounds start at 0)
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

    mel: torch.Tensor  # buffers: the mel filter bank and the STFT window
    window: torch.Tensor

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


# --- measures -------------------------------------------------------------------------------------------------------


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


@torch.inference_mode()
def heldout_reconstruction(net: SpecVAE, fmt: SpecFormat, waves: torch.Tensor, pictures: torch.Tensor,
                           labels: torch.Tensor, iterations: int, sample_rate: int, device: torch.device) -> dict:
    """How well sounds the network never saw come back (encode → decode → Griffin-Lim): the spectrogram error in dB,
    and a multi-resolution STFT distance beside the same distance for Griffin-Lim on the true magnitudes (what the
    phase recovery alone costs)."""
    mu, _ = net.encode(pictures.to(device), labels.to(device))
    recon = torch.sigmoid(net.decode(mu, labels.to(device)).float()).cpu()
    db_error = float((recon - pictures).abs().mean() * (fmt.db_ceiling - fmt.db_floor))
    heard = finish_waves(fmt.to_wave(recon, iterations), sample_rate)
    floor = finish_waves(fmt.to_wave(pictures, iterations), sample_rate)
    return {"heldout_recon_db_error": round(db_error, 3),
            "heldout_recon_mrstft": round(float(mrstft_distance(waves, heard).mean()), 4),
            "heldout_griffin_lim_floor_mrstft": round(float(mrstft_distance(waves, floor).mean()), 4)}

"""The audio VAE's network: how a waveform maps to a spectrogram picture and back (fast Griffin-Lim), and the
class-conditional VAE over those pictures. Shared by the audio VAE family and its trainers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from studio.steps import run_steps
from studio.nets.setvae import FittedPrior

GL_SEED = 0  # the Griffin-Lim start phase: fixed, so the sound depends on the request only


# --- spectrograms -------------------------------------------------------------------------------------------------


class SpecFormat:
    """How a waveform maps to the network's spectrogram picture and back."""

    def __init__(self, n_fft: int = 1024, hop: int = 256, length: int = 22272, db_floor: float = -80.0,
                 db_ceiling: float = 10.0):
        if n_fft % 2 or n_fft < 16:
            raise ValueError(f"n_fft must be even and at least 16, got {n_fft}")
        self.n_fft, self.hop, self.length = n_fft, hop, length
        self.db_floor, self.db_ceiling = db_floor, db_ceiling
        self.bins = n_fft // 2  # the Nyquist bin is dropped (and silent on the way back)
        self.frames = 1 + length // hop

    def _window(self, device: torch.device) -> torch.Tensor:
        return torch.hann_window(self.n_fft, device=device)

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(wave.float(), self.n_fft, self.hop, window=self._window(wave.device), center=True,
                          return_complex=True)

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, self.n_fft, self.hop, window=self._window(spec.device), center=True,
                           length=self.length)

    def to_picture(self, wave: torch.Tensor) -> torch.Tensor:
        """Waves (B, length) → pictures (B, 1, bins, frames) in [0, 1]."""
        mag = self.stft(wave).abs()[:, :self.bins] / (self.n_fft / 4)
        db = 20 * torch.log10(mag + 1e-7)
        return ((db - self.db_floor) / (self.db_ceiling - self.db_floor)).clamp(0, 1).unsqueeze(1)

    def magnitudes(self, picture: torch.Tensor) -> torch.Tensor:
        """Pictures (B, 1, bins, frames) → STFT magnitudes (B, bins + 1, frames); the floor is silence."""
        p = picture[:, 0].float().clamp(0, 1)
        db = self.db_floor + p * (self.db_ceiling - self.db_floor)
        mag = torch.where(p > 0, 10 ** (db / 20), torch.zeros_like(p)) * (self.n_fft / 4)
        return F.pad(mag, (0, 0, 0, 1))

    def griffin_lim(self, mag: torch.Tensor, iterations: int = 48, momentum: float = 0.99):
        """Magnitudes (B, bins + 1, frames) → waves (B, length) by fast Griffin-Lim: a generator that yields after
        each iteration (a cancel point) and returns the waves."""
        gen = torch.Generator().manual_seed(GL_SEED)
        phase = torch.rand(mag.shape, generator=gen, dtype=torch.float32).to(mag.device) * (2 * torch.pi)
        angles = torch.polar(torch.ones_like(mag), phase)
        previous = torch.zeros_like(angles)
        for i in range(iterations):
            rebuilt = self.stft(self.istft(mag * angles))
            angles = rebuilt - previous * (momentum / (1 + momentum))
            angles = angles / angles.abs().clamp_min(1e-16)
            previous = rebuilt
            yield i + 1
        return self.istft(mag * angles)

    def to_wave(self, picture: torch.Tensor, iterations: int = 48) -> torch.Tensor:
        """Pictures → waves, running Griffin-Lim to its end."""
        return run_steps(self.griffin_lim(self.magnitudes(picture), iterations))


FADE_SECONDS = 0.01
ONSET_LEAD = 0.002  # an encoded sound starts this long before its first sample above −40 dB of its peak
def finish_waves(waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """What every rendered sound gets last: a 10 ms fade at the end (a sound cut off mid-decay clicks) and, where a
    peak passes 0.99, a gain that brings it just below full scale (never clipping). Waves (B, samples)."""
    fade = min(waves.shape[1], max(1, int(FADE_SECONDS * sample_rate)))
    ramp = torch.linspace(1.0, 0.0, fade, device=waves.device, dtype=waves.dtype)
    waves = torch.cat([waves[:, :-fade], waves[:, -fade:] * ramp], 1)
    peak = waves.abs().amax(1, keepdim=True)
    return torch.where(peak > 0.99, waves * (0.99 / peak.clamp_min(1e-12)), waves)


# --- the network ----------------------------------------------------------------------------------------------------


def _strides(bins: int, frames: int, levels: int) -> list[tuple[int, int]]:
    """Halve both axes while the time axis is even, then the frequency axis alone."""
    out, f, t = [], bins, frames
    for _ in range(levels):
        st = 2 if t % 2 == 0 and t > 8 else 1
        if f % 2:
            raise ValueError(f"{bins} frequency bins do not halve {levels} times")
        out.append((2, st))
        f, t = f // 2, t // st
    return out


class SpecVAE(FittedPrior, nn.Module):
    """Encoder and decoder of spectrogram pictures (B, 1, bins, frames), conditioned on a class."""

    def __init__(self, bins: int = 512, frames: int = 88, latent_dim: int = 16, num_classes: int = 10,
                 width: int = 16, levels: int = 6, max_width: int = 128, class_dim: int = 16, hidden: int = 256,
                 fitted_prior: bool = False, class_prior: bool = False):
        super().__init__()
        self.bins, self.frames, self.latent_dim = bins, frames, latent_dim
        self.num_classes, self.class_dim = num_classes, class_dim if num_classes else 0
        strides = _strides(bins, frames, levels)
        ch = [1] + [min(max_width, width * 2**i) for i in range(levels)]
        f, t = bins, frames
        enc = []
        for i, (sf, st) in enumerate(strides):
            enc += [nn.Conv2d(ch[i], ch[i + 1], (4, 4 if st == 2 else 3), (sf, st), 1), nn.SiLU()]
            f, t = f // sf, t // st
        self.encoder = nn.Sequential(*enc)
        self._top = (ch[-1], f, t)
        flat = ch[-1] * f * t
        if num_classes:
            self.enc_embed = nn.Embedding(num_classes, class_dim)
            self.dec_embed = nn.Embedding(num_classes, class_dim)
        self.enc_fc = nn.Linear(flat + self.class_dim, hidden)
        self.enc_head = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))
        cond = latent_dim + self.class_dim
        self.dec_fc = nn.Sequential(nn.Linear(cond, hidden), nn.SiLU(), nn.Linear(hidden, flat))
        rev = list(reversed(strides))
        dch = list(reversed(ch))  # top … 1
        self.dec_convs = nn.ModuleList(
            nn.ConvTranspose2d(dch[i], dch[i + 1], (4, 4 if st == 2 else 3), (sf, st), 1)
            for i, (sf, st) in enumerate(rev[:-1]))
        self.dec_film = nn.ModuleList(nn.Linear(cond, 2 * dch[i + 1]) for i in range(len(rev) - 1))
        sf, st = rev[-1]
        self.dec_out = nn.ConvTranspose2d(dch[-2], 1, (4, 4 if st == 2 else 3), (sf, st), 1)
        self._init_prior(latent_dim, fitted_prior, num_classes if class_prior else 0)

    def encode(self, pictures: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pictures (B, 1, bins, frames) in [0, 1] and labels (B,) → μ, log σ² (B, latent_dim)."""
        h = self.encoder(pictures).flatten(1)
        if self.num_classes:
            if labels is None:
                raise ValueError("this VAE needs the class of every sound")
            h = torch.cat([h, self.enc_embed(labels)], 1)
        mu, logvar = self.enc_head(self.enc_fc(h)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, latent_dim), labels (N,) → logits of the pictures (N, 1, bins, frames)."""
        c = z
        if self.num_classes:
            if labels is None:
                raise ValueError("this VAE needs a class to decode")
            c = torch.cat([z, self.dec_embed(labels)], 1)
        x = self.dec_fc(c).reshape(-1, *self._top)
        for conv, film in zip(self.dec_convs, self.dec_film):
            x = conv(x)
            scale, shift = film(c).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
            x = F.silu(x * (1 + scale) + shift)
        return self.dec_out(x)

    def forward(self, pictures: torch.Tensor, labels: torch.Tensor | None,
                generator: torch.Generator | None = None):
        """Reconstruction logits, μ, log σ²."""
        mu, logvar = self.encode(pictures, labels)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z, labels), mu, logvar

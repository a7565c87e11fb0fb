"""The audio VAE family: a class-conditional VAE over log-magnitude spectrograms, heard through Griffin-Lim.

A sound of `length` samples becomes an STFT (Hann window `n_fft`, hop `hop`, centred) whose magnitudes below the
Nyquist bin are put on a decibel scale and mapped to [0, 1] between `db_floor` and `db_ceiling` (0 dB = a full-scale
sine). The encoder reads that picture and the sound's class; the decoder draws the picture back from the latent (the
timbre) and the class (kick, snare, pad …). A waveform is recovered from the magnitudes by fast Griffin-Lim
(Perraudin et al. 2013), which starts from a fixed phase so that equal requests give equal sounds.

The latent holds what sounds of a class do not share (the timbre). After training a Gaussian is fitted to the encoded
sounds of each class (`class_prior`), so the artist's N(0, I) latent lands where that class's real sounds lie: the
same latent played as another class is the sound at the same place in that class's spread (0 is its typical sound,
slider k its k-th principal way to vary).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.errors import ManifestError, RequestError
from studio.families import register_family
from studio.families.base import Family, LoadedModel, Output, Progress, RenderSteps, arch_value, run_steps
from studio.families.vae import FittedPrior

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
# How spectrograms look, in the app and in package previews: matplotlib's "magma" from nine stops to 256 levels
# (its luminance rises monotonically, so brighter always means louder).
_MAGMA_STOPS = np.array([(0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122), (229, 80, 100),
                         (251, 135, 97), (254, 194, 135), (252, 253, 191)], np.float64)
MAGMA = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_MAGMA_STOPS)), _MAGMA_STOPS[:, c])
                  for c in range(3)], axis=1).round().astype(np.uint8)


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


# --- the family -----------------------------------------------------------------------------------------------------


def spec_format(manifest) -> SpecFormat:
    out = manifest.output
    return SpecFormat(n_fft=arch_value(manifest, "n_fft", int, 1024, minimum=16),
                      hop=arch_value(manifest, "hop", int, 256, minimum=1), length=out["length"],
                      db_floor=float(arch_value(manifest, "db_floor", float, -80.0)),
                      db_ceiling=float(arch_value(manifest, "db_ceiling", float, 10.0)))


def class_index(model: LoadedModel, label: str | None) -> int:
    """The index of a class name (None: the manifest's default class), RequestError naming the known ones."""
    cond = model.manifest.conditions
    name = label or cond.default or cond.labels[0]
    if name not in cond.labels:
        raise RequestError(f"unknown sound class {name!r} for {model.id} (known: {', '.join(cond.labels)})",
                           field="label")
    return cond.labels.index(name)


@register_family
class AudioVAEFamily(Family):
    name = "audio-vae"
    output_kinds = ("audio",)
    capabilities = frozenset({"sample", "encode", "decode"})

    def _config(self, manifest) -> dict:
        fmt = spec_format(manifest)
        return {
            "bins": fmt.bins, "frames": fmt.frames, "latent_dim": manifest.latent.size,
            "num_classes": len(manifest.conditions.labels),
            "width": arch_value(manifest, "width", int, 16, minimum=1),
            "levels": arch_value(manifest, "levels", int, 6, minimum=1),
            "max_width": arch_value(manifest, "max_width", int, 128, minimum=1),
            "class_dim": arch_value(manifest, "class_dim", int, 16, minimum=1),
            "hidden": arch_value(manifest, "hidden", int, 256, minimum=4),
            "fitted_prior": arch_value(manifest, "fitted_prior", bool, False),
            "class_prior": arch_value(manifest, "class_prior", bool, False),
        }

    def validate(self, manifest) -> None:
        super().validate(manifest)
        if manifest.conditions.kind != "class":
            raise ManifestError("an audio VAE is conditioned on sound classes: kind = \"class\" with labels",
                                manifest.path, "conditions.kind")
        if manifest.output["channels"] != 1:
            raise ManifestError(f"audio VAE models are mono, got {manifest.output['channels']} channels",
                                manifest.path, "output.channels")
        try:
            fmt = spec_format(manifest)
            _strides(fmt.bins, fmt.frames, self._config(manifest)["levels"])
        except ValueError as exc:
            raise ManifestError(str(exc), manifest.path, "architecture") from None
        arch_value(manifest, "griffin_lim_iterations", int, 48, minimum=1)

    def build(self, manifest) -> SpecVAE:
        self.validate(manifest)
        return SpecVAE(**self._config(manifest))

    def render(self, model: LoadedModel, request) -> RenderSteps:
        if request.prompt:
            raise RequestError(f"{model.id} takes a sound class, not a text prompt", field="prompt")
        z = self.latent(model, request)
        label = class_index(model, request.label)
        net: SpecVAE = model.network
        fmt = spec_format(model.manifest)
        iterations = arch_value(model.manifest, "griffin_lim_iterations", int, 48, minimum=1)
        total = iterations + 1
        yield Progress(0, total, "decoding")
        labels = torch.tensor([label], dtype=torch.long, device=model.device)
        zd = net.from_prior(z.to(model.device, model.dtype).reshape(1, -1), labels)
        picture = torch.sigmoid(net.decode(zd, labels).float())
        if picture.device.type == "mps":  # complex STFT support on MPS is incomplete: the phase search runs on the CPU
            picture = picture.cpu()
        steps = fmt.griffin_lim(fmt.magnitudes(picture), iterations)
        while True:  # every Griffin-Lim iteration is a cancel point
            try:
                i = next(steps)
            except StopIteration as stop:
                wave = stop.value
                break
            yield Progress(1 + i, total, "phase")
        wave = finish_waves(wave, model.manifest.output["sample_rate"])[0].detach().float().cpu().numpy()
        return Output("audio", np.ascontiguousarray(wave[:, None], dtype=np.float32),
                      {"sample_rate": model.manifest.output["sample_rate"], "class": model.manifest.conditions.labels[label],
                       "spectrogram": picture[0, 0].detach().cpu().numpy()})

    def encode(self, model: LoadedModel, sounds: np.ndarray, labels: list[str] | None = None) -> torch.Tensor:
        """The latent of one sound (samples,) or (1, samples) float at the model's sample rate, with its class
        (`labels`: one name; None = the default class). Leading silence is skipped; the rest is cut or padded with
        silence to the model's length."""
        net: SpecVAE = model.network
        fmt = spec_format(model.manifest)
        wave = torch.as_tensor(np.asarray(sounds, dtype=np.float32)).reshape(-1)
        if wave.numel() == 0:
            raise RequestError("the sound is empty", field="sound")
        # the model learned sounds that start at once: skip a recording's leading silence (below −40 dB of its peak)
        loud = torch.nonzero(wave.abs() >= 0.01 * wave.abs().max()).flatten()
        if loud.numel():
            wave = wave[max(0, int(loud[0]) - int(ONSET_LEAD * model.manifest.output["sample_rate"])):]
        wave = F.pad(wave, (0, max(0, fmt.length - wave.numel())))[:fmt.length]
        if labels is not None and len(labels) != 1:
            raise RequestError(f"give one class for the sound, got {len(labels)}", field="labels")
        label = class_index(model, labels[0] if labels else None)
        picture = fmt.to_picture(wave[None]).to(model.device, model.dtype)
        labels = torch.tensor([label], device=model.device)
        mu, _ = net.encode(picture, labels)
        return net.to_prior(mu, labels)[0].float().cpu()

"""Procedural one-shot sounds for training and testing the audio models: drums and tonal notes, synthesised offline
with numpy from randomised parameters (no samples, no downloads).

Every sound is drawn from its own seeded generator, so `synthesize(kind, seed)` is the same on every machine and a
data set is a list of (kind, seed) pairs: the training and held-out sets use disjoint seeds.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

SAMPLE_RATE = 22050
LENGTH = 22272  # 1.01 s: 88 STFT frames of hop 256
KINDS = ("kick", "snare", "hat", "open-hat", "tom", "clap", "pluck", "bass", "bell", "pad")


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sr


def _filtered_noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float, slope: float = 0.0,
                    order: int = 2) -> np.ndarray:
    """White noise shaped in the frequency domain by a soft band-pass (low..high Hz) and a tilt of `slope` dB/oct."""
    noise = rng.standard_normal(n)
    spec = np.fft.rfft(noise)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = 1.0
    gain = 1.0 / np.sqrt(1.0 + (low / f) ** (2 * order)) if low > 0 else np.ones_like(f)
    gain = gain / np.sqrt(1.0 + (f / high) ** (2 * order))
    if slope:
        gain = gain * (f / 1000.0) ** (slope / 6.02)
    gain[0] = 0.0
    out = np.fft.irfft(spec * gain, n)
    return out / (np.abs(out).max() + 1e-9)


def _env(t: np.ndarray, decay: float, attack: float = 0.001) -> np.ndarray:
    """An attack ramp then an exponential decay (time constant `decay` seconds)."""
    return np.minimum(1.0, t / max(attack, 1e-6)) * np.exp(-t / decay)


def _sweep(t: np.ndarray, sr: int, f_start: float, f_end: float, tau: float) -> np.ndarray:
    """The phase of a sine whose frequency falls from f_start to f_end with time constant tau."""
    freq = f_end + (f_start - f_end) * np.exp(-t / tau)
    return 2 * np.pi * np.cumsum(freq) / sr


def _additive(t: np.ndarray, f0: float, sr: int, amps: Callable[[np.ndarray], np.ndarray],
              decays: Callable[[np.ndarray], np.ndarray] | None = None, detune: float = 0.0,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """A sum of harmonics k·f0 below Nyquist with amplitude amps(k) and optional per-harmonic decay times."""
    k = np.arange(1, int(0.45 * sr / f0) + 1, dtype=np.float64)[:64]
    a = amps(k)
    phase0 = rng.uniform(0, 2 * np.pi, len(k)) if rng is not None else np.zeros(len(k))
    out = np.zeros_like(t)
    for i, kk in enumerate(k):
        f = kk * f0 * (1.0 + detune * (i % 3 - 1))
        part = a[i] * np.sin(2 * np.pi * f * t + phase0[i])
        if decays is not None:
            part = part * np.exp(-t / decays(k)[i])
        out += part
    return out


def _midi(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _kick(rng, t, sr):
    phase = _sweep(t, sr, rng.uniform(110, 260), rng.uniform(38, 70), rng.uniform(0.015, 0.07))
    body = np.sin(phase) * _env(t, rng.uniform(0.12, 0.45), 0.002)
    click = _filtered_noise(rng, len(t), sr, 1500, 8000) * _env(t, rng.uniform(0.002, 0.008)) * rng.uniform(0, 0.5)
    x = body + click
    drive = rng.uniform(1.0, 4.0)
    return np.tanh(drive * x) / np.tanh(drive)


def _snare(rng, t, sr):
    f = rng.uniform(150, 260)
    tone = (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * f * 1.6 * t)) * _env(t, rng.uniform(0.04, 0.12))
    noise = _filtered_noise(rng, len(t), sr, rng.uniform(800, 2500), rng.uniform(7000, 10000))
    noise = noise * _env(t, rng.uniform(0.08, 0.25))
    mix = rng.uniform(0.4, 0.8)
    return (1 - mix) * tone + mix * 1.5 * noise


def _metal(rng, t, sr):
    """Six square-ish oscillators at inharmonic ratios (as the 808's cymbal circuit), band-passed."""
    base = rng.uniform(250, 500)
    ratios = np.array([1.0, 1.342, 1.2312, 1.6532, 1.9523, 2.1523]) * rng.uniform(0.95, 1.05, 6)
    x = sum(np.sign(np.sin(2 * np.pi * base * r * t + rng.uniform(0, 6.28))) for r in ratios)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(t), 1.0 / sr)
    f[0] = 1.0
    spec *= 1.0 / np.sqrt(1.0 + (6000.0 / f) ** 4)
    out = np.fft.irfft(spec, len(t))
    return out / (np.abs(out).max() + 1e-9)


def _hat(rng, t, sr, decay):
    noise = _filtered_noise(rng, len(t), sr, rng.uniform(5000, 8000), 10500, order=3)
    metal = _metal(rng, t, sr)
    mix = rng.uniform(0.0, 0.7)
    return ((1 - mix) * noise + mix * metal) * _env(t, decay, 0.0005)


def _tom(rng, t, sr):
    f_end = rng.uniform(80, 300)
    phase = _sweep(t, sr, f_end * rng.uniform(1.2, 1.8), f_end, rng.uniform(0.04, 0.12))
    body = np.sin(phase) * _env(t, rng.uniform(0.15, 0.45), 0.002)
    skin = _filtered_noise(rng, len(t), sr, 300, 3000) * _env(t, rng.uniform(0.01, 0.04)) * rng.uniform(0.0, 0.3)
    return body + skin


def _clap(rng, t, sr):
    noise = _filtered_noise(rng, len(t), sr, rng.uniform(700, 1200), rng.uniform(2200, 4000))
    env = np.zeros_like(t)
    start, gap = 0.0, rng.uniform(0.007, 0.014)
    for _ in range(int(rng.integers(3, 5))):
        env = np.maximum(env, np.where(t >= start, np.exp(-np.maximum(t - start, 0) / 0.004), 0.0))
        start += gap * rng.uniform(0.8, 1.2)
    tail = np.where(t >= start, np.exp(-np.maximum(t - start, 0) / rng.uniform(0.08, 0.3)), 0.0)
    return noise * np.maximum(env, 0.8 * tail)


def _pluck(rng, t, sr):
    f0 = _midi(rng.uniform(45, 81))
    bright = rng.uniform(0.8, 2.0)
    decay = rng.uniform(0.25, 0.9)
    x = _additive(t, f0, sr, lambda k: k ** -bright, lambda k: decay / (1 + 0.25 * (k - 1) * rng.uniform(0.5, 1.5)),
                  rng=rng)
    return x * _env(t, 10.0, 0.002)


def _bass(rng, t, sr):
    f0 = _midi(rng.uniform(28, 50))
    cutoff0, cutoff1 = rng.uniform(800, 3000), rng.uniform(120, 400)
    tau = rng.uniform(0.05, 0.3)
    square = rng.random() < 0.4
    k = np.arange(1, int(0.45 * sr / f0) + 1, dtype=np.float64)[:64]
    out = np.zeros_like(t)
    fc = cutoff1 + (cutoff0 - cutoff1) * np.exp(-t / tau)
    for kk in k:
        if square and kk % 2 == 0:
            continue
        out += (1 / kk) * np.sin(2 * np.pi * kk * f0 * t) / np.sqrt(1 + (kk * f0 / fc) ** 4)
    gate = rng.uniform(0.3, 0.8)
    amp = np.where(t < gate, 1.0, np.exp(-(t - gate) / 0.05)) * _env(t, rng.uniform(0.5, 2.0), 0.004)
    return out * amp


def _bell(rng, t, sr):
    fc = _midi(rng.uniform(64, 90))
    ratio = rng.choice([1.4, 2.76, 3.5, 1.99, 4.07])
    index = rng.uniform(1.0, 5.0) * np.exp(-t / rng.uniform(0.1, 0.6))
    mod = index * np.sin(2 * np.pi * fc * ratio * t)
    return np.sin(2 * np.pi * fc * t + mod) * _env(t, rng.uniform(0.3, 1.2), 0.001)


def _pad(rng, t, sr):
    root = rng.uniform(45, 64)
    chord = [0, rng.choice([3, 4]), 7] if rng.random() < 0.7 else [0, 7, 12]
    bright = rng.uniform(1.2, 2.2)
    out = np.zeros_like(t)
    for step in chord:
        for detune in (-1, 1):
            f0 = _midi(root + step) * (1 + detune * rng.uniform(0.002, 0.008))
            out += _additive(t, f0, sr, lambda k: k ** -bright, rng=rng)
    attack, release = rng.uniform(0.08, 0.4), rng.uniform(0.1, 0.25)
    end = t[-1] - release
    amp = np.clip(t / attack, 0, 1) * np.clip((t[-1] - t) / release, 0, 1) ** 2
    amp = amp * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)) * np.where(t < end, 1.0, 1.0)
    return out * amp


_SYNTHS = {
    "kick": _kick, "snare": _snare, "hat": lambda r, t, sr: _hat(r, t, sr, r.uniform(0.015, 0.06)),
    "open-hat": lambda r, t, sr: _hat(r, t, sr, r.uniform(0.2, 0.6)), "tom": _tom, "clap": _clap,
    "pluck": _pluck, "bass": _bass, "bell": _bell, "pad": _pad,
}


def synthesize(kind: str, seed: int, sample_rate: int = SAMPLE_RATE, length: int = LENGTH) -> np.ndarray:
    """One randomised one-shot of `kind` (float32, mono, peak 0.3–0.95, starting within 4 ms)."""
    if kind not in _SYNTHS:
        raise ValueError(f"unknown sound kind {kind!r} (known: {', '.join(KINDS)})")
    rng = np.random.default_rng([KINDS.index(kind), int(seed)])
    offset = int(rng.uniform(0, 0.004) * sample_rate)
    t = _t(length - offset, sample_rate)
    x = _SYNTHS[kind](rng, t, sample_rate)
    fade = min(len(x), int(0.01 * sample_rate))
    x[-fade:] *= np.linspace(1, 0, fade)  # no click at the cut
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.95)
    return np.concatenate([np.zeros(offset), x]).astype(np.float32)


def sound_set(per_kind: int, first_seed: int = 0, kinds: tuple[str, ...] = KINDS, sample_rate: int = SAMPLE_RATE,
              length: int = LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """`per_kind` sounds of each kind with seeds first_seed, first_seed + 1, …: (N, length) float32 and labels (N,)."""
    waves, labels = [], []
    for label, kind in enumerate(kinds):
        for seed in range(first_seed, first_seed + per_kind):
            waves.append(synthesize(kind, seed, sample_rate, length))
            labels.append(label)
    return np.stack(waves), np.array(labels, dtype=np.int64)

"""Audio-reactive curves: envelopes of a sound, one value per video frame, to drive motion through latent space.

`envelopes(wave, rate, fps)` gives, for every frame at `fps`, the loudness, the onset strength and the level of the
low, mid and high bands, each scaled to [0, 1] over the sound. `shape(curve, gain, smoothing)` applies a mapping's
gain and attack/release smoothing. NumPy only.
"""

from __future__ import annotations

import math

import numpy as np

ENVELOPES = ("loudness", "onsets", "low", "mid", "high")
BANDS = {"low": (20.0, 250.0), "mid": (250.0, 2000.0), "high": (2000.0, 20000.0)}
FLOOR_DB = -60.0  # levels below this (relative to the loudest frame) count as silence


def _windows(samples: int, rate: int, fps: float) -> tuple[int, int, np.ndarray]:
    """The frame count, window length (covering two frames' worth of sound) and each window's centre sample."""
    n_frames = max(1, int(round(samples / rate * fps)))
    hop = rate / fps
    window = 1 << max(8, int(math.ceil(math.log2(max(2.0 * hop, 2.0)))))
    centres = (np.arange(n_frames) * hop + hop / 2).astype(np.int64)
    return n_frames, window, centres


def _frames(wave: np.ndarray, rate: int, fps: float) -> tuple[np.ndarray, int]:
    """Windows of the mono sound centred on each video frame's time: (frames, window) and the window length."""
    _, window, centres = _windows(len(wave), rate, fps)
    padded = np.pad(wave, (window // 2, window // 2))
    index = centres[:, None] + np.arange(window)[None, :]
    return padded[np.minimum(index, len(padded) - 1)], window


def _mono(wave: np.ndarray, rate: int, fps: float) -> np.ndarray:
    """The sound as mono float64 samples, or a ValueError for what no envelope can be taken of."""
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if rate <= 0:
        raise ValueError(f"the sample rate must be positive, got {rate!r}")
    x = np.asarray(wave, dtype=np.float64)
    mono = x.mean(axis=1) if x.ndim == 2 else x
    if mono.size == 0:
        raise ValueError("the sound is empty")
    if not np.isfinite(mono).all():
        raise ValueError("the sound has NaN or infinite samples")
    if np.abs(mono).max() < 1e-5:
        raise ValueError("the sound is silent: there is nothing to react to")
    return mono


def _unit(x: np.ndarray) -> np.ndarray:
    top = float(x.max()) if x.size else 0.0
    return x / top if top > 0 else np.zeros_like(x)


def _db_unit(power: np.ndarray) -> np.ndarray:
    """Power → dB relative to its maximum, mapped FLOOR_DB…0 → 0…1."""
    top = float(power.max()) if power.size else 0.0
    if top <= 0:
        return np.zeros_like(power)
    db = 10 * np.log10(np.maximum(power / top, 10 ** (FLOOR_DB / 10)))
    return 1.0 - db / FLOOR_DB


def envelopes(wave: np.ndarray, rate: int, fps: float) -> dict[str, np.ndarray]:
    """Per-frame envelopes of a sound ((samples,) or (samples, channels) float) at `fps`, each float32 in [0, 1]."""
    mono = _mono(wave, rate, fps)
    frames, window = _frames(mono, rate, fps)
    tapered = frames * np.hanning(window)
    spectrum = np.abs(np.fft.rfft(tapered, axis=1)) ** 2
    freqs = np.fft.rfftfreq(window, 1.0 / rate)
    out = {"loudness": _db_unit((frames ** 2).mean(axis=1))}
    log_spec = np.log1p(spectrum / max(float(spectrum.max()), 1e-20) * 1e4)
    flux = np.maximum(np.diff(log_spec, axis=0, prepend=log_spec[:1]), 0.0).sum(axis=1)  # rises in energy only
    out["onsets"] = _unit(flux)
    for name, (lo, hi) in BANDS.items():
        band = (freqs >= lo) & (freqs < hi)
        out[name] = _db_unit(spectrum[:, band].sum(axis=1)) if band.any() else np.zeros(len(frames))
    return {k: v.astype(np.float32) for k, v in out.items()}


def envelopes_in_chunks(wave: np.ndarray, rate: int, fps: float, names: tuple[str, ...] = ENVELOPES,
                        chunk: int = 256) -> dict[str, np.ndarray]:
    """The envelopes `names` of `envelopes` (the same values), computed `chunk` frames at a time: memory stays a few
    megabytes for any length of sound (`envelopes` holds every frame's window and spectrum at once: 1.5 GB for ten
    minutes at 24 fps), and no single numpy call runs long, so a worker thread computing them never holds the GIL
    for long (the window's waveform under the timeline)."""
    unknown = sorted(set(names) - set(ENVELOPES))
    if unknown:
        raise ValueError(f"unknown envelopes {', '.join(unknown)} (use {', '.join(ENVELOPES)})")
    mono = _mono(wave, rate, fps)
    # the windows of `_frames`, a chunk at a time
    n_frames, window, centres = _windows(len(mono), rate, fps)
    padded = np.pad(mono, (window // 2, window // 2))
    taper = np.hanning(window)
    freqs = np.fft.rfftfreq(window, 1.0 / rate)
    bands = {name: (freqs >= lo) & (freqs < hi) for name, (lo, hi) in BANDS.items() if name in names}
    spans = [(a, min(a + chunk, n_frames)) for a in range(0, n_frames, chunk)]

    def frames(a: int, b: int) -> np.ndarray:
        index = centres[a:b, None] + np.arange(window)[None, :]
        return padded[np.minimum(index, len(padded) - 1)]

    def spectrum(block: np.ndarray) -> np.ndarray:
        return np.abs(np.fft.rfft(block * taper, axis=1)) ** 2

    power: list[np.ndarray] = []
    band_sums: dict[str, list[np.ndarray]] = {name: [] for name in bands}
    top = 0.0
    for a, b in spans:
        block = frames(a, b)
        power.append((block ** 2).mean(axis=1))
        if bands or "onsets" in names:
            spec = spectrum(block)
            top = max(top, float(spec.max()) if spec.size else 0.0)
            for name, band in bands.items():
                band_sums[name].append(spec[:, band].sum(axis=1))
    out: dict[str, np.ndarray] = {}
    if "loudness" in names:
        out["loudness"] = _db_unit(np.concatenate(power))
    for name, band in bands.items():
        out[name] = _db_unit(np.concatenate(band_sums[name])) if band.any() else np.zeros(n_frames)
    if "onsets" in names:  # a second pass: the log spectrum is scaled by the loudest bin of the whole sound
        flux, previous = [], None
        for a, b in spans:
            log_spec = np.log1p(spectrum(frames(a, b)) / max(top, 1e-20) * 1e4)
            before = log_spec[:1] if previous is None else previous
            flux.append(np.maximum(np.diff(log_spec, axis=0, prepend=before), 0.0).sum(axis=1))
            previous = log_spec[-1:]
        out["onsets"] = _unit(np.concatenate(flux))
    return {k: v.astype(np.float32) for k, v in out.items()}


def shape(curve: np.ndarray, gain: float = 1.0, attack: float = 0.0, release: float = 0.0,
          fps: float = 30.0) -> np.ndarray:
    """A mapping's response to an envelope: one-pole smoothing that rises with time constant `attack` and falls
    with `release` (seconds; 0 = instant), then times `gain`."""
    for name, value in (("attack", attack), ("release", release)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be zero or more seconds, got {value!r}")
    up = 1.0 - math.exp(-1.0 / (attack * fps)) if attack > 0 else 1.0
    down = 1.0 - math.exp(-1.0 / (release * fps)) if release > 0 else 1.0
    out = np.empty(len(curve), dtype=np.float32)
    level = float(curve[0]) if len(curve) else 0.0
    for i, value in enumerate(np.asarray(curve, dtype=np.float64)):
        level += (up if value > level else down) * (value - level)
        out[i] = level
    return out * np.float32(gain)

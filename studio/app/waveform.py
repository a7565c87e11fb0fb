"""A sketch of the timeline's sound for the track, with no Qt: the waveform's peaks (min and max of fixed buckets,
reduced to one pair per pixel column when drawn) and the curves of the audio mappings (their envelope of the sound
at the timeline's fps, shaped by gain, attack and release: what `Timeline.frame_requests` adds).

Reading a long sound and its envelopes takes a while: the window computes a sketch on a worker thread, once per
sound, fps and mappings, and draws it with `columns` (cheap numpy).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from studio.export.audio import read_sound
from studio.latent.reactive import envelopes_in_chunks, shape
from studio.project.timeline import AudioMapping

BUCKETS = 16384  # peak pairs kept for the whole sound (a 10-minute sound: one per 37 ms)


@dataclass(frozen=True)
class SoundSketch:
    peaks: np.ndarray  # (buckets, 2) float32: the min and max sample of each stretch of the sound
    seconds: float  # the sound's length
    fps: float  # the rate of the curves
    curves: tuple[np.ndarray, ...]  # one per mapping: its shaped envelope per frame (frame k at k / fps)


def peaks_of(wave: np.ndarray, buckets: int = BUCKETS) -> np.ndarray:
    """(min, max) of `buckets` equal stretches of a mono `wave` (fewer when the sound has fewer samples)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        return np.zeros((0, 2), np.float32)
    n = min(buckets, wave.size)
    edges = np.linspace(0, wave.size, n + 1).astype(np.int64)[:-1]
    return np.stack([np.minimum.reduceat(wave, edges), np.maximum.reduceat(wave, edges)], axis=1)


def sketch_sound(path: str | Path, fps: float, mappings: tuple[AudioMapping, ...] = (), buckets: int = BUCKETS,
                 on_peaks: Callable[[SoundSketch], None] | None = None) -> SoundSketch:
    """The sketch of the sound at `path`; `on_peaks(sketch)` gets the waveform alone first (quick), before the
    mappings' curves are computed (a long sound's envelopes take seconds). StudioError naming an unreadable file;
    ValueError for a silent one when there are mappings."""
    wave, info = read_sound(path, None)
    rate = int(info["sample_rate"])
    sketch = SoundSketch(peaks_of(wave, buckets), len(wave) / rate, float(fps), ())
    if not mappings:
        return sketch
    if on_peaks is not None:
        on_peaks(sketch)
    found = envelopes_in_chunks(wave, rate, fps, tuple(sorted({m.envelope for m in mappings})))
    return dataclasses.replace(sketch, curves=tuple(shape(found[m.envelope], m.gain, m.attack, m.release, fps)
                                                    for m in mappings))


def columns(sketch: SoundSketch, start: float, seconds_per_column: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(mins, maxs) of `count` pixel columns from `start` seconds, each `seconds_per_column` wide (zero where the
    column is outside the sound)."""
    mins, maxs = np.zeros(count, np.float32), np.zeros(count, np.float32)
    n = len(sketch.peaks)
    if n == 0 or sketch.seconds <= 0 or count <= 0:
        return mins, maxs
    edges = start + np.arange(count + 1) * seconds_per_column
    index = np.clip((edges / sketch.seconds * n).astype(np.int64), 0, n)
    inside = (index[:-1] < n) & (edges[1:] > 0)
    lo = index[:-1]
    last = min(max(int(index[-1]), int(lo[-1]) + 1), n)
    # reduceat takes each column from its first bucket to the next column's (a column narrower than a bucket: its
    # own bucket); the copy of the last row lets the last column end at the sound's end
    peaks = np.vstack([sketch.peaks, sketch.peaks[-1:]])
    idx = np.append(lo, last)
    low = np.minimum.reduceat(peaks[:, 0], idx)[:-1]
    high = np.maximum.reduceat(peaks[:, 1], idx)[:-1]
    mins[inside], maxs[inside] = low[inside], high[inside]
    return mins, maxs

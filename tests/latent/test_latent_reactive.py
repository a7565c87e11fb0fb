"""Audio-reactive envelopes (studio.latent.reactive): one value per frame, loudness follows the level, onsets mark
hits, the bands split low from high, smoothing and gain; clear errors for silent or empty sounds."""

from __future__ import annotations

import numpy as np
import pytest

from studio.latent.reactive import ENVELOPES, envelopes, shape

RATE, FPS = 22050, 30


def tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return amp * np.sin(2 * np.pi * freq * t)


def test_one_value_per_frame_in_0_1():
    env = envelopes(tone(440, 2.0), RATE, FPS)
    assert set(env) == set(ENVELOPES)
    for name, curve in env.items():
        assert curve.shape == (60,) and curve.dtype == np.float32, name
        assert curve.min() >= 0 and curve.max() <= 1 + 1e-6, name


def test_loudness_follows_the_level_and_onsets_mark_the_hits():
    quiet, loud = tone(440, 1.0, 0.05), tone(440, 1.0, 0.8)
    env = envelopes(np.concatenate([quiet, loud]), RATE, FPS)
    assert env["loudness"][5:25].mean() < env["loudness"][35:55].mean() - 0.3
    hits = np.zeros(2 * RATE)
    for start in (0.5, 1.5):  # two clicks of decaying noise
        i = int(start * RATE)
        hits[i:i + 2000] = np.random.default_rng(0).standard_normal(2000) * np.exp(-np.arange(2000) / 300)
    onsets = envelopes(hits, RATE, FPS)["onsets"]
    peaks = sorted(np.argsort(onsets)[-2:])
    assert abs(peaks[0] - 15) <= 1 and abs(peaks[1] - 45) <= 1


def test_bands_split_low_from_high():
    low = envelopes(np.concatenate([tone(80, 1.0), tone(5000, 1.0)]), RATE, FPS)
    assert low["low"][5:25].mean() > low["low"][35:55].mean() + 0.3
    assert low["high"][35:55].mean() > low["high"][5:25].mean() + 0.3


def test_stereo_is_mixed_and_bad_sounds_are_refused():
    stereo = np.stack([tone(440, 1.0), tone(440, 1.0)], axis=1)
    assert envelopes(stereo, RATE, FPS)["loudness"].shape == (30,)
    with pytest.raises(ValueError, match="silent"):
        envelopes(np.zeros(RATE), RATE, FPS)
    with pytest.raises(ValueError, match="empty"):
        envelopes(np.zeros(0), RATE, FPS)
    with pytest.raises(ValueError, match="fps"):
        envelopes(tone(440, 1.0), RATE, 0)


def test_shape_smooths_with_attack_and_release_and_scales():
    step = np.array([0.0] * 10 + [1.0] * 30 + [0.0] * 30, dtype=np.float32)
    instant = shape(step, gain=2.0)
    assert np.allclose(instant, 2 * step)
    slow = shape(step, attack=0.2, release=0.5, fps=FPS)
    assert 0 < slow[11] < 0.5 and slow[39] > 0.95  # rises over ~6 frames
    assert slow[45] > 0.6  # falls slower than it rose
    with pytest.raises(ValueError, match="release"):
        shape(step, release=-1)


@pytest.mark.parametrize("chunk", [1, 7, 256, 10_000])
def test_envelopes_in_chunks_equal_the_whole_sounds(chunk):
    from studio.latent.reactive import envelopes, envelopes_in_chunks

    rate, fps = 8000, 24.0
    t = np.arange(3 * rate) / rate
    rng = np.random.default_rng(3)
    wave = (0.5 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.1) + 0.05 * rng.standard_normal(len(t))
            + 0.3 * np.sin(2 * np.pi * 3000 * t) * (t > 1.5)).astype(np.float32)
    whole = envelopes(wave, rate, fps)
    parts = envelopes_in_chunks(wave, rate, fps, chunk=chunk)
    assert set(parts) == set(whole)
    for name in whole:
        assert parts[name].dtype == np.float32 and np.allclose(parts[name], whole[name], atol=1e-5), name
    only = envelopes_in_chunks(np.stack([wave, wave], axis=1), rate, fps, ("onsets",), chunk=chunk)
    assert set(only) == {"onsets"} and np.allclose(only["onsets"], whole["onsets"], atol=1e-5)


def test_envelopes_in_chunks_refuse_what_envelopes_refuses():
    from studio.latent.reactive import envelopes_in_chunks

    for wave, words in ((np.zeros(800, np.float32), "silent"), (np.zeros(0, np.float32), "empty"),
                        (np.array([0.5, np.nan], np.float32), "NaN")):
        with pytest.raises(ValueError, match=words):
            envelopes_in_chunks(wave, 8000, 24.0)
    with pytest.raises(ValueError, match="unknown envelopes wobble"):
        envelopes_in_chunks(np.ones(800, np.float32), 8000, 24.0, ("wobble",))

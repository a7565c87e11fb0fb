"""Latent paths for animation: easing endpoints and monotonicity, locating frames among keyframes, slerp endpoints
and norms, and blending keyframe requests (studio.latent.paths)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.latent.paths import (EASINGS, blend_requests, blend_values, check_durations, ease, frame_count,
                                 locate)
from studio.params import Kind, ParamSpec, ParamTable
from studio.request import CORE_FIELDS, RenderRequest


@pytest.mark.parametrize("name", sorted(EASINGS))
def test_easings_start_at_0_end_at_1_and_never_turn_back(name):
    us = np.linspace(0, 1, 201)
    values = [ease(name, u) for u in us]
    assert values[0] == 0.0 and values[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    assert ease(name, -1) == 0.0 and ease(name, 2) == pytest.approx(1.0)  # clamped


def test_easings_shape_the_speed():
    assert ease("ease-in", 0.25) < 0.25 < ease("ease-out", 0.25)
    assert ease("ease-in-out", 0.5) == pytest.approx(0.5) and ease("cubic", 0.5) == pytest.approx(0.5)
    assert ease("cubic", 0.1) < ease("ease-in-out", 0.1) < 0.1  # cubic is slower off the mark
    with pytest.raises(ValueError, match="unknown easing 'bounce'.*linear"):
        ease("bounce", 0.5)


def test_durations_are_checked_against_the_keyframes():
    assert check_durations([1, 2], 3) == [1.0, 2.0]
    assert check_durations([1, 2, 3], 3, loop=True) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="at least two keyframes"):
        check_durations([], 1)
    with pytest.raises(ValueError, match="need 2 segment durations, got 1"):
        check_durations([1], 3)
    with pytest.raises(ValueError, match="positive"):
        check_durations([1, 0], 3)


def test_frames_fall_in_the_right_segment():
    durations = [1.0, 2.0]
    assert frame_count(durations, 24) == 72
    assert locate(0.0, durations) == (0, 0.0)
    assert locate(0.5, durations) == (0, 0.5)
    assert locate(1.0, durations) == (1, 0.0)
    assert locate(2.0, durations) == (1, 0.5)
    assert locate(99.0, durations) == (1, 1.0)
    segment, u = locate(0.5, durations, ["ease-in", "linear"])
    assert segment == 0 and u == pytest.approx(0.25)
    with pytest.raises(ValueError, match="fps"):
        frame_count(durations, 0)


def test_slerp_keeps_endpoints_and_the_norm_of_gaussian_latents():
    gen = np.random.default_rng(0)
    a, b = gen.standard_normal(512), gen.standard_normal(512)
    assert np.allclose(blend_values(a, b, 0.0), a, atol=1e-6) and np.allclose(blend_values(a, b, 1.0), b, atol=1e-6)
    mid_s = np.array(blend_values(a, b, 0.5, "slerp"))
    mid_l = np.array(blend_values(a, b, 0.5, "lerp"))
    expected = (np.linalg.norm(a) + np.linalg.norm(b)) / 2
    assert np.linalg.norm(mid_s) == pytest.approx(expected, rel=1e-5)
    assert np.linalg.norm(mid_l) < 0.8 * expected  # a straight line cuts through the low-norm middle
    with pytest.raises(ValueError, match="unknown interpolation"):
        blend_values(a, b, 0.5, "cubic")


def request(**kw) -> RenderRequest:
    """A request of model "m": core fields by name, everything else as params."""
    core = {name: kw.pop(name) for name in CORE_FIELDS if name in kw}
    return RenderRequest("m", params=kw, **core)


TABLE = ParamTable([ParamSpec("label", Kind.CHOICE, choices=(("kick", "kick"), ("pad", "pad")), default="kick"),
                    ParamSpec("guidance", Kind.FLOAT, default=3.0), ParamSpec("steps", Kind.INT, default=10),
                    ParamSpec("mix_seed", Kind.SEED), ParamSpec("d", Kind.FLOAT, default=0.0, count=4)])


def test_blending_requests_interpolates_what_varies_smoothly_and_snaps_the_rest():
    a = request(seed=1, latent=(1.0, 0.0), label="kick", guidance=2.0, d0=1.0, steps=10, mix_seed=5)
    b = request(seed=2, latent=(0.0, 1.0), label="pad", guidance=4.0, d1=-2.0, steps=20, mix_seed=9)
    early = blend_requests(a, b, 0.25, "lerp", TABLE.default)
    late = blend_requests(a, b, 0.75, "lerp", TABLE.default)
    assert early.latent == pytest.approx((0.75, 0.25)) and early.param("guidance") == pytest.approx(2.5)
    # a direction offset missing on one keyframe counts as its default (0)
    assert early.param("d0") == pytest.approx(0.75) and early.param("d1") == pytest.approx(-0.5)
    assert late.param("d0") == pytest.approx(0.25) and late.param("d1") == pytest.approx(-1.5)
    assert (early.seed, early.param("label"), late.seed, late.param("label")) == (1, "kick", 2, "pad")
    # whole numbers (steps, seeds) are not blended: the nearer keyframe's
    assert (early.param("steps"), early.param("mix_seed"), late.param("steps"), late.param("mix_seed")) == (10, 5, 20, 9)
    assert type(early.param("steps")) is int and type(late.param("mix_seed")) is int
    assert TABLE.check(early) == early and TABLE.check(late) == late
    # a number param set on one keyframe only moves from the model's default toward it
    c = request(seed=3, latent=(0.0, 1.0))
    assert blend_requests(a, c, 0.5, "lerp", TABLE.default).param("guidance") == pytest.approx(2.5)  # 2 → 3
    # without the model's defaults a param set on one side only is the nearer keyframe's
    assert blend_requests(a, c, 0.25, "lerp").param("guidance") == 2.0
    assert blend_requests(a, c, 0.75, "lerp").param("guidance") is None
    assert blend_requests(a, b, 0.0, "slerp").latent == pytest.approx(a.latent)
    with pytest.raises(ValueError, match="different models"):
        blend_requests(a, RenderRequest("other", latent=(0.0, 1.0)), 0.5)
    with pytest.raises(ValueError, match="explicit latent values"):
        blend_requests(a, request(seed=3), 0.5)

"""The latent pad's mapping (studio.latent.pad): axes with clamping and their inverse, the four corners' bilinear
weights, and the blend of corner latents (renormalised for Gaussian samples, plain for a GAN's w)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.latent.pad import PadAxis, bilinear_weights, blend_corners, clamp_point


def gaussian_corners(d: int = 512, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, d))


def test_points_are_clamped_to_the_pad():
    assert clamp_point(1.7, -3.0) == (1.0, -1.0)
    assert clamp_point(0.25, -0.5) == (0.25, -0.5)
    assert clamp_point(float("nan"), 2) == (0.0, 1.0)


def test_an_axis_maps_centre_edges_and_clamps_to_the_params_range():
    axis = PadAxis("d0", base=0.0, reach=3.0)
    assert (axis.value(-1), axis.value(0), axis.value(0.5), axis.value(1)) == (-3.0, 0.0, 1.5, 3.0)
    assert axis.value(5) == 3.0  # past the pad's edge: the edge
    psi = PadAxis("truncation", base=1.0, reach=1.5, low=-1.0, high=2.0)
    assert psi.value(1) == 2.0 and psi.value(-1) == -0.5 and psi.value(0) == 1.0
    assert psi.value(0.4) == pytest.approx(1.6)


def test_position_is_the_inverse_of_value_within_the_reach():
    axis = PadAxis("d3", base=0.5, reach=2.0)
    for t in (-1.0, -0.3, 0.0, 0.7, 1.0):
        assert axis.position(axis.value(t)) == pytest.approx(t)
    assert axis.position(99.0) == 1.0 and axis.position(-99.0) == -1.0
    assert PadAxis("d0", reach=0.0).position(4.0) == 0.0


def test_bilinear_weights_at_the_corners_centre_and_edges():
    corners = {(-1, -1): 0, (1, -1): 1, (-1, 1): 2, (1, 1): 3}  # s00 bottom-left, s10, s01, s11 top-right
    for (x, y), index in corners.items():
        expected = np.zeros(4)
        expected[index] = 1
        np.testing.assert_array_equal(bilinear_weights(x, y), expected)
    np.testing.assert_allclose(bilinear_weights(0, 0), [0.25] * 4)
    np.testing.assert_allclose(bilinear_weights(1, 0), [0, 0.5, 0, 0.5])  # the right edge: s10 and s11
    np.testing.assert_allclose(bilinear_weights(0.3, -0.6), bilinear_weights(0.3, -0.6))
    for x, y in ((0.3, -0.6), (-0.9, 0.1), (2, 2)):
        w = bilinear_weights(x, y)
        assert (w >= 0).all() and w.sum() == pytest.approx(1.0)


def test_a_corner_gives_exactly_its_latent_renormalised_or_not():
    corners = gaussian_corners()
    for renormalise in (True, False):
        np.testing.assert_allclose(blend_corners(corners, -1, -1, renormalise), corners[0], rtol=1e-12)
        np.testing.assert_allclose(blend_corners(corners, 1, 1, renormalise), corners[3], rtol=1e-12)


def test_renormalised_blends_keep_a_gaussian_samples_norm():
    d = 512
    corners = gaussian_corners(d)
    plain = blend_corners(corners, 0, 0, renormalise=False)
    kept = blend_corners(corners, 0, 0, renormalise=True)
    # four independent samples averaged: the norm halves; renormalised, it is the corners' mean norm (≈ √d)
    assert np.linalg.norm(plain) == pytest.approx(np.sqrt(d) / 2, rel=0.1)
    assert np.linalg.norm(kept) == pytest.approx(np.linalg.norm(corners, axis=1).mean(), rel=1e-9)
    assert np.linalg.norm(kept) == pytest.approx(np.sqrt(d), rel=0.1)
    # the direction is the plain blend's
    assert np.dot(kept, plain) / np.linalg.norm(kept) / np.linalg.norm(plain) == pytest.approx(1.0)
    for x, y in np.random.default_rng(1).uniform(-1, 1, (20, 2)):
        w = bilinear_weights(x, y)
        assert np.linalg.norm(blend_corners(corners, x, y)) == pytest.approx(w @ np.linalg.norm(corners, axis=1))


def test_one_latent_on_every_corner_stays_put():
    z = gaussian_corners()[0]
    same = np.stack([z] * 4)
    for x, y in ((0, 0), (0.4, -0.8)):
        np.testing.assert_allclose(blend_corners(same, x, y), z, rtol=1e-12)


def test_a_plain_blend_is_the_weighted_sum():
    corners = gaussian_corners(16, 3) + 5.0  # w-like: far from the origin
    w = bilinear_weights(0.2, 0.6)
    np.testing.assert_allclose(blend_corners(corners, 0.2, 0.6, renormalise=False), w @ corners)


def test_the_blend_is_deterministic_and_checks_its_corners():
    corners = gaussian_corners(64, 7)
    a, b = blend_corners(corners, 0.37, -0.11), blend_corners(corners.copy(), 0.37, -0.11)
    assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="four corner latents"):
        blend_corners(corners[:3], 0, 0)
    with pytest.raises(ValueError, match="four corner latents"):
        blend_corners([np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(4)], 0, 0)
    opposite = np.stack([np.ones(4), -np.ones(4), -np.ones(4), np.ones(4)])  # the centre cancels out exactly
    np.testing.assert_array_equal(blend_corners(opposite, 0, 0), np.zeros(4))

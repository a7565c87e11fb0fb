"""The 2-D latent pad's mapping, in NumPy only (the window computes it on the GUI thread for every mouse move, so no
torch here).

The pad is the square (x, y) ∈ [-1, 1]²: x grows to the right, y grows upwards (the pad's centre is (0, 0)). It maps
to a request in one of two ways:

- **Two axes** (`PadAxis`): x moves one number param and y another, each `base + t · reach`, clamped to the param's
  hard limits; `PadAxis.position` is the inverse (where a value sits on the pad), for drawing the handle.
- **Four corner seeds** (`blend_corners`), as the StyleGAN3 visualizer's latent widget does: corner s00 is the
  bottom-left (-1, -1), s10 the bottom-right (1, -1), s01 the top-left (-1, 1), s11 the top-right (1, 1); a point is
  the bilinear blend of the four corners' latents (weights ≥ 0 that sum to 1, exactly one corner's latent at a
  corner).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CORNERS = ("s00", "s10", "s01", "s11")  # the order of corner seeds and latents everywhere: BL, BR, TL, TR


def clamp_point(x: float, y: float) -> tuple[float, float]:
    """(x, y) inside the pad: each clamped to [-1, 1] (a drag past the edge stays on the edge); NaN counts as 0."""
    return _clamp(x), _clamp(y)


def _clamp(t: float) -> float:
    t = float(t)
    return 0.0 if math.isnan(t) else min(1.0, max(-1.0, t))


@dataclass(frozen=True)
class PadAxis:
    """One pad axis driving the number param `name`: at t ∈ [-1, 1] the value is `base + t · reach`, clamped to
    [`low`, `high`] (the param's hard range; None: unbounded on that side)."""

    name: str
    base: float = 0.0
    reach: float = 1.0
    low: float | None = None
    high: float | None = None

    def value(self, t: float) -> float:
        value = self.base + _clamp(t) * self.reach
        if self.low is not None:
            value = max(self.low, value)
        if self.high is not None:
            value = min(self.high, value)
        return float(value)

    def position(self, value: float) -> float:
        """Where `value` sits on this axis, in [-1, 1] (a value beyond the reach sits on the edge; a zero reach puts
        every value at the centre)."""
        if self.reach == 0:
            return 0.0
        return _clamp((float(value) - self.base) / self.reach)


def bilinear_weights(x: float, y: float) -> np.ndarray:
    """The four corners' weights at (x, y), in CORNERS order (s00, s10, s01, s11): each ≥ 0, summing to 1."""
    x, y = clamp_point(x, y)
    u, v = (x + 1) / 2, (y + 1) / 2
    return np.array([(1 - u) * (1 - v), u * (1 - v), (1 - u) * v, u * v], dtype=np.float64)


def blend_corners(corners: Sequence[Sequence[float]], x: float, y: float, renormalise: bool = True) -> np.ndarray:
    """The latent at (x, y): the bilinear blend of the four corners' flat latents (CORNERS order), in float64.

    With `renormalise` (latents that are Gaussian samples: a seed's z), the blend is rescaled so that its norm is the
    bilinear blend of the corners' norms (as `studio.latent.interp.slerp_array` interpolates norms). A plain blend of
    independent Gaussian samples shrinks toward the origin (its norm is half a sample's at the centre), where the
    prior has almost no mass and models draw washed-out pictures; rescaled, the norm stays ≈ √d like a Gaussian
    sample of d values, is exact at the corners, and a pad whose corners hold one latent stays on it everywhere.

    Without it (latents that are not Gaussian samples, a style-based GAN's w), the plain weighted sum: the StyleGAN3
    visualizer's blend of w (weights summing to 1 keep w̄ in place).
    """
    flat = [np.asarray(c, dtype=np.float64).reshape(-1) for c in corners]
    if len(flat) != 4 or len({c.size for c in flat}) != 1 or not flat[0].size:
        raise ValueError(f"a seed pad needs four corner latents of one size, got {len(flat)} of sizes "
                         f"{sorted({c.size for c in flat})}")
    values = np.stack(flat)
    weights = bilinear_weights(x, y)
    blend = weights @ values
    if not renormalise:
        return blend
    norm = float(np.linalg.norm(blend))
    target = float(weights @ np.linalg.norm(values, axis=1))
    if norm < 1e-12:  # opposite corners cancel out exactly: nothing to rescale
        return blend
    return blend * (target / norm)

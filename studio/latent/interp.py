"""Interpolation between latents, in NumPy only (the GUI thread and the project interpolate saved latents without
torch); `studio.latent.seeds` wraps it for tensors."""

from __future__ import annotations

from typing import Sequence

import numpy as np

MODES = ("slerp", "lerp")


def slerp_array(a: np.ndarray, b: np.ndarray, t: float, eps: float = 1e-7) -> np.ndarray:
    """Spherical interpolation over the last axis, computed in float64.

    The angle is taken between directions; the norm is interpolated linearly, so endpoints are exact and the path
    keeps the typical norm of Gaussian latents instead of cutting through the low-norm middle. Nearly parallel
    inputs fall back to lerp.
    """
    t = float(t)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"cannot interpolate latents of shapes {a.shape} and {b.shape}")
    if t == 0.0:
        return a.copy()
    if t == 1.0:
        return b.copy()
    shape = a.shape
    a2 = a.reshape(-1, shape[-1]).astype(np.float64)
    b2 = b.reshape(-1, shape[-1]).astype(np.float64)
    na = np.linalg.norm(a2, axis=-1, keepdims=True)
    nb = np.linalg.norm(b2, axis=-1, keepdims=True)
    ua, ub = a2 / np.maximum(na, eps), b2 / np.maximum(nb, eps)
    omega = np.arccos(np.clip((ua * ub).sum(-1, keepdims=True), -1.0, 1.0))
    so = np.sin(omega)
    parallel = np.abs(so) < 1e-4
    with np.errstate(invalid="ignore", divide="ignore"):
        direction = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.where(parallel, 1.0, so)
    direction = np.where(parallel, ua + t * (ub - ua), direction)
    direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), eps)
    return (direction * (na + t * (nb - na))).reshape(shape).astype(a.dtype)


def interpolate(a: Sequence[float], b: Sequence[float], t: float, mode: str = "slerp") -> tuple[float, ...]:
    """Values between two flat latents at `t` in [0, 1], by `mode` (slerp or lerp)."""
    if mode not in MODES:
        raise ValueError(f"unknown interpolation {mode!r} (use {' or '.join(MODES)})")
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape:
        raise ValueError(f"cannot interpolate latents of {xa.size} and {xb.size} values")
    out = slerp_array(xa, xb, t) if mode == "slerp" else xa + float(t) * (xb - xa)
    return tuple(float(v) for v in out.astype(np.float32))

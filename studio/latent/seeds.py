"""Seed -> latent, identical on every run and every device: drawn on CPU by an own torch.Generator."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from studio.latent.interp import slerp_array
from studio.request import MAX_SEED  # 2⁶⁴−1: torch generators take every 64-bit seed


def sample_prior(seed: int, shape: Sequence[int], prior: str = "normal", batch: int | None = None) -> torch.Tensor:
    """Draw from the prior with a private CPU generator (never the global RNG), float32 on CPU.

    The same seed gives the same values on every run, thread and machine; move the result to the device after.
    """
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    if prior != "normal":
        raise ValueError(f"unknown prior {prior!r}")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    full = tuple(shape) if batch is None else (batch, *shape)
    return torch.randn(full, generator=gen, dtype=torch.float32, device="cpu")


def variation(z: torch.Tensor, seed: int, strength: float, prior: str = "normal") -> torch.Tensor:
    """A nearby latent: slerp from `z` toward the prior draw of `seed` by `strength` (0 = z, 1 = that draw)."""
    if strength == 0:
        return z
    other = sample_prior(seed, z.shape, prior).to(z.device, z.dtype)
    return slerp(z, other, strength)


def mix(a: torch.Tensor, b: torch.Tensor, strength: float = 0.5, dims: Sequence[int] | None = None) -> torch.Tensor:
    """Mix two latents: with `dims`, take those flat dimensions from `b` (crossover, scaled by strength);
    without, a straight blend a + strength·(b − a)."""
    if a.shape != b.shape:
        raise ValueError(f"cannot mix latents of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if dims is None:
        return torch.lerp(a, b, float(strength))
    out = a.clone().reshape(-1)
    idx = torch.as_tensor(list(dims), dtype=torch.long)
    flat_b = b.reshape(-1)
    out[idx] = torch.lerp(out[idx], flat_b[idx], float(strength))
    return out.reshape(a.shape)


# --- interpolation of tensors (the NumPy implementation in studio.latent.interp) ---------------------------------


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return torch.lerp(a, b, float(t))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """`slerp_array` for tensors (computed on the CPU, returned on a's device and dtype)."""
    out = slerp_array(a.detach().cpu().float().numpy(), b.detach().cpu().float().numpy(), t, eps)
    return torch.from_numpy(np.ascontiguousarray(out)).to(a.device, a.dtype)

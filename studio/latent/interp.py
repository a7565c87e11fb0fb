"""Interpolation between latents."""

from __future__ import annotations

import torch


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return torch.lerp(a, b, float(t))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation over the last dimension (flattened per sample for 1-D latents).

    The angle is taken between directions; the norm is interpolated linearly, so endpoints are exact and
    the path keeps the typical norm of Gaussian latents instead of cutting through the low-norm middle.
    Nearly parallel inputs fall back to lerp.
    """
    t = float(t)
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    shape = a.shape
    a2 = a.reshape(-1, shape[-1]).to(torch.float32)
    b2 = b.reshape(-1, shape[-1]).to(torch.float32)
    na = a2.norm(dim=-1, keepdim=True)
    nb = b2.norm(dim=-1, keepdim=True)
    ua = a2 / na.clamp_min(eps)
    ub = b2 / nb.clamp_min(eps)
    dot = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(dot)
    so = torch.sin(omega)
    parallel = so.abs() < 1e-4
    safe_so = torch.where(parallel, torch.ones_like(so), so)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe_so
    direction = torch.where(parallel, torch.lerp(ua, ub, t), direction)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(eps)
    norm = torch.lerp(na, nb, t)
    return (direction * norm).reshape(shape).to(a.dtype)

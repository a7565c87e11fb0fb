"""Latent edits every normal-prior latent takes, applied in one fixed order so that equal requests give equal latents.

Names (the request's params; `studio.families.base.latent_specs` declares them):
  mix_seed (int), mix_strength       blend toward another seed's latent
  variation_seed (int), variation_strength   slerp toward a nearby draw
  truncation                         scale toward the prior mean (1 = unchanged)
  d<k>                               move along principal direction k, in standard deviations
  z<k>                               add to raw latent dimension k
Other params (a prompt, a class, a family's own knobs) are not latent edits and are left alone here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from studio.latent.directions import Directions
from studio.latent.seeds import mix, sample_prior, variation

SCALAR_EDITS = ("mix_seed", "mix_strength", "variation_seed", "variation_strength", "truncation")
EDIT_PATTERNS = SCALAR_EDITS + ("d<k>", "z<k>")
_INDEXED = re.compile(r"^([dz])(\d+)$")


def indexed_edit(name: str) -> tuple[str, int] | None:
    """('d', 3) for 'd3', ('z', 0) for 'z0'; None for any other name."""
    m = _INDEXED.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def apply_edits(z: torch.Tensor, params: Mapping[str, Any], prior: str = "normal",
                directions: Directions | None = None) -> torch.Tensor:
    """Apply the latent edits among `params` to a CPU latent `z` (any shape); returns a new tensor."""
    out = z.clone()
    if "mix_seed" in params:
        other = sample_prior(int(params["mix_seed"]), z.shape, prior)
        out = mix(out, other, float(params.get("mix_strength", 0.5)))
    if "variation_seed" in params and params.get("variation_strength", 0.0):
        out = variation(out, int(params["variation_seed"]), float(params["variation_strength"]), prior)
    if "truncation" in params:
        psi = float(params["truncation"])
        center = directions.mean.reshape(out.shape) if directions is not None else torch.zeros_like(out)
        out = center + psi * (out - center)
    flat = out.reshape(-1)
    indexed = sorted((kind_index, name) for name in params if (kind_index := indexed_edit(name)) is not None)
    for (kind, index), name in indexed:
        if kind == "d":
            if directions is None:
                raise ValueError(f"edit {name!r} needs principal directions, and this model ships none")
            flat = flat + directions.offset(index, float(params[name]))
        else:
            if index >= flat.numel():
                raise ValueError(f"edit {name!r}: the latent has {flat.numel()} dimensions (z0..z{flat.numel() - 1})")
            flat = flat.clone()
            flat[index] += float(params[name])
    return flat.reshape(out.shape)

"""Named latent edits, applied in one fixed order so that equal requests give equal latents.

Names (values are floats):
  mix_seed, mix_strength            blend toward another seed's latent
  variation_seed, variation_strength slerp toward a nearby draw
  truncation                         scale toward the prior mean (1 = unchanged)
  d<k>                               move along principal direction k, in standard deviations
  z<k>                               add to raw latent dimension k
  mix_layer, layer_start, layer_end, noise   GAN layer edits (see studio.families.gan); other families ignore them
"""

from __future__ import annotations

import re
from typing import Iterable

import torch

from studio.latent.directions import Directions
from studio.latent.seeds import MAX_SEED, mix, sample_prior, variation

SCALAR_EDITS = ("mix_seed", "mix_strength", "variation_seed", "variation_strength", "truncation",
                # style-based GANs: the layer style mixing starts at, the layer range directions apply to, noise
                "mix_layer", "layer_start", "layer_end", "noise")
EDIT_PATTERNS = SCALAR_EDITS + ("d<k>", "z<k>")
# Edits that act while rendering, not on the latent: a latent computed from a request (saved, interpolated, encoded)
# already holds every other edit, so only these are kept when such a latent replaces the request's own.
RENDER_ONLY_EDITS = ("noise",)
_INDEXED = re.compile(r"^([dz])(\d+)$")


def parse_edit_name(name: str) -> tuple[str, int | None]:
    """('d', 3) for 'd3', ('truncation', None) for 'truncation'; ValueError for anything else."""
    if name in SCALAR_EDITS:
        return name, None
    m = _INDEXED.match(name)
    if not m:
        raise ValueError(f"unknown latent edit {name!r} (known: {', '.join(EDIT_PATTERNS)})")
    return m.group(1), int(m.group(2))


def edit_seed(value: float, name: str) -> int:
    """A seed carried as an edit value (a float) → the whole number; ValueError naming the edit otherwise."""
    if value != int(value) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be a whole number in 0..{MAX_SEED}, got {value}")
    return int(value)


def apply_edits(z: torch.Tensor, edits: Iterable[tuple[str, float]], prior: str = "normal",
                directions: Directions | None = None) -> torch.Tensor:
    """Apply `edits` to a CPU latent `z` (any shape); returns a new tensor."""
    table = dict(edits)
    out = z.clone()
    if "mix_seed" in table:
        other = sample_prior(edit_seed(table["mix_seed"], "mix_seed"), z.shape, prior)
        out = mix(out, other, table.get("mix_strength", 0.5))
    if "variation_seed" in table and table.get("variation_strength", 0.0):
        out = variation(out, edit_seed(table["variation_seed"], "variation_seed"), table["variation_strength"], prior)
    if "truncation" in table:
        psi = float(table["truncation"])
        center = directions.mean.reshape(out.shape) if directions is not None else torch.zeros_like(out)
        out = center + psi * (out - center)
    flat = out.reshape(-1)
    for name in sorted(table, key=_order_key):
        kind, index = parse_edit_name(name)
        if kind == "d":
            if directions is None:
                raise ValueError(f"edit {name!r} needs principal directions, and this model ships none")
            flat = flat + directions.offset(index, table[name])
        elif kind == "z":
            if index >= flat.numel():
                raise ValueError(f"edit {name!r}: the latent has {flat.numel()} dimensions (z0..z{flat.numel() - 1})")
            flat = flat.clone()
            flat[index] += float(table[name])
    return flat.reshape(out.shape)


def _order_key(name: str) -> tuple[int, str, int]:
    kind, index = parse_edit_name(name)
    return (0 if index is None else 1, kind, index or 0)

"""Which noise a seed gives a Stable Diffusion render: our own draw, or one of AUTOMATIC1111's noise sources (its
"RNG" setting), so that an A1111 picture's seed gives A1111's initial noise.

- "ours" (the default): `studio.latent.seeds.sample_prior` — a CPU torch generator seeded with the seed, shape
  (C, H/8, W/8); for a plain seed the same numbers as A1111's "CPU" (a variation seed slerps our way).
- "cpu", "gpu", "nv": `studio.latent.a1111_rng.A1111Noise` — A1111's draw and its variation-seed slerp. "gpu" is
  A1111's default (a picture's infotext without "RNG" means it): CUDA's generator where the model runs on CUDA, its
  Philox stream computed on the CPU elsewhere (the same numbers, as A1111's "NV").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from studio.latent.a1111_rng import A1111Noise
from studio.params import SAMPLER, Kind, ParamSpec

if TYPE_CHECKING:
    from studio.families.base import LoadedModel

RNG = "rng"
RNG_CHOICES = (("ours", "Latent Studio"), ("cpu", "A1111 CPU"), ("gpu", "A1111 GPU"), ("nv", "A1111 NV"))
A1111_VARIATION = ("variation_seed", "variation_strength")  # drawn by A1111's rules with its noise


def rng_spec() -> ParamSpec:
    return ParamSpec(RNG, Kind.CHOICE, "Noise", default="ours", choices=RNG_CHOICES, group=SAMPLER,
                     help="Where the seed's noise comes from: Latent Studio's own, or AUTOMATIC1111's (CPU; GPU, "
                          "its default, reproduced on any device; NV) so that an A1111 picture's seed gives its noise")


def a1111_noise(model: "LoadedModel", request, shape: Sequence[int]) -> A1111Noise | None:
    """The request's A1111 noise source at `shape`, or None for our own draw (or a model without `rng`)."""
    if model.table.find(RNG) is None:
        return None
    source = model.table.value(request, RNG)
    return None if source in (None, "ours") else A1111Noise(str(source), request.seed, shape, device=model.device)


def a1111_first_noise(model: "LoadedModel", request, shape: Sequence[int]) -> torch.Tensor | None:
    """A1111's initial noise for the request (with its variation seed as A1111 slerps it), or None for ours."""
    noise = a1111_noise(model, request, shape)
    if noise is None:
        return None
    params = request.params
    strength = float(model.table.value(request, "variation_strength") or 0.0) if "variation_seed" in params else 0.0
    return noise.first(params.get("variation_seed"), strength)

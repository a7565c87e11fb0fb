"""Which noise a seed gives a Stable Diffusion render: our own draw, or one of AUTOMATIC1111's noise sources (its
"RNG" setting), so that an A1111 picture's seed gives A1111's initial noise.

- "ours" (the default): `studio.latent.seeds.sample_prior` — a CPU torch generator seeded with the seed, shape
  (C, H/8, W/8); for a plain seed the same numbers as A1111's "CPU" (a variation seed slerps our way).
- "cpu", "gpu", "nv": `studio.latent.a1111_rng.A1111Noise` — A1111's draw and its variation-seed slerp. "gpu" is
  A1111's default (a picture's infotext without "RNG" means it): CUDA's generator where the model runs on CUDA, its
  Philox stream computed on the CPU elsewhere (the same numbers, as A1111's "NV").

The stochastic samplers' fresh noise per step (Euler a, DDIM with η > 0, DDPM) follows the source too
(`step_noise`): with our own draw, diffusers' way (schedulers.step_generator); with an A1111 source, A1111's way —
each step's noise is the next draw of the generator that drew the initial noise, re-seeded with seed + `ensd`
right after that first draw when `ensd` (A1111's "Eta noise seed delta", infotext "ENSD") is not 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch

from studio.errors import RequestError
from studio.families.stable_diffusion.schedulers import step_generator
from studio.latent.a1111_rng import A1111Noise, SOURCES
from studio.params import SAMPLER, Kind, ParamSpec

if TYPE_CHECKING:
    from studio.families.base import LoadedModel

RNG = "rng"
RNG_CHOICES = (("ours", "Latent Studio"), ("cpu", "A1111 CPU"), ("gpu", "A1111 GPU"), ("nv", "A1111 NV"))
A1111_VARIATION = ("variation_seed", "variation_strength")  # drawn by A1111's rules with its noise
ENSD = "ensd"
MAX_ENSD = 2**31 - 1  # what a spin box holds; A1111's common values are 0 and 31337


def rng_spec() -> ParamSpec:
    return ParamSpec(RNG, Kind.CHOICE, "Noise", default="ours", choices=RNG_CHOICES, group=SAMPLER,
                     help="Where the seed's noise comes from: Latent Studio's own, or AUTOMATIC1111's (CPU; GPU, "
                          "its default, reproduced on any device; NV) so that an A1111 picture's seed gives its noise")


def ensd_spec() -> ParamSpec:
    """A1111's "Eta noise seed delta" (its infotext's "ENSD"), for its noise sources only."""
    return ParamSpec(ENSD, Kind.INT, "ENSD", default=0, range=(0, MAX_ENSD), step=1, group=SAMPLER,
                     render_only=True, when=(RNG, SOURCES),
                     help="AUTOMATIC1111's eta noise seed delta: the noise Euler a and DDIM with η add at each step "
                          "comes from seed + this number (many A1111 set-ups use 31337); 0 leaves it the seed's")


def a1111_noise(model: "LoadedModel", request, shape: Sequence[int]) -> A1111Noise | None:
    """The request's A1111 noise source at `shape` (with its ENSD), or None for our own draw (or a model without
    `rng`)."""
    if model.table.find(RNG) is None:
        return None
    source = model.table.value(request, RNG)
    if source in (None, "ours"):
        return None
    ensd = int(model.table.value(request, ENSD) or 0) if model.table.find(ENSD) is not None else 0
    try:
        return A1111Noise(str(source), request.seed, shape, device=model.device, ensd=ensd)
    except ValueError as exc:
        raise RequestError(str(exc), field=f"params.{ENSD}") from None


def step_noise(model: "LoadedModel", request, shape: Sequence[int]) -> Callable[[], torch.Tensor]:
    """What gives the stochastic samplers' fresh noise, one call per step, float32 on the CPU at `shape` (batch
    first): diffusers' way for our own draw (`step_generator`), or A1111's ImageRNG `next()` — the initial draw made
    (and the ENSD re-seed done) first, as A1111 does."""
    shape = tuple(int(s) for s in shape)
    source = a1111_noise(model, request, shape[1:])
    if source is None:
        gen = step_generator(request.seed, shape)
        return lambda: torch.randn(shape, generator=gen)
    started = False

    def draw() -> torch.Tensor:
        nonlocal started
        if not started:  # the generator as the initial noise left it (re-seeded with seed + ENSD when set)
            source.first()
            started = True
        return source.next().reshape(shape)

    return draw


def a1111_first_noise(model: "LoadedModel", request, shape: Sequence[int]) -> torch.Tensor | None:
    """A1111's initial noise for the request (with its variation seed as A1111 slerps it), or None for ours."""
    noise = a1111_noise(model, request, shape)
    if noise is None:
        return None
    params = request.params
    strength = float(model.table.value(request, "variation_strength") or 0.0) if "variation_seed" in params else 0.0
    return noise.first(params.get("variation_seed"), strength)

"""A Stable Diffusion model's scheduler config, read the way diffusers reads it for each of the app's samplers, so
that the same seed gives the same picture as diffusers' pipeline with that scheduler.

diffusers users switch samplers with `EulerDiscreteScheduler.from_config(pipe.scheduler.config)`: the new scheduler
takes the keys the model's `scheduler_config.json` actually holds and its own class defaults for the rest. SD 1.x's
config (a PNDM one) says steps_offset 1 and set_alpha_to_one false but no timestep_spacing, so DDIM walks "leading"
timesteps (…, 41, 1) and Euler and DPM-Solver "linspace" ones; SDXL's says "leading" for all. `sampler_setup` does
the same per sampler:

    sampler  diffusers class                   keys followed
    ddim     DDIMScheduler                     timestep_spacing, steps_offset, set_alpha_to_one
    ddpm     DDPMScheduler                     timestep_spacing, steps_offset
    euler    EulerDiscreteScheduler            timestep_spacing, steps_offset, use_karras_sigmas
    euler_a  EulerAncestralDiscreteScheduler   timestep_spacing, steps_offset
    dpmpp    DPMSolverMultistepScheduler       timestep_spacing, steps_offset, use_karras_sigmas
             (dpmsolver++, order 2, midpoint, final σ 0: diffusers' defaults)

The `schedule` parameter (A1111's "Schedule type") chooses the σs: "auto" is the model's config, "karras" Karras et
al.'s σs (A1111's "DPM++ 2M Karras"), "uniform" the config's spacing without Karras σs. Settings that change the walk
and that the app does not do (thresholding, other DPM-Solver variants, zero-SNR rescaling, …) are named in the
output's note instead of silently giving another picture than diffusers.

Stochastic samplers (Euler a, DDIM with η, DDPM) draw their step noise as diffusers' pipelines do: from one CPU
generator seeded with the seed, after the initial noise was drawn from it (`step_generator`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studio.errors import ManifestError, RequestError
from studio.limits import quote
from studio.nets.samplers import SIGMA_SAMPLERS, SPACINGS, Sampler, Schedule, make_sampler
from studio.params import SAMPLER, Kind, ParamSpec

SD_SAMPLERS = ("ddpm", "ddim", "euler", "euler_a", "dpmpp")  # the app's order, Euler a next to Euler
SCHEDULE_TYPES = (("auto", "Model's own"), ("karras", "Karras"), ("uniform", "Uniform"))

# The diffusers class defaults of the keys the app follows, per sampler.
FOLLOWED: dict[str, dict[str, Any]] = {
    "ddim": {"timestep_spacing": "leading", "steps_offset": 0, "set_alpha_to_one": True},
    "ddpm": {"timestep_spacing": "leading", "steps_offset": 0},
    "euler": {"timestep_spacing": "linspace", "steps_offset": 0, "use_karras_sigmas": False},
    "euler_a": {"timestep_spacing": "linspace", "steps_offset": 0},
    "dpmpp": {"timestep_spacing": "linspace", "steps_offset": 0, "use_karras_sigmas": False},
}
# Keys each diffusers class takes that the app does not follow: (diffusers' default, the value the app's walk
# equals). A config whose value (or, where absent, diffusers' default) differs from the second gets a note.
_ZERO_SNR = {"rescale_betas_zero_snr": (False, False)}
NOT_FOLLOWED: dict[str, dict[str, tuple[Any, Any]]] = {
    "ddim": {"clip_sample": (True, False), "thresholding": (False, False), **_ZERO_SNR},
    "ddpm": {"clip_sample": (True, False), "thresholding": (False, False), "variance_type": ("fixed_small",
                                                                                               "fixed_small"),
             **_ZERO_SNR},
    "euler": {"interpolation_type": ("linear", "linear"), "use_exponential_sigmas": (False, False),
              "use_beta_sigmas": (False, False), "sigma_min": (None, None), "sigma_max": (None, None),
              "timestep_type": ("discrete", "discrete"), "final_sigmas_type": ("zero", "zero"), **_ZERO_SNR},
    "euler_a": {**_ZERO_SNR},
    "dpmpp": {"algorithm_type": ("dpmsolver++", "dpmsolver++"), "solver_order": (2, 2),
              "solver_type": ("midpoint", "midpoint"), "thresholding": (False, False),
              "euler_at_final": (False, False), "use_exponential_sigmas": (False, False),
              "use_beta_sigmas": (False, False), "use_lu_lambdas": (False, False), "use_flow_sigmas": (False, False),
              "final_sigmas_type": ("zero", "zero"), "variance_type": (None, None),
              "lambda_min_clipped": (-math.inf, -math.inf), "sigma_min": (None, None), "sigma_max": (None, None),
              **_ZERO_SNR},
}


@dataclass(frozen=True)
class SamplerConfig:
    """The keys of a model's scheduler_config.json that decide the walk (absent keys stay absent: each sampler then
    takes its diffusers class's default)."""

    values: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, sampler: str) -> Any:
        return self.values.get(name, FOLLOWED[sampler].get(name))


_KEYS = {key for table in (*FOLLOWED.values(), *NOT_FOLLOWED.values()) for key in table}


def read_sampler_config(config: dict, where: Path) -> SamplerConfig:
    """The walk's keys of a scheduler config, checked; ManifestError naming the file and the key."""
    values = {k: v for k, v in config.items() if k in _KEYS}
    spacing = values.get("timestep_spacing", "leading")
    if spacing not in SPACINGS:
        raise ManifestError(f"unknown timestep_spacing {quote(spacing)} (known: {', '.join(SPACINGS)})", where,
                            "timestep_spacing")
    offset = values.get("steps_offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 100:
        raise ManifestError(f"must be a whole number from 0 to 100, got {quote(offset)}", where, "steps_offset")
    for key in ("set_alpha_to_one", "use_karras_sigmas"):
        if key in values and not isinstance(values[key], bool):
            raise ManifestError(f"must be true or false, got {quote(values[key])}", where, key)
    return SamplerConfig(values)


@dataclass(frozen=True)
class SamplerSetup:
    """How one sampler walks for a model: its make_sampler arguments, and the config's settings it does not
    follow."""

    spacing: str
    steps_offset: int
    final_alpha_one: bool
    karras: bool
    not_followed: tuple[str, ...]


def sampler_setup(config: SamplerConfig, name: str, schedule: str = "auto") -> SamplerSetup:
    """What diffusers' scheduler for `name`, made from the model's config, would do; `schedule` "karras" or
    "uniform" overrides use_karras_sigmas (σ samplers only)."""
    if name not in FOLLOWED:
        raise RequestError(f"unknown sampler {name!r} (known: {', '.join(SD_SAMPLERS)})", field="sampler")
    karras = bool(config.get("use_karras_sigmas", name)) if "use_karras_sigmas" in FOLLOWED[name] else False
    if name in SIGMA_SAMPLERS and schedule != "auto":
        karras = schedule == "karras"
    off = []
    for key, (default, ours) in NOT_FOLLOWED[name].items():
        value = config.values.get(key, default)
        if value != ours:
            off.append(f"{key}={value}")
    return SamplerSetup(str(config.get("timestep_spacing", name)), int(config.get("steps_offset", name)),
                        bool(config.get("set_alpha_to_one", name)) if name == "ddim" else True, karras, tuple(off))


def sd_sampler(schedule: Schedule, config: SamplerConfig, name: str, steps: int, eta: float,
               schedule_type: str = "auto") -> tuple[Sampler, str]:
    """The sampler for one render, and a note naming the config's settings it does not follow ("" when none)."""
    setup = sampler_setup(config, name, schedule_type)
    sampler = make_sampler(name, schedule, steps, eta=eta, spacing=setup.spacing, steps_offset=setup.steps_offset,
                           final_alpha_one=setup.final_alpha_one, karras=setup.karras)
    note = (f"the model's scheduler asks for {', '.join(setup.not_followed)}, which the app's {name} sampler does "
            "not do: the picture may differ from diffusers'") if setup.not_followed else ""
    return sampler, note


def step_generator(seed: int, noise_shape: tuple[int, ...]) -> torch.Generator:
    """The generator stochastic samplers draw their step noise from, as diffusers' pipelines use theirs: seeded
    with the seed, the initial noise (float32, `noise_shape`) already drawn from it."""
    gen = torch.Generator().manual_seed(int(seed))
    torch.randn(noise_shape, generator=gen, dtype=torch.float32)
    return gen


def schedule_spec() -> ParamSpec:
    """A1111's "Schedule type" for the σ samplers."""
    return ParamSpec("schedule", Kind.CHOICE, "Schedule", default="auto", choices=SCHEDULE_TYPES, group=SAMPLER,
                     render_only=True, when=("sampler", SIGMA_SAMPLERS),
                     help="The noise levels the σ samplers step through: the model's own scheduler settings (what "
                          "diffusers does), Karras et al.'s (A1111's \"Karras\"), or evenly spaced timesteps")

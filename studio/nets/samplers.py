"""Noise schedules and samplers for denoising diffusion, kept apart from any network (as diffusers does).

A `Schedule` is the forward process: the cumulative ᾱ_t of T training steps (cosine or linear β). A sampler walks a
subset of those timesteps backwards. Every sampler has the same three calls:

    sampler = make_sampler("ddim", schedule, steps=25, eta=0.0)
    x = sampler.initial(noise)                 # or sampler.add_noise(x0, noise, start) for image-to-image
    for i, t in enumerate(sampler.timesteps[start:], start):
        eps = network(sampler.scale_input(x, i), t)   # the network predicts the noise ε
        x, x0 = sampler.step(eps, i, x, generator)    # x at the next timestep, and the current estimate of x₀

The formulas follow the papers (DDPM: Ho et al. 2020; DDIM: Song et al. 2021; Euler: Karras et al. 2022;
DPM-Solver++(2M): Lu et al. 2022) and use the same conventions as diffusers' schedulers (timestep spacing, final ᾱ = 1,
σ = 0 at the end), so their results can be checked against diffusers on the same inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from studio.errors import RequestError
from studio.limits import MAX_STEPS, MAX_TRAIN_TIMESTEPS  # sampler steps of one render; schedule length

SCHEDULES = ("cosine", "linear", "scaled_linear")
SPACINGS = ("leading", "trailing", "linspace")
SAMPLERS = ("ddpm", "ddim", "euler", "dpmpp")  # the app's own diffusion family offers these
SIGMA_SAMPLERS = ("euler", "euler_a", "dpmpp")  # the samplers that walk in σ: Karras σs apply to them
SAMPLER_NAMES = {"ddpm": "DDPM", "ddim": "DDIM", "euler": "Euler", "euler_a": "Euler ancestral",
                 "dpmpp": "DPM-Solver++ (2M)"}


@dataclass(frozen=True)
class Schedule:
    """ᾱ_t for t = 0 … T−1 (float64 on the CPU)."""

    alphas_cumprod: torch.Tensor

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    @classmethod
    def make(cls, kind: str = "cosine", num_train_timesteps: int = 1000, beta_start: float = 1e-4,
             beta_end: float = 0.02) -> "Schedule":
        n = num_train_timesteps
        if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_TRAIN_TIMESTEPS:
            raise ValueError(f"a noise schedule has 2..{MAX_TRAIN_TIMESTEPS:,} steps, got {str(n)[:40]}")
        if kind == "cosine":  # Nichol & Dhariwal 2021; β capped at 0.999
            def alpha_bar(t: float) -> float:
                return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)],
                                 dtype=torch.float32)
        elif kind == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
        elif kind == "scaled_linear":  # Stable Diffusion's: linear in √β
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
        else:
            raise ValueError(f"unknown noise schedule {kind!r} (known: {', '.join(SCHEDULES)})")
        # float32 cumulative product, as the training code and diffusers compute it
        return cls(torch.cumprod(1.0 - betas, 0).double())

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε for integer timesteps t (B,)."""
        a = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


def spaced_timesteps(num_train: int, steps: int, spacing: str, whole: bool = True, offset: int = 0) -> np.ndarray:
    """The sampler's timesteps, descending (float64). Whole numbers unless `whole` is False, which only changes the
    linspace spacing (Euler's, which diffusers leaves fractional; DDPM and DDIM round it). `offset` (a scheduler
    config's steps_offset) is added to the leading spacing only, as diffusers does."""
    if spacing == "leading":
        ratio = num_train // steps
        return (np.arange(0, steps) * ratio).round()[::-1].astype(np.float64) + offset
    if spacing == "trailing":
        # arange's float stride leaves a 62nd point ≈ 0 (→ timestep −1) for 61 steps, and so for 61 other counts
        # up to 1000: keep exactly `steps` points (diffusers keeps the extra one)
        return (np.round(np.arange(num_train, 0, -num_train / steps)[:steps]) - 1).astype(np.float64)
    if spacing == "linspace":
        t = np.linspace(0, num_train - 1, steps)
        return (t.round() if whole else t)[::-1].copy()
    raise ValueError(f"unknown timestep spacing {spacing!r} (known: {', '.join(SPACINGS)})")


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Noise drawn on the CPU (the same numbers on every device), then moved to x's device."""
    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)


class Sampler:
    name = ""

    @property
    def stochastic(self) -> bool:
        """Whether `step` adds fresh noise (DDPM; DDIM with η > 0)."""
        return False

    def __init__(self, schedule: Schedule, steps: int, spacing: str = "trailing", eta: float = 0.0,
                 clip_sample: bool = False, steps_offset: int = 0, final_alpha_one: bool = True,
                 karras: bool = False):
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise RequestError(f"steps must be a whole number in 1..{min(MAX_STEPS, schedule.num_train_timesteps)}, "
                               f"got {steps!r}", field="steps")
        if steps > schedule.num_train_timesteps:
            raise RequestError(f"steps must be at most the {schedule.num_train_timesteps} training timesteps, got "
                               f"{steps}", field="steps")
        if not 0.0 <= eta <= 1.0:
            raise RequestError(f"eta must be between 0 and 1, got {eta:g}", field="eta")
        if isinstance(steps_offset, bool) or not isinstance(steps_offset, int) or steps_offset < 0:
            raise RequestError(f"steps_offset must be a whole number from 0, got {steps_offset!r}", field="sampler")
        if karras and self.name not in SIGMA_SAMPLERS:
            raise RequestError(f"Karras σs apply to the σ samplers ({', '.join(SIGMA_SAMPLERS)}), not {self.name}",
                               field="sampler")
        self.schedule, self.steps, self.spacing, self.eta, self.clip_sample = schedule, steps, spacing, eta, clip_sample
        # diffusers' steps_offset (leading spacing only), set_alpha_to_one (DDIM's ᾱ after the last step: 1, or ᾱ_0),
        # use_karras_sigmas (σ samplers)
        self.steps_offset, self.final_alpha_one, self.karras = steps_offset, final_alpha_one, karras
        self.ac = schedule.alphas_cumprod
        self.timesteps = self._timesteps()
        if self.timesteps[0] > schedule.num_train_timesteps - 1:
            raise RequestError(f"{steps} steps with the model's steps offset {steps_offset} go past its "
                               f"{schedule.num_train_timesteps} training timesteps; use fewer steps", field="steps")
        if not karras and np.any(np.diff(self.timesteps) >= 0):
            raise RequestError(f"{steps} steps are too many for the {spacing} spacing of {self.name}: timesteps "
                               "would repeat; use fewer steps", field="steps")

    def _timesteps(self) -> np.ndarray:
        return spaced_timesteps(self.schedule.num_train_timesteps, self.steps, self.spacing,
                                offset=self.steps_offset)

    def model_timestep(self, i: int) -> float:
        return float(self.timesteps[i])

    def start_index(self, strength: float) -> int:
        """Image-to-image: the first step index for a strength in (0, 1] (1 = from pure noise), as diffusers'
        img2img pipelines count it."""
        if not 0.0 < strength <= 1.0:
            raise RequestError(f"strength must be above 0 and at most 1, got {strength:g}", field="strength")
        keep = min(int(self.steps * strength), self.steps)
        if keep < 1:
            raise RequestError(f"strength {strength:g} with {self.steps} steps leaves no step to run; raise the "
                               "strength or the steps", field="strength")
        return self.steps - keep

    def initial(self, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def alpha_bar(self, i: int) -> float:
        """ᾱ of the network's input at step index i (`scale_input(x, i)` = √ᾱ·x₀ + √(1−ᾱ)·ε): what turns a
        v-prediction into ε."""
        return float(self.ac[int(self.timesteps[i])])

    def scale_input(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return x

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, i: int) -> torch.Tensor:
        a = float(self.ac[int(self.timesteps[i])])
        return math.sqrt(a) * x0 + math.sqrt(1 - a) * noise

    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from timestep index i: (x at the next timestep, the current estimate of x₀). Stochastic samplers
        add fresh noise drawn from `generator`, or `noise` (shaped like x) when given."""
        raise NotImplementedError

    def _prev_alpha(self, i: int) -> float:
        if i + 1 < len(self.timesteps):
            return float(self.ac[int(self.timesteps[i + 1])])
        return 1.0 if self.final_alpha_one else float(self.ac[0])


class DDIM(Sampler):
    """DDIM with η: 0 is deterministic, 1 matches DDPM's posterior variance."""

    name = "ddim"

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Coefficients per step, precomputed once: the loop is then a few fused tensor ops per step.
        self._coef = []
        for i in range(len(self.timesteps)):
            a_t, a_prev = float(self.ac[int(self.timesteps[i])]), self._prev_alpha(i)
            var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
            std = self.eta * math.sqrt(max(var, 0.0))
            self._coef.append((math.sqrt(a_t), math.sqrt(1 - a_t), math.sqrt(a_prev),
                               math.sqrt(max(1 - a_prev - std**2, 0.0)), std))

    def step(self, eps, i, x, generator=None, noise=None):
        sa, s1a, sa_prev, dir_coef, std = self._coef[i]
        x0 = (x - s1a * eps) / sa
        if self.clip_sample:
            x0 = x0.clamp(-1, 1)
            eps = (x - sa * x0) / s1a
        prev = sa_prev * x0 + dir_coef * eps
        if std > 0:
            prev = prev + std * (noise if noise is not None else _noise_like(x, generator))
        return prev, x0


class DDPM(Sampler):
    """Ancestral sampling with the posterior's variance ("fixed small"), on a subset of timesteps."""

    name = "ddpm"
    stochastic = True

    def step(self, eps, i, x, generator=None, noise=None):
        a_t = float(self.ac[int(self.timesteps[i])])
        a_prev = float(self.ac[int(self.timesteps[i + 1])]) if i + 1 < len(self.timesteps) else 1.0  # as diffusers'
        alpha, beta = a_t / a_prev, 1 - a_t / a_prev
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        if self.clip_sample:
            x0 = x0.clamp(-1, 1)
        mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)) * x
        if i + 1 < len(self.timesteps):
            var = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)
            mean = mean + math.sqrt(var) * (noise if noise is not None else _noise_like(x, generator))
        return mean, x0


class _SigmaSampler(Sampler):
    """Samplers that work with σ_t = √((1−ᾱ_t)/ᾱ_t), interpolated at (possibly fractional) timesteps; σ = 0 last."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.karras:
            self.sigmas = self._karras_sigmas
            if np.any(np.diff(self.sigmas[:-1]) >= 0):
                raise RequestError(f"{self.steps} steps are too many for Karras σs on this schedule: σ would "
                                   "repeat; use fewer steps", field="steps")
            return
        all_sigmas = ((1 - self.ac) / self.ac).sqrt().numpy()
        sig = np.interp(self.timesteps, np.arange(len(all_sigmas)), all_sigmas)
        self.sigmas = np.concatenate([sig, [0.0]])

    def _timesteps(self) -> np.ndarray:
        if not self.karras:
            return self._spaced()
        # Karras et al. 2022 (ρ = 7) between the σs at the ends of `_karras_range`, each timestep the fractional one
        # of its σ (log-σ interpolated), as diffusers' use_karras_sigmas lays them out
        all_sigmas = ((1 - self.ac) / self.ac).sqrt().numpy()
        lo, hi = self._karras_range(all_sigmas)
        rho = 7.0
        ramp = np.linspace(0, 1, self.steps)
        sig = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        self._karras_sigmas = np.concatenate([sig, [0.0]])
        return sigma_to_timestep(sig, np.log(all_sigmas))

    def _spaced(self) -> np.ndarray:
        return super()._timesteps()

    def _karras_range(self, all_sigmas: np.ndarray) -> tuple[float, float]:
        """(σ_min, σ_max) of the Karras σs: diffusers' Euler takes the σs at its spaced timesteps' ends."""
        spaced = np.interp(self._spaced(), np.arange(len(all_sigmas)), all_sigmas)
        return float(spaced[-1]), float(spaced[0])

    def alpha_bar(self, i: int) -> float:
        return 1.0 / (1.0 + float(self.sigmas[i]) ** 2)


class Euler(_SigmaSampler):
    """Euler's method on the probability-flow ODE in σ (Karras et al.'s Algorithm 1 without churn)."""

    name = "euler"

    def _spaced(self) -> np.ndarray:  # linspace stays fractional; σ is interpolated between timesteps
        return spaced_timesteps(self.schedule.num_train_timesteps, self.steps, self.spacing, whole=False,
                                offset=self.steps_offset)

    def initial(self, noise):
        s = float(self.sigmas[0])
        return noise * (s if self.spacing in ("linspace", "trailing") else math.sqrt(s * s + 1))

    def scale_input(self, x, i):
        s = float(self.sigmas[i])
        return x / math.sqrt(s * s + 1)

    def add_noise(self, x0, noise, i):
        return x0 + float(self.sigmas[i]) * noise

    def step(self, eps, i, x, generator=None, noise=None):
        s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        x0 = x - s * eps
        if self.clip_sample:  # keep the data estimate in range and step along the direction it implies
            x0 = x0.clamp(-1, 1)
            eps = (x - x0) / s
        return x + eps * (s_next - s), x0


class EulerAncestral(Euler):
    """Euler ancestral (k-diffusion's sample_euler_ancestral, diffusers' EulerAncestralDiscreteScheduler, A1111's
    "Euler a"): an Euler step down to σ_down, then fresh noise of σ_up, so that σ_down² + σ_up² = σ_next²."""

    name = "euler_a"
    stochastic = True

    def step(self, eps, i, x, generator=None, noise=None):
        s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        x0 = x - s * eps
        if self.clip_sample:
            x0 = x0.clamp(-1, 1)
            eps = (x - x0) / s
        s_up = math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)
        s_down = math.sqrt(s_next**2 - s_up**2)
        out = x + eps * (s_down - s)
        if s_up > 0:
            out = out + s_up * (noise if noise is not None else _noise_like(x, generator))
        return out, x0


class DPMSolverPP(_SigmaSampler):
    """DPM-Solver++ (2M), multistep, data prediction; first order on the first and the last step."""

    name = "dpmpp"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._x0_prev: torch.Tensor | None = None
        self._last_index = -1

    def _spaced(self) -> np.ndarray:
        # diffusers' DPM-Solver spacings: linspace and leading lay out N+1 points and drop the last (0)
        n = self.schedule.num_train_timesteps
        if self.spacing == "linspace":
            return np.linspace(0, n - 1, self.steps + 1).round()[::-1][:-1].copy()
        if self.spacing == "leading":
            return ((np.arange(0, self.steps + 1) * (n // (self.steps + 1))).round()[::-1][:-1].astype(np.float64)
                    + self.steps_offset)
        return super()._spaced()

    def _karras_range(self, all_sigmas):
        """diffusers' DPM-Solver spans the whole table with its Karras σs, and rounds their timesteps."""
        return float(all_sigmas[0]), float(all_sigmas[-1])

    def _timesteps(self) -> np.ndarray:
        t = super()._timesteps()
        return t.round() if self.karras else t

    @staticmethod
    def _alpha_sigma(s: float) -> tuple[float, float]:
        alpha = 1.0 / math.sqrt(s * s + 1)
        return alpha, s * alpha

    def add_noise(self, x0, noise, i):
        alpha, sigma = self._alpha_sigma(float(self.sigmas[i]))
        return alpha * x0 + sigma * noise

    def step(self, eps, i, x, generator=None, noise=None):
        if i != self._last_index + 1:  # a fresh walk (or image-to-image starting part-way): no history
            self._x0_prev = None
        self._last_index = i
        s_t, s_s0 = float(self.sigmas[i + 1]), float(self.sigmas[i])
        alpha_s0, sigma_s0 = self._alpha_sigma(s_s0)
        x0 = (x - sigma_s0 * eps) / alpha_s0
        if self.clip_sample:
            x0 = x0.clamp(-1, 1)
        alpha_t, sigma_t = self._alpha_sigma(s_t)
        if s_t == 0.0:  # the final step goes straight to the data estimate (first order with σ_t = 0)
            out = x0
        else:
            lam_t, lam_s0 = math.log(alpha_t) - math.log(sigma_t), math.log(alpha_s0) - math.log(sigma_s0)
            h = lam_t - lam_s0
            out = (sigma_t / sigma_s0) * x - alpha_t * math.expm1(-h) * x0
            if self._x0_prev is not None:
                s_s1 = float(self.sigmas[i - 1])
                alpha_s1, sigma_s1 = self._alpha_sigma(s_s1)
                lam_s1 = math.log(alpha_s1) - math.log(sigma_s1)
                r0 = (lam_s0 - lam_s1) / h
                d1 = (x0 - self._x0_prev) / r0
                out = out - 0.5 * alpha_t * math.expm1(-h) * d1
        self._x0_prev = x0
        return out, x0


def sigma_to_timestep(sigmas: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """The fractional timesteps of σs, interpolating linearly in log σ between the table's neighbours (diffusers'
    `_sigma_to_t`; k-diffusion's `sigma_to_t`)."""
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    dists = log_sigma - log_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=len(log_sigmas) - 2)
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), 0, 1)
    return ((1 - w) * low + w * (low + 1)).astype(np.float64)


_CLASSES = {"ddpm": DDPM, "ddim": DDIM, "euler": Euler, "euler_a": EulerAncestral, "dpmpp": DPMSolverPP}
DEFAULT_SPACING = "trailing"  # every sampler: it starts at the last training step, where the noise is pure


def make_sampler(name: str, schedule: Schedule, steps: int, eta: float = 0.0, spacing: str | None = None,
                 clip_sample: bool = False, steps_offset: int = 0, final_alpha_one: bool = True,
                 karras: bool = False) -> Sampler:
    """A sampler by name. The defaults are the app's own walk (trailing spacing, no offset, ᾱ = 1 after the last
    step); `spacing`, `steps_offset`, `final_alpha_one` and `karras` follow a diffusers scheduler config's
    timestep_spacing, steps_offset, set_alpha_to_one and use_karras_sigmas."""
    try:
        cls = _CLASSES[name]
    except KeyError:
        raise RequestError(f"unknown sampler {name!r} (known: {', '.join(_CLASSES)})", field="sampler") from None
    if spacing is not None and spacing not in SPACINGS:
        raise RequestError(f"unknown timestep spacing {spacing!r} (known: {', '.join(SPACINGS)})", field="sampler")
    return cls(schedule, steps, spacing=spacing or DEFAULT_SPACING, eta=eta, clip_sample=clip_sample,
               steps_offset=steps_offset, final_alpha_one=final_alpha_one, karras=karras)

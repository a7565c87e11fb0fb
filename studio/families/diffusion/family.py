"""The diffusion family: a small UNet that predicts the noise ε in x_t, conditioned on the timestep and on a class
(character), trained with classifier-free guidance (the class is dropped to a "null" class part of the time).

The network, the noise schedule and the samplers are separate (samplers live in `studio.nets.samplers`). What the
artist edits is the initial noise x_T, which is the latent: a seed draws it, variation seeds slerp it toward another
draw, saved noises interpolate (slerp keeps them noise-like). Sampler, steps, guidance and η are the request's sampler
settings; image-to-image starts from a given image noised to the step that `strength` picks. Every step yields a
preview of the current estimate of the finished image and is a cancel point.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch

from studio.errors import ManifestError, RequestError
from studio.families.base import (Family, LoadedModel, arch_value, arch_widths, check_parameter_count,
                                  condition_specs, latent_specs)
from studio.families.cells import check_cell_manifest, compose_sheet, label_rows, sheet_size, split_sheet, to_ink
from studio.families.sampling import SamplerDefaults, init_specs, sampler_settings, sampler_specs, start_strength
from studio.io.images import decode_init_image
from studio.nets.samplers import SCHEDULES, Schedule, make_sampler
from studio.nets.unet import UNet
from studio.params import Capability, ParamSpec
from studio.steps import Output, Preview, Progress, RenderSteps

# Ancestral DDIM (η = 1) by default: with a small, briefly trained ε-network the deterministic samplers (DDIM η = 0,
# Euler, DPM-Solver++) can leave grain in the paper around some glyphs, which fresh noise at every step cleans up; the
# per-sampler figures of the shipped model are in its model.toml. Lower η toward 0 for a deterministic walk.
DEFAULT_SAMPLER = "ddim"
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 2.0
DEFAULT_ETA = 1.0
DEFAULTS: SamplerDefaults = {"sampler": DEFAULT_SAMPLER, "steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE,
                             "eta": DEFAULT_ETA}
GUIDANCE_RANGE = (0.0, 20.0)


# --- the family ---------------------------------------------------------------------------------------------------


def _schedule_of(manifest) -> Schedule:
    kind = arch_value(manifest, "schedule", str, "cosine")
    if kind not in SCHEDULES:
        raise ManifestError(f"unknown schedule {kind!r} (known: {', '.join(SCHEDULES)})", manifest.path,
                            "architecture.schedule")
    return Schedule.make(kind, arch_value(manifest, "train_timesteps", int, 1000, minimum=2))


class DiffusionNet(UNet):
    """The family's network: the UNet and the noise schedule the samplers walk it with (set by `build` from the
    manifest, or by the trainer)."""

    schedule: Schedule


class DiffusionFamily(Family):
    name = "diffusion"
    output_kinds = ("image",)
    capabilities = Capability.SAMPLE | Capability.ITERATE | Capability.IMG2IMG

    def parameters(self, manifest) -> tuple[ParamSpec, ...]:
        return (*condition_specs(manifest), *sampler_specs(DEFAULTS, GUIDANCE_RANGE),
                *init_specs("The picture to start from (fitted to the sheet the prompt draws): the model redraws it "
                            "in the prompt's glyphs"),
                *latent_specs(manifest, strengths=(0.0, 1.0)))

    def _config(self, manifest) -> dict:
        out = manifest.output
        mults = arch_widths(manifest, "mults", [1, 2, 2], max_count=16)
        return {
            "image_size": out["width"],
            "channels": out["channels"],
            "base": arch_value(manifest, "base", int, 32, minimum=8),
            "mults": tuple(mults),
            "num_classes": len(manifest.conditions.labels) if manifest.conditions.kind in ("class", "text") else 0,
            "emb_dim": arch_value(manifest, "emb_dim", int, 128, minimum=8),
            "attention": arch_value(manifest, "attention", bool, True),
        }

    def validate(self, manifest) -> None:
        super().validate(manifest)
        check_cell_manifest(manifest, self.name, flat_latent=False)
        out = manifest.output
        want = [out["channels"], out["height"], out["width"]]
        if list(manifest.latent.shape) != want:
            raise ManifestError(f"the latent is the initial noise, shaped like the image {want}; got "
                                f"{list(manifest.latent.shape)}", manifest.path, "latent.shape")
        cfg = self._config(manifest)
        if cfg["image_size"] % 2 ** (len(cfg["mults"]) - 1):
            raise ManifestError(f"{cfg['image_size']} pixels cannot be halved {len(cfg['mults']) - 1} times",
                                manifest.path, "architecture.mults")
        if cfg["base"] % 8:
            raise ManifestError(f"must be a multiple of 8 (group normalisation), got {cfg['base']}", manifest.path,
                                "architecture.base")
        _schedule_of(manifest)

    def build(self, manifest) -> DiffusionNet:
        self.validate(manifest)
        config = self._config(manifest)
        check_parameter_count(manifest, lambda: DiffusionNet(**config))  # on the meta device, before any allocation
        net = DiffusionNet(**config)
        net.schedule = _schedule_of(manifest)
        return net

    def latent(self, model: LoadedModel, request) -> torch.Tensor:
        # Mixing two noises is a slerp (a straight blend would shrink the noise and blur the result).
        request = model.checked(request)
        if "mix_seed" not in request.params:
            return super().latent(model, request)
        from studio.latent.seeds import slerp
        from studio.latent.seeds import sample_prior

        base = super().latent(model, request.with_params({"mix_seed": None, "mix_strength": None}))
        return slerp(base, sample_prior(request.params["mix_seed"], base.shape),
                     model.table.value(request, "mix_strength"))

    def _init_cells(self, model: LoadedModel, request, rows) -> torch.Tensor | None:
        if start_strength(request) is None:
            return None
        image = decode_init_image(request.params["init_image"])
        s = cast(DiffusionNet, model.network).image_size
        want = sheet_size(rows, s)
        if (image.shape[1], image.shape[0]) != want:
            raise RequestError(f"the init image is {image.shape[1]}×{image.shape[0]} pixels; {model.id} draws this "
                               f"prompt at {want[0]}×{want[1]} ({s} per character): resize it first",
                               field="params.init_image")
        sheet = to_ink(torch.from_numpy(image.astype(np.float32) / 255.0)[None, None])[0]
        return split_sheet(rows, sheet, s) * 2 - 1  # (N, 1, S, S) in −1 … 1, ink = 1

    def init_size(self, manifest, request) -> tuple[int, int]:
        return text_sheet_size(int(manifest.output["width"]), sheet_text(manifest, request))

    def init_picture_for(self, manifest, request, picture: np.ndarray) -> np.ndarray:
        return init_image_for(int(manifest.output["width"]), sheet_text(manifest, request), picture)

    def render(self, model: LoadedModel, request) -> RenderSteps:
        net = cast(DiffusionNet, model.network)
        rows = label_rows(model, request)
        sampler_name, steps, guidance, eta = sampler_settings(model, request)
        # x₀ estimates are clamped to the pixel range: at the first step of a cosine schedule (ᾱ ≈ 2e-9) the
        # estimate divides the network's error by √ᾱ, and unclamped it throws every later step off.
        sampler = make_sampler(sampler_name, net.schedule, steps, eta=eta, clip_sample=True)
        init = self._init_cells(model, request, rows)
        strength = start_strength(request)  # None exactly when init is
        start = sampler.start_index(strength) if init is not None and strength is not None else 0
        flat = [i for row in rows for i in row if i is not None]
        n = len(flat)
        noise = self.latent(model, request)  # (C, S, S), on the CPU
        yield Progress(0, len(sampler.timesteps) - start, "denoising")
        dev, dt = model.device, model.dtype
        noise = noise[None].expand(n, -1, -1, -1).to(dev, dt)
        if init is not None:
            x = sampler.add_noise(init.to(dev, dt), noise, start)
        else:
            x = sampler.initial(noise)
        labels = torch.tensor(flat, dtype=torch.long, device=dev)
        guided = guidance != 1.0 and net.num_classes > 0
        if guided:
            labels = torch.cat([labels, torch.full_like(labels, net.num_classes)])
        # The sampler's own noise (DDPM, DDIM with η > 0) is drawn from the request's seed too.
        gen = torch.Generator().manual_seed(request.seed ^ 0x5DEECE66D)
        total = len(sampler.timesteps) - start
        x0 = x
        for k, i in enumerate(range(start, len(sampler.timesteps))):
            inp = sampler.scale_input(x, i)
            t = torch.full((inp.shape[0] * (2 if guided else 1),), sampler.model_timestep(i), device=dev)
            if guided:
                eps_c, eps_u = net(torch.cat([inp, inp]), t, labels).chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            else:
                eps = net(inp, t, labels if net.num_classes else None)
            # fresh noise of stochastic samplers: one draw shared by every cell, like the starting noise, so the
            # characters of one prompt keep one style
            fresh = torch.randn((1, *x.shape[1:]), generator=gen).to(dev, dt).expand_as(x) if sampler.stochastic \
                else None
            x, x0 = sampler.step(eps, i, x, gen, noise=fresh)
            if k + 1 < total:
                cells = ((x0.float().clamp(-1, 1) + 1) / 2)
                yield Preview(k + 1, total, f"step {k + 1}/{total}",
                              Output("image", compose_sheet(model, request, rows, cells), {"step": k + 1}))
        cells = ((x.float().clamp(-1, 1) + 1) / 2)
        image = compose_sheet(model, request, rows, cells)
        yield Progress(total, total, "done")
        return Output("image", image, {"cells": n, "sampler": sampler_name, "steps": steps, "guidance": guidance,
                                       "start_step": start})


def sheet_text(manifest, request) -> str:
    """The text whose sheet `request` draws (one cell for class and unconditional models)."""
    cond = manifest.conditions
    if cond.kind == "text":
        return request.param("prompt") or cond.default or (cond.labels[0] if cond.labels else "x")
    return "x"


def text_sheet_size(model_width: int, rows_text: str) -> tuple[int, int]:
    """(width, height) of the sheet a text draws: one `model_width` cell per character, one row per line."""
    lines = rows_text.split("\n") if rows_text else ["x"]
    return model_width * max(len(line) for line in lines), model_width * len(lines)


def init_image_for(model_width: int, rows_text: str, image: np.ndarray) -> np.ndarray:
    """Resize any image to the sheet a prompt draws (one `model_width` cell per character), grey, for
    image-to-image; used by the app and the CLI before building the request."""
    from PIL import Image

    w, h = text_sheet_size(model_width, rows_text)
    img = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(img.convert("L").resize((w, h), Image.Resampling.LANCZOS))


"""The GAN family: a small style-based generator (StyleGAN2-like) with a class (character) condition.

A mapping network turns z ~ N(0, I) into a style vector w; the synthesis network starts from a learned 4×4 constant
and, layer by layer, modulates its convolutions with a style made of w and the character's embedding, adding per-pixel
noise. Because the character enters every layer beside w instead of through it, w holds only the style: the same w
draws every character of one typeface, and truncation, style mixing and w-space directions edit the style alone.

What the artist edits (the request's seed or latent, and params declared by `parameters`):
  seed / latent         z from the seed (mapped to w), or explicit values in w space: one w (w_dim values) or one w
                        per layer (num_ws × w_dim, "w+", what projection and layer edits produce)
  variation_*           slerp of z toward another seed's z (seeded latents only)
  truncation            ψ: w ← w̄ + ψ (w − w̄); 0 gives the mean style, 1 leaves w alone
  mix_seed, mix_layer   style mixing: layers ≥ mix_layer take the other seed's w (mix_strength blends, default 1)
  d<k>, layer_start/end principal directions of w (GANSpace), applied to the layers in [layer_start, layer_end)
  z<k>                  add to dimension k of w
  noise                 strength of the per-pixel noise (0 = off, 1 = as trained); drawn from the request's seed
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from studio.errors import ManifestError
from studio.families.base import (Family, LoadedModel, arch_value, arch_widths, check_parameter_count,
                                  condition_specs, edit_ws, explicit_ws, latent_specs)
from studio.families.cells import check_cell_manifest, compose_sheet, label_rows, prepare_cells
from studio.latent.kinds import LatentKind
from studio.nets.stylegan import StyleGenerator
from studio.params import DIRECTIONS, SHAPING, Capability, Kind, ParamSpec
from studio.steps import Output, Progress, RenderSteps

# --- the family ---------------------------------------------------------------------------------------------------

PSI_RANGE = (-1.0, 2.0)  # truncation ψ the app accepts (0 = the mean style, 1 = unchanged)
NOISE_RANGE = (0.0, 4.0)  # noise strength (0 = off, 1 = as trained)


def num_style_layers(manifest) -> int:
    """How many w inputs (layers) the generator of this manifest has: one per convolution plus the last toRGB.
    Computed from the manifest alone, so the app can size its layer controls without building the network."""
    size = int(manifest.architecture.get("image_size", manifest.output["width"]))
    levels = int(math.log2(max(size // 4, 1)))
    return 2 * levels + 2


class GANFamily(Family):
    name = "gan"
    output_kinds = ("image",)
    # encode = projection of an image into w by optimisation (with progress and cancel)
    capabilities = Capability.SAMPLE | Capability.ENCODE | Capability.PROJECT

    def parameters(self, manifest) -> tuple[ParamSpec, ...]:
        n = num_style_layers(manifest)
        specs = [*condition_specs(manifest),
                 *latent_specs(manifest, truncation=PSI_RANGE, mix_strength=1.0, strengths=(0.0, 1.0))]
        # a style-based GAN swaps whole layers' styles, so a mix seed takes over fully unless told otherwise
        mix = [s.name for s in specs].index("mix_strength") + 1
        specs.insert(mix, ParamSpec(
            "mix_layer", Kind.INT, "From layer", default=n // 2, range=(0, n), group=SHAPING, when=("mix_seed", ()),
            help="Style mixing: layers from this one on take the mix seed's style (low = its shapes too, high = only "
                 "its fine details)"))
        specs += [
            ParamSpec("layer_start", Kind.INT, "Layers", default=0, range=(0, n), group=DIRECTIONS,
                      at_most="layer_end",
                      help="First layer the direction sliders act on (0 = the coarsest)"),
            ParamSpec("layer_end", Kind.INT, "to", default=n, range=(0, n), group=DIRECTIONS,
                      help="The direction sliders act on layers before this one (the last = every layer to the "
                           "finest)"),
            ParamSpec("noise", Kind.FLOAT, "Noise", default=1.0, range=NOISE_RANGE, group=SHAPING, render_only=True,
                      help="Strength of the generator's per-pixel noise (texture and small irregularities): 1 as "
                           "trained, 0 none (clean strokes), above 1 exaggerated"),
        ]
        # a variation slerps the seed's z: an explicit latent (a projection, a saved w) is not varied
        specs = [replace(s, seeded_only=True) if s.name.startswith("variation_") else s for s in specs]
        return tuple(specs)

    def latent_kinds(self, manifest) -> tuple[LatentKind, ...]:
        """One w (the same style for every layer: what a seed gives) and w+ (one w per layer: what a projection or a
        layer edit gives). A w is the w+ that repeats it on every layer (`latent_ws` reads it so), so w → w+."""
        d, n = manifest.latent.size, num_style_layers(manifest)
        return (LatentKind("w", d, help="one style for every layer"),
                LatentKind("w+", n * d, widens="w", help=f"one style per layer ({n} layers)"))

    def _config(self, manifest) -> dict:
        out = manifest.output
        widths = arch_widths(manifest, "widths", [128, 128, 64, 32])
        return {
            "image_size": arch_value(manifest, "image_size", int, out["width"], minimum=8),
            "channels": out["channels"],
            "z_dim": manifest.latent.size,
            "w_dim": manifest.latent.size,
            "num_classes": len(manifest.conditions.labels) if manifest.conditions.kind in ("class", "text") else 0,
            "class_dim": arch_value(manifest, "class_dim", int, 64, minimum=1),
            "mapping_layers": arch_value(manifest, "mapping_layers", int, 4, minimum=1),
            "widths": tuple(widths),
        }

    def validate(self, manifest) -> None:
        super().validate(manifest)
        check_cell_manifest(manifest, self.name)
        out = manifest.output
        cfg = self._config(manifest)
        size = cfg["image_size"]
        levels = int(math.log2(max(size // 4, 1)))
        if size != out["width"] or 4 * 2**levels != size:
            raise ManifestError(f"must equal output.width and be 4·2^n, got {size}", manifest.path,
                                "architecture.image_size")
        if len(cfg["widths"]) != levels + 1:
            raise ManifestError(f"needs {levels + 1} widths for {size}×{size} (one per resolution from 4×4), got "
                                f"{len(cfg['widths'])}", manifest.path, "architecture.widths")

    def build(self, manifest) -> StyleGenerator:
        self.validate(manifest)
        config = self._config(manifest)
        check_parameter_count(manifest, lambda: StyleGenerator(**config))  # on the meta device, before any allocation
        return StyleGenerator(**config)

    # --- latents ---
    def _w_of_seed(self, net: StyleGenerator, seed: int, varied: tuple[int, float] | None, device,
                   dtype) -> torch.Tensor:
        from studio.latent.seeds import sample_prior, variation

        z = sample_prior(seed, (net.z_dim,))
        if varied is not None:
            z = variation(z, *varied)
        return net.map(z[None].to(device, dtype))[0].float().cpu()

    def latent_ws(self, model: LoadedModel, request) -> torch.Tensor:
        """The request's per-layer styles (num_ws, w_dim) on CPU in float32, with every edit but noise applied."""
        net = cast(StyleGenerator, model.network)
        request = model.checked(request)
        p, value = request.params, lambda name: model.table.value(request, name)
        n, d = net.num_ws, net.w_dim
        if request.latent is not None:
            ws = explicit_ws(model.id, request.latent, n, d)
        else:
            varied = (p["variation_seed"], value("variation_strength")) \
                if "variation_seed" in p and value("variation_strength") else None
            ws = self._w_of_seed(net, request.seed, varied, model.device, model.dtype)[None].expand(n, -1).clone()
        w_avg = net.w_avg.float().cpu()
        psi = value("truncation")
        if psi != 1.0:
            ws = w_avg + psi * (ws - w_avg)
        if "mix_seed" in p:
            w_b = self._w_of_seed(net, p["mix_seed"], None, model.device, model.dtype)
            if psi != 1.0:
                w_b = w_avg + psi * (w_b - w_avg)
            start = value("mix_layer")
            ws[start:] = torch.lerp(ws[start:], w_b.expand(n - start, -1), value("mix_strength"))
        # layer_start ≤ layer_end: the spec's at_most, checked above
        return edit_ws(model, p, ws, lambda: (value("layer_start"), value("layer_end")))

    def latent(self, model: LoadedModel, request) -> torch.Tensor:
        """One w when every layer has the same style, else w+ (num_ws × w_dim): what renders the same picture as an
        explicit latent with only the noise edit kept."""
        ws = self.latent_ws(model, request)
        return ws[0].clone() if bool((ws == ws[:1]).all()) else ws

    # --- rendering ---
    def render(self, model: LoadedModel, request) -> RenderSteps:
        net = cast(StyleGenerator, model.network)
        rows = label_rows(model, request)
        yield Progress(0, 1, "synthesising")
        ws = self.latent_ws(model, request)
        noise_strength = model.table.value(model.checked(request), "noise")
        flat = [i for row in rows for i in row if i is not None]
        count = max(len(flat), 1)
        gen = torch.Generator().manual_seed(request.seed)
        noise = net.make_noise(1, gen, model.device, model.dtype)
        noise = [n.expand(count, -1, -1, -1) for n in noise]
        labels = torch.tensor(flat, dtype=torch.long, device=model.device) if net.num_classes else None
        ws_d = ws.to(model.device, model.dtype)[None].expand(count, -1, -1)
        images = net.synthesis(ws_d, labels, noise, noise_strength).float()
        cells = ((images.clamp(-1, 1) + 1) / 2)  # 1 = ink
        image = compose_sheet(model, request, rows, cells)
        yield Progress(1, 1, "done")
        return Output("image", image, {"cells": len(flat)})

    # --- projection ---
    def encode(self, model: LoadedModel, images: np.ndarray, labels: list[str] | None = None,
               steps: int = 300) -> Generator[Progress, None, torch.Tensor]:
        """Project images (one or more glyphs of one style, each with its character) into w by optimisation: the w
        (starting at the mean style) whose renderings match the images. Yields progress; every step is a cancel
        point; returns w (num_ws × w_dim, "w+", refined per layer in the last third)."""
        net = cast(StyleGenerator, model.network)
        x, lab = prepare_cells(model, images, labels, net.image_size, net.channels, resize=False)
        target = x * 2 - 1
        with torch.inference_mode(False), torch.enable_grad():
            # A private float32 copy of the generator made outside inference mode: the engine's copy holds
            # inference tensors (no autograd through them) and may be half precision.
            net = StyleGenerator(**self._config(model.manifest)).to(model.device)
            net.load_state_dict({k: v.clone().float() for k, v in model.network.state_dict().items()})
            net.requires_grad_(False)
            target = target.clone().to(model.device, torch.float32)
            lab_t = lab.clone().to(model.device) if lab is not None else None
            w = net.w_avg.clone()[None, None].repeat(1, net.num_ws, 1).requires_grad_(True)
            opt = torch.optim.Adam([w], lr=0.05, betas=(0.9, 0.99))
            n = len(target)
            refine = steps * 2 // 3  # one w for all layers first, then each layer on its own
            for step in range(steps):
                for group in opt.param_groups:
                    group["lr"] = 0.05 * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / steps))
                ws = w if step >= refine else w.mean(1, keepdim=True).expand(-1, net.num_ws, -1)
                out = net.synthesis(ws.expand(n, -1, -1), lab_t, None)
                loss = F.mse_loss(out, target) + F.l1_loss(F.avg_pool2d(out, 2), F.avg_pool2d(target, 2))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step + 1 == refine:
                    with torch.no_grad():
                        w.copy_(w.mean(1, keepdim=True).expand(-1, net.num_ws, -1))
                yield Progress(step + 1, steps, f"projecting: loss {loss.item():.4f}")
            result = w.detach()[0].float().cpu()
        return result.clone()

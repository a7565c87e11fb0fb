"""The GAN family: a small style-based generator (StyleGAN2-like) with a class (character) condition.

A mapping network turns z ~ N(0, I) into a style vector w; the synthesis network starts from a learned 4×4 constant
and, layer by layer, modulates its convolutions with a style made of w and the character's embedding, adding per-pixel
noise. Because the character enters every layer beside w instead of through it, w holds only the style: the same w
draws every character of one typeface, and truncation, style mixing and w-space directions edit the style alone.

What the artist edits (all in `RenderRequest`):
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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.errors import ManifestError, RequestError
from studio.families import register_family
from studio.families.base import (Family, LoadedModel, Output, Progress, RenderSteps, arch_value, edit_seed_value,
                                   edit_value)
from studio.families.cells import check_cell_manifest, compose_sheet, label_rows, prepare_cells

SQRT2 = math.sqrt(2.0)


# --- layers with equalised learning rate --------------------------------------------------------------------------


class EqLinear(nn.Module):
    """A linear layer whose weights are stored at unit variance and scaled at run time (equalised learning rate)."""

    def __init__(self, fan_in: int, fan_out: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((fan_out,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul = lr_mul / math.sqrt(fan_in), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3, down: bool = False, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.pad, self.down = 1.0 / math.sqrt(cin * k * k), k // 2, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)
        return F.avg_pool2d(x, 2) if self.down else x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(1, keepdim=True) + eps).rsqrt()


class StyleConv(nn.Module):
    """A modulated 3×3 convolution with weight demodulation, noise and a leaky ReLU (StyleGAN2's layer, written
    as scale-input → conv → scale-output, which needs no grouped convolution)."""

    def __init__(self, cin: int, cout: int, style_dim: int, up: bool = False, k: int = 3, demodulate: bool = True,
                 activate: bool = True):
        super().__init__()
        self.affine = EqLinear(style_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.pad = 1.0 / math.sqrt(cin * k * k), k // 2
        self.up, self.demodulate, self.activate = up, demodulate, activate
        if activate:
            self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        s = self.affine(style)  # (B, cin)
        w = self.weight * self.scale
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * s[:, :, None, None], w, padding=self.pad)
        if self.demodulate:
            d = torch.rsqrt(s.square() @ w.square().sum((2, 3)).t() + 1e-8)  # (B, cout)
            x = x * d[:, :, None, None]
        if not self.activate:
            return x + self.bias[None, :, None, None]
        if noise is not None:
            x = x + noise * self.noise_strength
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * SQRT2


# --- the generator -------------------------------------------------------------------------------------------------


class StyleGenerator(nn.Module):
    def __init__(self, image_size: int = 32, channels: int = 1, z_dim: int = 128, w_dim: int = 128,
                 num_classes: int = 0, class_dim: int = 64, mapping_layers: int = 4,
                 widths: tuple[int, ...] = (128, 128, 64, 32)):
        super().__init__()
        levels = int(math.log2(image_size // 4))
        if 4 * 2**levels != image_size:
            raise ValueError(f"image_size must be 4·2^n (8, 16, 32, 64…), got {image_size}")
        if len(widths) != levels + 1:
            raise ValueError(f"widths needs {levels + 1} entries (4×4 … {image_size}×{image_size}), got "
                             f"{len(widths)}")
        self.image_size, self.channels, self.z_dim, self.w_dim = image_size, channels, z_dim, w_dim
        self.num_classes = num_classes
        self.class_dim = class_dim if num_classes else 0
        if num_classes:
            self.embed = nn.Embedding(num_classes, class_dim)
        self.mapping = nn.ModuleList(EqLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=0.01)
                                     for i in range(mapping_layers))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        style = w_dim + self.class_dim
        self.const = nn.Parameter(torch.randn(widths[0], 4, 4))
        # Layer order and the w each reads: [conv 4] [torgb 4 | up-conv 8] [conv 8] [torgb 8 | up-conv 16] …
        self.convs = nn.ModuleList([StyleConv(widths[0], widths[0], style)])
        self.torgbs = nn.ModuleList([StyleConv(widths[0], channels, style, k=1, demodulate=False,
                                               activate=False)])
        for i in range(1, levels + 1):
            self.convs.append(StyleConv(widths[i - 1], widths[i], style, up=True))
            self.convs.append(StyleConv(widths[i], widths[i], style))
            self.torgbs.append(StyleConv(widths[i], channels, style, k=1, demodulate=False, activate=False))
        self.num_ws = len(self.convs) + 1
        self.noise_shapes = [4] + [4 * 2**i for i in range(1, levels + 1) for _ in range(2)]

    # --- mapping ---
    def map(self, z: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for layer in self.mapping:
            x = F.leaky_relu(layer(x), 0.2) * SQRT2
        return x

    def class_style(self, labels: torch.Tensor | None, n: int, device, dtype) -> torch.Tensor:
        if not self.num_classes:
            return torch.zeros(n, 0, device=device, dtype=dtype)
        if labels is None:
            raise ValueError("this generator needs a label for every image")
        return normalize_2nd_moment(self.embed(labels))

    def make_noise(self, batch: int, generator: torch.Generator | None = None, device=None,
                   dtype=torch.float32) -> list[torch.Tensor]:
        """Per-layer noise maps, drawn on the CPU from `generator` (reproducible on every device)."""
        return [torch.randn(batch, 1, s, s, generator=generator).to(device=device, dtype=dtype)
                for s in self.noise_shapes]

    # --- synthesis ---
    def synthesis(self, ws: torch.Tensor, labels: torch.Tensor | None = None,
                  noise: list[torch.Tensor] | None = None, noise_strength: float = 1.0) -> torch.Tensor:
        """ws (B, num_ws, w_dim), labels (B,), noise per conv layer (or None for none) → images (B, C, S, S),
        about −1 (paper) … 1 (ink)."""
        b = ws.shape[0]
        c = self.class_style(labels, b, ws.device, ws.dtype)
        styles = [torch.cat([ws[:, i], c], 1) for i in range(self.num_ws)]
        x = self.const[None].expand(b, -1, -1, -1)

        def noise_at(i: int):
            if noise is None or noise_strength == 0:
                return None
            return noise[i] * noise_strength

        x = self.convs[0](x, styles[0], noise_at(0))
        img = self.torgbs[0](x, styles[1])
        for level in range(1, len(self.torgbs)):
            i = 2 * level - 1
            x = self.convs[i](x, styles[i], noise_at(i))
            x = self.convs[i + 1](x, styles[i + 1], noise_at(i + 1))
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + self.torgbs[level](x, styles[i + 2])
        return img

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, psi: float = 1.0,
                noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        w = self.map(z)
        if psi != 1.0:
            w = self.w_avg + psi * (w - self.w_avg)
        return self.synthesis(w[:, None].expand(-1, self.num_ws, -1), labels, noise)


# --- the family ---------------------------------------------------------------------------------------------------

PSI_RANGE = (-1.0, 2.0)  # truncation ψ the app accepts (0 = the mean style, 1 = unchanged)
NOISE_RANGE = (0.0, 4.0)  # noise strength (0 = off, 1 = as trained)


def num_style_layers(manifest) -> int:
    """How many w inputs (layers) the generator of this manifest has: one per convolution plus the last toRGB.
    Computed from the manifest alone, so the app can size its layer controls without building the network."""
    size = int(manifest.architecture.get("image_size", manifest.output["width"]))
    levels = int(math.log2(max(size // 4, 1)))
    return 2 * levels + 2


def _layer(table: dict, name: str, num_ws: int, default: int) -> int:
    value = table.get(name, default)
    if value != int(value) or not 0 <= value <= num_ws:
        raise RequestError(f"{name} must be a whole number of layers in 0..{num_ws}, got {value:g}", field="edits")
    return int(value)


@register_family
class GANFamily(Family):
    name = "gan"
    output_kinds = ("image",)
    # encode = projection of an image into w by optimisation (with progress and cancel)
    capabilities = frozenset({"sample", "encode", "style_mixing", "layer_directions", "noise"})

    def _config(self, manifest) -> dict:
        out = manifest.output
        widths = manifest.architecture.get("widths", [128, 128, 64, 32])
        if not isinstance(widths, list) or not all(isinstance(v, int) and v > 0 for v in widths):
            raise ManifestError(f"expected a list of positive whole numbers, got {widths!r}", manifest.path,
                                "architecture.widths")
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
        return StyleGenerator(**self._config(manifest))

    # --- latents ---
    def _w_of_seed(self, net: StyleGenerator, seed: int, table: dict, device, dtype) -> torch.Tensor:
        from studio.latent.seeds import sample_prior, variation

        z = sample_prior(seed, (net.z_dim,))
        if "variation_seed" in table and table.get("variation_strength", 0.0):
            z = variation(z, edit_seed_value(table, "variation_seed"),
                          edit_value(table, "variation_strength", 0.0, 1.0, 0.0))
        return net.map(z[None].to(device, dtype))[0].float().cpu()

    def latent_ws(self, model: LoadedModel, request) -> torch.Tensor:
        """The request's per-layer styles (num_ws, w_dim) on CPU in float32, with every edit but noise applied."""
        net: StyleGenerator = model.network
        table = dict(request.edits)
        n, d = net.num_ws, net.w_dim
        if request.latent is not None:
            values = torch.tensor(request.latent, dtype=torch.float32)
            if values.numel() == d:
                ws = values[None].expand(n, -1).clone()
            elif values.numel() == n * d:
                ws = values.reshape(n, d).clone()
            else:
                raise RequestError(f"the latent has {values.numel()} values but {model.id} takes a w of {d} values "
                                   f"or one w per layer ({n} × {d} = {n * d})", field="latent")
        else:
            ws = self._w_of_seed(net, request.seed, table, model.device, model.dtype)[None].expand(n, -1).clone()
        w_avg = net.w_avg.float().cpu()
        psi = edit_value(table, "truncation", *PSI_RANGE, 1.0)
        if psi != 1.0:
            ws = w_avg + psi * (ws - w_avg)
        if "mix_seed" in table:
            w_b = self._w_of_seed(net, edit_seed_value(table, "mix_seed"), {}, model.device, model.dtype)
            if psi != 1.0:
                w_b = w_avg + psi * (w_b - w_avg)
            start = _layer(table, "mix_layer", n, n // 2)
            strength = edit_value(table, "mix_strength", 0.0, 1.0, 1.0)
            ws[start:] = torch.lerp(ws[start:], w_b.expand(n - start, -1), strength)
        start, end = _layer(table, "layer_start", n, 0), _layer(table, "layer_end", n, n)
        if start > end:
            raise RequestError(f"layer_start ({start}) is after layer_end ({end})", field="edits")
        for name, value in sorted(table.items()):
            if name.startswith("d") and name[1:].isdigit():
                if model.directions is None:
                    raise RequestError(f"edit {name!r} needs principal directions, and {model.id} ships none",
                                       field="edits")
                try:
                    ws[start:end] += model.directions.offset(int(name[1:]), value)
                except IndexError as exc:
                    raise RequestError(str(exc), field="edits") from None
            elif name.startswith("z") and name[1:].isdigit():
                k = int(name[1:])
                if k >= d:
                    raise RequestError(f"edit {name!r}: w has {d} dimensions (z0..z{d - 1})", field="edits")
                ws[:, k] += float(value)
        return ws

    def latent(self, model: LoadedModel, request) -> torch.Tensor:
        """One w when every layer has the same style, else w+ (num_ws × w_dim): what renders the same picture as an
        explicit latent with only the noise edit kept."""
        ws = self.latent_ws(model, request)
        return ws[0].clone() if bool((ws == ws[:1]).all()) else ws

    # --- rendering ---
    def render(self, model: LoadedModel, request) -> RenderSteps:
        net: StyleGenerator = model.network
        rows = label_rows(model, request)
        yield Progress(0, 1, "synthesising")
        ws = self.latent_ws(model, request)
        noise_strength = edit_value(dict(request.edits), "noise", *NOISE_RANGE, 1.0)
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
               steps: int = 300) -> RenderSteps:
        """Project images (one or more glyphs of one style, each with its character) into w by optimisation: the w
        (starting at the mean style) whose renderings match the images. Yields progress; every step is a cancel
        point; returns w (num_ws × w_dim, "w+", refined per layer in the last third)."""
        net: StyleGenerator = model.network
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

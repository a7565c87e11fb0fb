"""A small style-based generator (StyleGAN2-like) with a class (character) condition: the network the GAN family
renders with and the GAN trainers train.

A mapping network turns z ~ N(0, I) into a style vector w; the synthesis network starts from a learned 4×4 constant
and, layer by layer, modulates its convolutions with a style made of w and the class embedding, adding per-pixel
noise. Because the class enters every layer beside w instead of through it, w holds only the style.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
MAPPING_LR_MUL = 0.01  # the mapping network's learning-rate multiplier in packages (StyleGAN's)


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
    w_avg: torch.Tensor  # buffer: the mean w, for truncation

    def __init__(self, image_size: int = 32, channels: int = 1, z_dim: int = 128, w_dim: int = 128,
                 num_classes: int = 0, class_dim: int = 64, mapping_layers: int = 4,
                 widths: tuple[int, ...] = (128, 128, 64, 32), mapping_lr_mul: float = MAPPING_LR_MUL):
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
        self.mapping = nn.ModuleList(EqLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=mapping_lr_mul)
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

    def packaged_state(self) -> dict[str, torch.Tensor]:
        """The state dict as a package stores it: the mapping layers at MAPPING_LR_MUL, whatever multiplier this
        generator trained with (same effective weights, so a generator built with the defaults draws the same)."""
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        for i, layer in enumerate(self.mapping):
            ratio = cast(EqLinear, layer).lr_mul / MAPPING_LR_MUL
            state[f"mapping.{i}.weight"] *= ratio
            state[f"mapping.{i}.bias"] *= ratio
        return state

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

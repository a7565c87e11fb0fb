"""The ε-prediction UNet of the diffusion family (and its trainers): levels of ResBlocks, attention at the lowest
resolution, timestep and class embeddings."""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

# --- the network -----------------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps t (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _zero(conv: nn.Conv2d) -> None:
    """Weight and bias of `conv` to zero: the residual branch or the output it ends starts at nothing."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        _zero(self.conv2)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, ch: int, heads: int = 4, groups: int = 8):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        self.heads = heads
        _zero(self.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """ε-prediction UNet: levels of ResBlocks (down by stride-2 conv, up by nearest + conv), attention at the
    lowest resolution, timestep + class embedding added to every block. Class index `num_classes` is "no class"."""

    def __init__(self, image_size: int = 32, channels: int = 1, base: int = 32, mults: tuple[int, ...] = (1, 2, 2),
                 num_classes: int = 0, emb_dim: int = 128, attention: bool = True):
        super().__init__()
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes
        if image_size % 2 ** (len(mults) - 1):
            raise ValueError(f"image_size {image_size} cannot be halved {len(mults) - 1} times")
        self.emb_dim = emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        chans = [base * m for m in mults]
        self.stem = nn.Conv2d(channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [chans[0]]
        cin = chans[0]
        for i, ch in enumerate(chans):
            self.down.append(ResBlock(cin, ch, emb_dim))
            cin = ch
            skips.append(ch)
            if i < len(chans) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1 = ResBlock(cin, cin, emb_dim)
        self.mid_attn = SelfAttention(cin) if attention else nn.Identity()
        self.mid2 = ResBlock(cin, cin, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            blocks = nn.ModuleList()
            for _ in range(2):  # one skip from each down block and each downsample, plus the stem's
                blocks.append(ResBlock(cin + skips.pop(), ch, emb_dim))
                cin = ch
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out_norm = nn.GroupNorm(min(8, cin), cin)
        self.out = nn.Conv2d(cin, channels, 3, padding=1)
        _zero(self.out)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, S, S), t (B,) timesteps, labels (B,) class indices (num_classes = none) → ε (B, C, S, S)."""
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim).to(x.dtype))
        if self.class_embed is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
            emb = emb + self.class_embed(labels)
        emb = F.silu(emb)
        h = self.stem(x)
        hs = [h]
        for i, block in enumerate(self.down):
            h = block(h, emb)
            hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, blocks in enumerate(self.up):
            for block in cast(nn.ModuleList, blocks):  # self.up holds a ModuleList per level
                h = block(torch.cat([h, hs.pop()], 1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))

"""NVIDIA's StyleGAN2 and StyleGAN3 generators, in our own plain PyTorch.

The modules here take the same constructor arguments and the same state-dict names as
``training.networks_stylegan2.Generator`` and ``training.networks_stylegan3.Generator`` of NVIDIA's
code (the stylegan3 repository), so that a network pickle's ``G_ema`` (its ``init_kwargs`` and tensors,
read by :mod:`studio.io.nv_pickle` without running anything) rebuilds here and gives NVIDIA's pictures.
No custom CUDA ops: ``bias_act``, ``upfirdn2d`` and ``filtered_lrelu`` below compute what NVIDIA's
reference (non-CUDA) paths compute, written with ordinary torch operations, so every path runs on CPU,
CUDA and MPS. As in NVIDIA's code, the layers of the last ``num_fp16_res`` resolutions (``use_fp16``) run in
float16 on CUDA (and in float32 elsewhere, as NVIDIA's code does on the CPU): see :data:`FP16_DEVICE_TYPES`.

Seeds follow NVIDIA's ``gen_images.py``: ``z = np.random.RandomState(seed).randn(1, z_dim)`` (see
:func:`z_from_seed`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

SQRT2 = math.sqrt(2.0)

# Where the ``use_fp16`` layers compute in float16, as NVIDIA's code does (its networks force float32 off CUDA).
# Tests add "cpu" to check that path's numerics without a GPU.
FP16_DEVICE_TYPES: frozenset[str] = frozenset({"cuda"})


def compute_dtype(use_fp16: bool, device: torch.device) -> torch.dtype:
    """The dtype a layer flagged ``use_fp16`` computes in on ``device`` (float16 only where NVIDIA uses it)."""
    return torch.float16 if use_fp16 and device.type in FP16_DEVICE_TYPES else torch.float32


def z_from_seed(seed: int, z_dim: int) -> Tensor:
    """The latent NVIDIA's gen_images.py draws for ``seed`` (float64 numpy → float32 tensor [1, z_dim]).

    Seeds 0 … 2³²−1 are NVIDIA's exactly (``RandomState(seed)``). NumPy's RandomState takes no larger integer, so a
    seed from 2³² to 2⁶⁴−1 (the app's seed range) seeds it with its two 32-bit words, low first
    (``RandomState([seed & 0xffffffff, seed >> 32])``): deterministic, and never the stream of a small seed (an
    array seeds MT19937 by init_by_array, a single number by init_genrand)."""
    if not 0 <= seed < 2**64:
        raise ValueError(f"a seed is a whole number in 0..2**64-1, not {seed}")
    state = np.random.RandomState(seed if seed < 2**32 else [seed & 0xFFFFFFFF, seed >> 32])
    z = state.randn(1, z_dim)
    return torch.from_numpy(z).to(torch.float32)


# ---------------------------------------------------------------------------------------------------
# Elementary ops (the math of NVIDIA's reference paths)


def bias_act(x: Tensor, b: Tensor | None = None, act: str = "linear", alpha: float = 0.2,
             gain: float | None = None, clamp: float | None = None) -> Tensor:
    """Add a per-channel bias (dim 1), apply the activation, scale by ``gain``, clamp to ±clamp.

    ``gain`` defaults to the activation's own gain (√2 for lrelu/relu, 1 for linear)."""
    if b is not None:
        shape = [1] * x.ndim
        shape[1] = -1
        x = x + b.reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, alpha)
        default_gain = SQRT2
    elif act == "relu":
        x = F.relu(x)
        default_gain = SQRT2
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unsupported activation {act!r}")
    g = default_gain if gain is None else float(gain)
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _pad4(padding: int | list[int] | tuple[int, ...]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return int(padding[0]), int(padding[1]), int(padding[2]), int(padding[3])


def upfirdn2d(x: Tensor, f: Tensor | None, up: int = 1, down: int = 1,
              padding: int | list[int] | tuple[int, ...] = 0, flip_filter: bool = False,
              gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad (negative = crop), convolve with FIR ``f``, keep every
    ``down``-th pixel. ``f`` is 2-D, or 1-D (separable, applied along x then y), or None (identity)."""
    n, c, h, w = x.shape
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    px0, px1, py0, py1 = _pad4(padding)
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(device=x.device, dtype=x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        k = f[None, None].repeat(c, 1, 1)
        x = F.conv2d(x, k.unsqueeze(2), groups=c)
        x = F.conv2d(x, k.unsqueeze(3), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """Upsample by ``up`` with FIR ``f``, output exactly ``up`` times the input size."""
    fw = f.shape[-1]
    fh = f.shape[0]
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def setup_filter(taps: list[float] | Tensor) -> Tensor:
    """NVIDIA's default preparation of a resampling filter: outer product for short 1-D taps, sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor | None, up: int = 1, down: int = 1,
                    padding: int = 0, groups: int = 1, flip_weight: bool = True) -> Tensor:
    """Convolution with optional FIR up/downsampling, in the order NVIDIA's conv2d_resample uses."""
    out_ch, in_per_group, kh, kw = w.shape
    fw, fh = (1, 1) if f is None else (f.shape[-1], f.shape[0])
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    def conv(x: Tensor, w: Tensor, stride: int = 1, pad: tuple[int, int] = (0, 0),
             transpose: bool = False, flip: bool = True) -> Tensor:
        if not flip and (kh > 1 or kw > 1):
            w = w.flip([2, 3])
        if transpose:
            return F.conv_transpose2d(x, w, stride=stride, padding=pad, groups=groups)
        return F.conv2d(x, w, stride=stride, padding=pad, groups=groups)

    if kh == 1 and kw == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1])
        return conv(x, w, flip=flip_weight)
    if kh == 1 and kw == 1 and up > 1 and down == 1:
        x = conv(x, w, flip=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1])
        return conv(x, w, stride=down, flip=flip_weight)
    if up > 1:
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = conv(x, wt, stride=up, pad=(pyt, pxt), transpose=True, flip=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return conv(x, w, pad=(py0, px0), flip=flip_weight)
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    x = conv(x, w, flip=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down)
    return x


def filtered_lrelu(x: Tensor, fu: Tensor | None, fd: Tensor | None, b: Tensor | None, up: int = 1,
                   down: int = 1, padding: list[int] | int = 0, gain: float = SQRT2, slope: float = 0.2,
                   clamp: float | None = None) -> Tensor:
    """Bias, upsample with ``fu``, leaky ReLU with gain and clamp, downsample with ``fd``."""
    x = bias_act(x, b)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    return upfirdn2d(x, fd, down=down)


def _kaiser_beta(atten: float) -> float:
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Tensor | None:
    """Kaiser-windowed low-pass FIR (as scipy.signal.firwin), or the radial jinc variant; None for 1 tap."""
    if numtaps == 1:
        return None
    nyq = fs / 2
    atten = 2.285 * (numtaps - 1) * math.pi * (width / nyq) + 7.95
    window = np.kaiser(numtaps, _kaiser_beta(atten))
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        c = cutoff / nyq
        h = c * np.sinc(c * m) * window
        h = h / h.sum()
        return torch.as_tensor(h, dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    # on the CPU explicitly: a build under torch.device("meta") (counting parameters) still designs the filter
    rt = torch.as_tensor(2 * cutoff * np.pi * r, dtype=torch.float64, device="cpu")
    f = torch.special.bessel_j1(rt).numpy() / (np.pi * r)
    f = f * np.outer(window, window)
    f = f / f.sum()
    return torch.as_tensor(f, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------
# Shared layers


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float | list[float] = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight = nn.Parameter(torch.zeros([out_features, in_features]))
        init = torch.as_tensor(np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features]).copy())
        self.bias = nn.Parameter(init / lr_multiplier) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b: Tensor | None = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


def _normalize_2nd_moment(x: Tensor) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


class MappingNetwork(nn.Module):
    """z (and class label c) → w, broadcast to num_ws, with truncation toward the tracked w̄."""

    w_avg: Tensor

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.998,
                 freeze_layers: int = 0, freeze_embed: bool = False) -> None:
        # freeze_*: training-only options of some forks (which layers train); no effect on the output
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        embed = w_dim if embed_features is None else embed_features
        if c_dim == 0:
            embed = 0
        layer = w_dim if layer_features is None else layer_features
        feats = [z_dim + embed] + [layer] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(feats[i], feats[i + 1], activation=activation,
                                                         lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> Tensor:
        x = None
        if self.z_dim > 0:
            x = _normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.shape[-1] != self.c_dim:
                raise ValueError(f"this generator needs a class label vector of length {self.c_dim}")
            y = _normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        assert x is not None
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = x.clone()
            x[:, :cut] = self.w_avg.lerp(x[:, :cut], truncation_psi)
        return x


# ---------------------------------------------------------------------------------------------------
# StyleGAN2


def _modulated_conv2d_sg2(x: Tensor, weight: Tensor, styles: Tensor, noise: Tensor | None = None,
                          up: int = 1, padding: int = 0, resample_filter: Tensor | None = None,
                          demodulate: bool = True, flip_weight: bool = True) -> Tensor:
    """NVIDIA's fused modulated convolution (one grouped conv per batch)."""
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:  # NVIDIA's pre-normalisation against float16 overflow (a no-op in
        # exact arithmetic: demodulation divides the scale out again)
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if demodulate:
        d = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * d.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, padding=padding, groups=n,
                        flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = (x + noise).to(x.dtype)  # NVIDIA's in-place add_: computed at the wider type, stored at x's
    return x


class Conv2dLayer(nn.Module):
    """Plain convolution layer (used by the resnet architecture's skip path)."""

    resample_filter: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: list[float] | None = None, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter or [1, 3, 3, 1]))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = SQRT2 if activation in ("lrelu", "relu") else 1.0
        self.weight = nn.Parameter(torch.zeros([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                            flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    resample_filter: Tensor
    noise_const: Tensor
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 kernel_size: int = 3, up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: list[float] | None = None, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter or [1, 3, 3, 1]))
        self.padding = kernel_size // 2
        self.act_gain = SQRT2 if activation in ("lrelu", "relu") else 1.0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.zeros([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.zeros([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", gain: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            # drawn where the generator lives (a CPU generator gives the same noise on every device), then moved
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution],
                                device=generator.device if generator is not None else x.device,
                                generator=generator).to(x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = _modulated_conv2d_sg2(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                                  resample_filter=self.resample_filter, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.zeros([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = _modulated_conv2d_sg2(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):

    resample_filter: Tensor
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: list[float] | None = None,
                 conv_clamp: float | None = 256, use_fp16: bool = False, fp16_channels_last: bool = False,
                 fused_modconv_default: Any = True, **layer_kwargs: Any) -> None:
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown StyleGAN2 architecture {architecture!r}")
        rf = resample_filter or [1, 3, 3, 1]
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.is_last, self.architecture, self.use_fp16 = is_last, architecture, use_fp16
        self.register_buffer("resample_filter", setup_filter(rf))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.zeros([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, resample_filter=rf,
                                        conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=rf)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str = "random",
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        w_iter = iter(ws.unbind(dim=1))
        kw = {"noise_mode": noise_mode, "generator": generator}
        dtype = compute_dtype(self.use_fp16, ws.device)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), **kw)
        elif self.architecture == "resnet":
            assert x is not None
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), **kw)
            x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **kw)
            x = y + x
        else:
            assert x is not None
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), **kw)
            x = self.conv1(x, next(w_iter), **kw)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter)).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs: Any) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"StyleGAN2 img_resolution must be a power of two ≥ 4, not {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(in_ch, channels[res], w_dim, res, img_channels, is_last,
                                   use_fp16=(res >= fp16_resolution), **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: Tensor, noise_mode: str = "random", generator: torch.Generator | None = None) -> Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, not {noise_mode!r}")
        ws = ws.to(torch.float32)
        x = img = None
        idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            cur = ws.narrow(1, idx, block.num_conv + block.num_torgb)
            idx += block.num_conv
            x, img = block(x, img, cur, noise_mode=noise_mode, generator=generator)
        assert img is not None
        return img


class StyleGAN2Generator(nn.Module):
    """``training.networks_stylegan2.Generator``'s constructor and state-dict names."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None, **synthesis_kwargs: Any) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **dict(mapping_kwargs or {}))

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "random",
                generator: torch.Generator | None = None) -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, generator=generator)



# ---------------------------------------------------------------------------------------------------
# StyleGAN3 (T: conv_kernel 3; R: conv_kernel 1 with use_radial_filters)


def _modulated_conv2d_sg3(x: Tensor, w: Tensor, s: Tensor, demodulate: bool = True, padding: int = 0,
                          input_gain: Tensor | None = None) -> Tensor:
    n = x.shape[0]
    out_ch, in_ch, kh, kw = w.shape
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    w = w.unsqueeze(0) * s.unsqueeze(1).unsqueeze(3).unsqueeze(4)
    if demodulate:
        d = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * d.unsqueeze(2).unsqueeze(3).unsqueeze(4)
    if input_gain is not None:
        w = w * input_gain.expand(n, in_ch).unsqueeze(1).unsqueeze(3).unsqueeze(4)
    x = x.reshape(1, -1, *x.shape[2:])
    x = F.conv2d(x, w.reshape(-1, in_ch, kh, kw).to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


class SynthesisInput(nn.Module):
    """Fourier features: a fixed bank of frequencies and phases, rotated and translated per w, then
    a learned channel mix. ``transform`` is the user's inverse transform of the resulting image."""

    transform: Tensor
    freqs: Tensor
    phases: Tensor

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.channels = channels
        self.size = [int(v) for v in np.broadcast_to(np.asarray(size), [2])]
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        self.weight = nn.Parameter(torch.zeros([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", torch.zeros([channels, 2]))
        self.register_buffer("phases", torch.zeros([channels]))

    def forward(self, w: Tensor) -> Tensor:
        n = w.shape[0]
        transforms = self.transform.unsqueeze(0)
        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0)
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size[1], self.size[0]], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (math.pi * 2)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer3(nn.Module):
    """One StyleGAN3 layer: modulated conv, then bias + filtered leaky ReLU (up, act, clamp, down)."""

    magnitude_ema: Tensor
    up_filter: Tensor | None
    down_filter: Tensor | None

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: int, out_size: int, in_sampling_rate: float,
                 out_sampling_rate: float, in_cutoff: float, out_cutoff: float, in_half_width: float,
                 out_half_width: float, conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: float | None = 256,
                 magnitude_ema_beta: float = 0.999) -> None:
        super().__init__()
        self.is_torgb, self.use_fp16 = is_torgb, use_fp16
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        tmp_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.zeros([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.up_factor = int(np.rint(tmp_rate / in_sampling_rate))
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2,
                                                                tmp_rate))
        self.down_factor = int(np.rint(tmp_rate / out_sampling_rate))
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", design_lowpass_filter(self.down_taps, out_cutoff,
                                                                  out_half_width * 2, tmp_rate, radial=radial))
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))
        dtype = compute_dtype(self.use_fp16, x.device)
        x = _modulated_conv2d_sg3(x.to(dtype), self.weight, styles, demodulate=not self.is_torgb,
                                  padding=self.conv_kernel - 1, input_gain=self.magnitude_ema.rsqrt())
        gain = 1.0 if self.is_torgb else SQRT2
        slope = 1.0 if self.is_torgb else 0.2
        # in float32 even for a float16 layer: NVIDIA's CUDA kernel reads and writes float16 but computes in float32
        x = filtered_lrelu(x.to(torch.float32), self.up_filter, self.down_filter, self.bias.to(torch.float32),
                           up=self.up_factor, down=self.down_factor, padding=self.padding, gain=gain, slope=slope,
                           clamp=self.conv_clamp)
        return x.to(dtype)


class SynthesisNetwork3(nn.Module):
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs: Any) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.output_scale = output_scale
        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exps = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exps
        stopbands = first_stopband * (last_stopband / first_stopband) ** exps
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, rates / 2) - cutoffs
        sizes = rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels
        self.input = SynthesisInput(w_dim, int(channels[0]), int(sizes[0]), rates[0], cutoffs[0])
        self.layer_names: list[str] = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer3(
                w_dim=w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(rates[idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(rates[prev]), out_sampling_rate=int(rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: Tensor, noise_mode: str = "const", generator: torch.Generator | None = None) -> Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, not {noise_mode!r}")
        w_list = ws.to(torch.float32).unbind(dim=1)
        x = self.input(w_list[0])
        for name, w in zip(self.layer_names, w_list[1:]):
            x = getattr(self, name)(x, w)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)


class StyleGAN3Generator(nn.Module):
    """``training.networks_stylegan3.Generator``'s constructor and state-dict names (T and R configs).

    StyleGAN3 has no noise inputs; ``noise_mode`` is accepted for a common call signature."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None, **synthesis_kwargs: Any) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork3(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        mk = dict(mapping_kwargs or {})
        mk.setdefault("num_layers", 2)
        unknown = set(mk) - {"num_layers", "lr_multiplier", "w_avg_beta", "freeze_layers", "freeze_embed"}
        if unknown:
            raise TypeError(f"unknown StyleGAN3 mapping arguments: {sorted(unknown)}")
        mk.pop("freeze_layers", None)
        mk.pop("freeze_embed", None)
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mk)

    def set_input_transform(self, translate: tuple[float, float] = (0.0, 0.0), rotate_deg: float = 0.0) -> None:
        """The visualizer's input transform (translate x/y, rotate), stored as NVIDIA's inverse matrix."""
        a = math.radians(rotate_deg)
        m = torch.tensor([[math.cos(a), math.sin(a), translate[0]],
                          [-math.sin(a), math.cos(a), translate[1]],
                          [0.0, 0.0, 1.0]])
        self.synthesis.input.transform.copy_(torch.linalg.inv(m))

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const",
                generator: torch.Generator | None = None) -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, generator=generator)


# ---------------------------------------------------------------------------------------------------
# From a network pickle's data (studio.io.nv_pickle) to a module

_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


def nvidia_generator_kwargs(generation: str, init_args: tuple[Any, ...] | list[Any],
                            init_kwargs: dict[str, Any]) -> tuple[type[nn.Module], dict[str, Any]]:
    """The class and keyword arguments that rebuild an NVIDIA ``Generator`` of ``generation`` ("stylegan2" or
    "stylegan3") from its pickled constructor arguments: positional arguments named, stylegan2-ada-pytorch's
    nested ``synthesis_kwargs`` (and its defaults: no conv clamp, no fp16 layers) merged. Raises WeightsError."""
    from studio.errors import WeightsError

    if len(init_args) > len(_POSITIONAL):
        raise WeightsError(f"the Generator was built with {len(init_args)} positional arguments")
    kwargs = dict(zip(_POSITIONAL, init_args))
    kwargs.update(init_kwargs)
    cls: type[nn.Module]
    if generation == "stylegan3":
        cls = StyleGAN3Generator
    elif generation == "stylegan2":
        cls = StyleGAN2Generator
        nested = kwargs.pop("synthesis_kwargs", None)
        if isinstance(nested, dict):  # stylegan2-ada-pytorch: Generator(..., synthesis_kwargs={...})
            merged = {"conv_clamp": None, "num_fp16_res": 0}
            merged.update(nested)
            for k, v in merged.items():
                kwargs.setdefault(k, v)
    else:
        raise WeightsError(f"unknown StyleGAN generation {generation!r} (stylegan2 or stylegan3)")
    missing = [k for k in _POSITIONAL if k not in kwargs]
    if missing:
        raise WeightsError(f"the Generator's constructor arguments lack {', '.join(missing)}")
    return cls, kwargs


def make_nvidia_generator(generation: str, init_args: tuple[Any, ...] | list[Any],
                          init_kwargs: dict[str, Any]) -> nn.Module:
    """An NVIDIA ``Generator`` of ``generation`` built from its constructor arguments, weights not loaded (works
    under ``torch.device("meta")`` to count parameters). Raises WeightsError naming what does not fit."""
    from studio.errors import WeightsError

    cls, kwargs = nvidia_generator_kwargs(generation, init_args, init_kwargs)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        raise WeightsError(f"the Generator's constructor arguments do not fit {cls.__name__}: {exc}") from exc


def build_nvidia_generator(class_name: str, init_args: tuple[Any, ...], init_kwargs: dict[str, Any],
                           tensors: dict[str, Tensor]) -> nn.Module:
    """Rebuild an NVIDIA ``Generator`` from its pickled constructor arguments and tensors (eval mode).

    StyleGAN3 (T or R) when the tensors hold ``synthesis.input.freqs``, StyleGAN2 when they hold
    ``synthesis.b4.const``; stylegan2-ada-pytorch's nested ``synthesis_kwargs`` (and its defaults: no
    conv clamp) are understood. Raises WeightsError naming the problem."""
    from studio.errors import WeightsError

    if class_name != "Generator":
        raise WeightsError(f"the network is a {class_name!r}, not a StyleGAN Generator")
    if "synthesis.input.freqs" in tensors:
        generation = "stylegan3"
    elif "synthesis.b4.const" in tensors:
        generation = "stylegan2"
    else:
        raise WeightsError("the Generator's tensors are neither StyleGAN2's (synthesis.b4.const) nor "
                           "StyleGAN3's (synthesis.input.freqs)")
    g = make_nvidia_generator(generation, init_args, init_kwargs)
    cls = type(g)
    own = g.state_dict()
    problems = [f"{k} is missing" for k in own if k not in tensors]
    problems += [f"{k} is not part of {cls.__name__}" for k in tensors if k not in own]
    problems += [f"{k} is {list(tensors[k].shape)}, the arguments give {list(v.shape)}"
                 for k, v in own.items() if k in tensors and tensors[k].shape != v.shape]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise WeightsError("the Generator's tensors do not fit its constructor arguments: "
                           + "; ".join(problems[:3]) + more)
    g.load_state_dict(tensors, strict=True)
    return g.eval()


def load_nvidia_generator(path: str | Path, key: str = "G_ema") -> nn.Module:
    """Read an NVIDIA network pickle without running it and rebuild ``key`` (eval mode, CPU).

    Raises WeightsError naming the file and the problem."""
    from studio.errors import WeightsError
    from studio.io.nv_pickle import extract_network

    net = extract_network(path, key=key)
    try:
        return build_nvidia_generator(net.class_name, net.init_args, net.init_kwargs, net.tensors)
    except WeightsError as exc:
        raise WeightsError(f"{key}: {exc.problem}", path) from exc

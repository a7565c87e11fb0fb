"""Projection of an image into the w or w+ space of an NVIDIA StyleGAN generator (issue 19, point 3).

`project(G, image, ...)` is a generator: it yields a `studio.steps.Progress` after every optimisation step (each one a
cancel point: closing the generator stops the work at once) and returns the latent on the CPU in float32, ``w``
(w_dim,) or ``w+`` (num_ws, w_dim). It follows NVIDIA's ``projector.py`` (stylegan2-ada-pytorch / stylegan3) in spirit:

- w starts at the mean of `w_avg_samples` mapped z's (NVIDIA's w_avg; for a class-conditional G, of that class), and
  w_std, the spread of those samples, scales the exploration noise;
- Adam (β 0.9, 0.999) with NVIDIA's learning-rate ramp (a short warm-up, a cosine ramp-down over the last quarter),
  Gaussian noise added to w that fades out over the first three quarters;
- the generator's noise inputs: by default its own constant noise maps (``noise_mode="const"``), the ones the app
  renders the result with. ``optimise_noise=True`` does what NVIDIA's projector does: StyleGAN2's ``noise_const``
  maps start random and are optimised with w, normalised after every step, under NVIDIA's noise regularisation (the
  autocorrelation of each map at every scale down to 8×8, weight 1e5). NVIDIA then throws the optimised maps away
  and renders the w with the generator's own, and so would the app (a latent holds no noise maps): the w found with
  optimised noise draws a picture much further from the target. Measured on the tiny StyleGAN2 fixture (pictures of
  seeds 0–2, 100 steps, w+), the mean squared error of the result against the target, as a fraction of the mean
  style's: 0.05–0.08 with the generator's noise, 0.27–0.59 with optimised noise;
- one w for every layer first; for ``w+`` the last `plus_fraction` of the steps refine each layer's w on its own
  (NVIDIA's projector stops at one w; per-layer refinement is the common w+ extension).

The loss is different on purpose. NVIDIA's uses LPIPS distances from a VGG16 network it downloads at run time; the
app works offline and ships no VGG weights, so the loss here is computable from the pictures alone: a mean squared
pixel error plus the same error on a pyramid of 2× box-downsampled versions of the difference (every scale down to
8×8 weighted equally), which weighs the coarse structure (layout, colour masses) that a perceptual loss also
favours, so the optimisation does not chase pixel-exact detail first. Pixels the target shows saturated (pure black
or white) accept any value beyond the saturation, since an image on disk is the generator's output clamped to
[−1, 1]. Expect faithful colours and composition and softer fine texture than an LPIPS projection gives.

The optimisation runs on a private float32 copy of G made outside inference mode (the engine's copy holds inference
tensors, which autograd cannot use, and may be half precision), on the device G is on (or `device`). Works on CPU,
CUDA and MPS; no Qt; no file access.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Generator

import numpy as np
import torch
import torch.nn.functional as F

from studio.steps import Progress

NOISE_REG_WEIGHT = 1e5  # NVIDIA's regularize_noise_weight
INITIAL_LR = 0.1  # NVIDIA's initial_learning_rate
INITIAL_NOISE_FACTOR = 0.05
NOISE_RAMP = 0.75
LR_RAMPDOWN = 0.25
LR_RAMPUP = 0.05


def prepare_target(image: np.ndarray | torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """The picture as the generator draws it: float32 [1, channels, resolution, resolution] in [−1, 1].

    `image` is (H, W) or (H, W, C) with C in 1, 3, 4: uint8 (0…255) or float in [0, 1] (values outside are clamped).
    A non-square picture is centre-cropped to a square (as NVIDIA's projector does), then resized with antialiasing;
    grey is repeated to colour, colour averaged to grey for a one-channel G, an alpha channel dropped."""
    x = torch.as_tensor(np.asarray(image))
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 2, 3, 4) or min(x.shape[0], x.shape[1]) < 1:
        raise ValueError(f"an image must be (height, width) or (height, width, channels) with 1, 3 or 4 channels, "
                         f"not {list(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    elif x.is_floating_point():
        x = x.to(torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the image holds NaN or infinite values")
    else:
        raise ValueError(f"an image must be uint8 or float, not {str(x.dtype).replace('torch.', '')}")
    if x.shape[2] in (2, 4):
        x = x[:, :, :-1]  # drop alpha
    if channels == 1 and x.shape[2] == 3:
        x = x.mean(2, keepdim=True)
    elif x.shape[2] == 1 and channels > 1:
        x = x.expand(-1, -1, channels)
    if x.shape[2] != channels:
        raise ValueError(f"the image has {x.shape[2]} channels and the generator draws {channels}")
    h, w = int(x.shape[0]), int(x.shape[1])
    s = min(h, w)
    x = x[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = x.permute(2, 0, 1)[None].contiguous()
    if s != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=s > resolution)
    return (x.clamp(0, 1) * 2 - 1).contiguous()


def private_copy(G: Any, device: torch.device | str | None = None) -> Any:
    """A float32 copy of G whose tensors are ordinary (not inference) tensors, on `device` (default: G's), with
    gradients off for its weights."""
    with torch.inference_mode(False), torch.no_grad():
        net = copy.deepcopy(G)
        dev = torch.device(device) if device is not None else next(G.parameters()).device
        net = net.to(dev, torch.float32).eval()
        for t in [*net.parameters(), *net.buffers()]:
            if t.is_inference():  # an in-place .to() that was a no-op can keep the inference flag: copy it out
                t.data = t.data.clone()
        net.requires_grad_(False)
    return net


def image_loss(synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error at full size and on every 2× box-downsampled scale of the difference down to 8×8 (equal
    weights); a target pixel at −1 or 1 accepts any value beyond it."""
    d = synth - target
    d = torch.where((target >= 1) & (d > 0), torch.zeros_like(d), d)
    d = torch.where((target <= -1) & (d < 0), torch.zeros_like(d), d)
    loss = d.square().mean()
    while d.shape[-1] >= 16:
        d = F.avg_pool2d(d, 2)
        loss = loss + d.square().mean()
    return loss


def _noise_buffers(net: Any) -> list[tuple[Any, str]]:
    return [(m, "noise_const") for m in net.synthesis.modules()
            if getattr(m, "use_noise", False) and isinstance(getattr(m, "noise_const", None), torch.Tensor)]


def _noise_regularisation(bufs: list[torch.Tensor]) -> torch.Tensor:
    reg = bufs[0].new_zeros([])
    for v in bufs:
        noise = v[None, None]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean().square()
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean().square()
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


def project(G: Any, image: np.ndarray | torch.Tensor, steps: int = 1000, mode: str = "w+",
            c: torch.Tensor | None = None, seed: int = 0, device: torch.device | str | None = None,
            w_avg_samples: int = 10_000, plus_fraction: float = 1 / 3,
            noise_regularisation: float = NOISE_REG_WEIGHT,
            optimise_noise: bool = False) -> Generator[Progress, None, torch.Tensor]:
    """Project `image` into G's w (`mode` "w": (w_dim,)) or w+ (`mode` "w+": (num_ws, w_dim)) by `steps` steps of
    optimisation; yields Progress(step, steps, message) after each (cancel points) and returns the latent, CPU
    float32. `c`: the class vector for a class-conditional G ((c_dim,) or (1, c_dim)). `seed` fixes the exploration
    noise (and with `optimise_noise` the starting noise maps), so the same call gives the same latent; the noise
    maps are NVIDIA's optimised, regularised ones only with `optimise_noise` (see the module docstring). ValueError for an unusable image,
    mode or class vector."""
    if mode not in ("w", "w+"):
        raise ValueError(f"mode must be 'w' or 'w+', not {mode!r}")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    c_dim = int(getattr(G, "c_dim", 0))
    if c_dim and (c is None or c.numel() != c_dim):
        raise ValueError(f"this generator is class-conditional: give a class vector of {c_dim} values")
    if not c_dim and c is not None and c.numel():
        raise ValueError("this generator is unconditional: it takes no class vector")
    target_cpu = prepare_target(image, int(G.img_resolution), int(G.img_channels))
    yield Progress(0, steps, "preparing the projection")
    with torch.inference_mode(False), torch.enable_grad():
        net = private_copy(G, device)
        dev = next(net.parameters()).device
        gen = torch.Generator().manual_seed(int(seed))
        target = target_cpu.to(dev)
        c_t = c.detach().reshape(1, c_dim).to(dev, torch.float32) if c_dim and c is not None else None

        # w_avg and w_std from samples, as NVIDIA's projector computes them (its seed 123)
        with torch.no_grad():
            z = torch.from_numpy(np.random.RandomState(123).randn(w_avg_samples, net.z_dim)).to(dev, torch.float32)
            ws = torch.cat([net.mapping(z[i:i + 1000], c_t.expand(len(z[i:i + 1000]), -1) if c_t is not None
                                        else None)[:, :1] for i in range(0, len(z), 1000)])
            w_avg = ws.mean(0, keepdim=True)  # [1, 1, w_dim]
            w_std = float(((ws - w_avg).square().sum() / len(ws)) ** 0.5)

        num_ws = int(net.num_ws)
        w_opt = w_avg.clone().requires_grad_(True)
        bufs: list[torch.Tensor] = []
        for module, name in (_noise_buffers(net) if optimise_noise else []):
            b = torch.randn(getattr(module, name).shape, generator=gen).to(dev).requires_grad_(True)
            setattr(module, name, b)
            bufs.append(b)
        optimizer = torch.optim.Adam([w_opt, *bufs], betas=(0.9, 0.999), lr=INITIAL_LR)
        with torch.no_grad():
            for b in bufs:
                b -= b.mean()
                b *= b.square().mean().rsqrt()
        plus_start = steps - int(round(steps * plus_fraction)) if mode == "w+" else steps
        loss_value = float("nan")
        for step in range(steps):
            if step == plus_start:  # from one w for every layer to one w per layer, Adam's state carried over
                with torch.no_grad():
                    w_plus = w_opt.detach().expand(-1, num_ws, -1).clone()
                state = optimizer.state.pop(w_opt, {})
                w_opt = w_plus.requires_grad_(True)
                optimizer.param_groups[0]["params"][0] = w_opt
                if state:
                    optimizer.state[w_opt] = {"step": state["step"],
                                              "exp_avg": state["exp_avg"].expand(-1, num_ws, -1).clone(),
                                              "exp_avg_sq": state["exp_avg_sq"].expand(-1, num_ws, -1).clone()}
            t = step / steps
            noise_scale = w_std * INITIAL_NOISE_FACTOR * max(0.0, 1.0 - t / NOISE_RAMP) ** 2
            lr_ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
            lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
            lr_ramp = lr_ramp * min(1.0, t / LR_RAMPUP)
            for group in optimizer.param_groups:
                group["lr"] = INITIAL_LR * lr_ramp
            w_noise = torch.randn(w_opt.shape, generator=gen).to(dev) * noise_scale
            ws_in = (w_opt + w_noise).expand(-1, num_ws, -1)
            synth = net.synthesis(ws_in, noise_mode="const")
            loss = image_loss(synth, target)
            if bufs and noise_regularisation:
                loss = loss + noise_regularisation * _noise_regularisation(bufs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for b in bufs:
                    b -= b.mean()
                    b *= b.square().mean().rsqrt()
            loss_value = float(loss.detach())
            stage = "w+" if step >= plus_start else "w"
            yield Progress(step + 1, steps, f"projecting into {stage}: loss {loss_value:.4f}")
        w_final = w_opt.detach().to("cpu", torch.float32)
    if mode == "w":
        return w_final[0, 0].clone()
    return w_final[0].expand(num_ws, -1).clone()

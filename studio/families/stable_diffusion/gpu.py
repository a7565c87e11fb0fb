"""Stable Diffusion on a GPU: SDPA attention, channels-last, an optional torch.compile, and a low-VRAM mode.

`place(net, device, dtype)` is what moving an SDNetwork does (SDNetwork.to calls it):
- on the CPU: the plain move and cast, nothing else (the CPU path stays bit-for-bit what it was);
- on CUDA / MPS: the move and cast (float16 / bfloat16 come from the LoadedModel's dtype), then every attention layer
  of the UNet and VAE on PyTorch's scaled-dot-product attention (diffusers' AttnProcessor2_0, its default where
  torch has SDPA: set again in case a loader changed it), the UNet and VAE in channels-last memory format, and with
  compile on, the UNet compiled in place (nn.Module.compile, so its parameter names do not change); a compile that
  fails (no compiler on the machine, an unsupported op) is dropped and the UNet runs eagerly, with a log line;
- with low VRAM on: the parts stay on the CPU (cast to `dtype`) and each is moved to the device only while it runs
  (text encoder, then UNet, then VAE), the one before moved back first: `Offload`. Slower (a copy per part per
  render) but the device holds one part at a time.

Options: the environment (LATENT_STUDIO_SD_COMPILE=1, LATENT_STUDIO_SD_LOW_VRAM=1), read when a model is moved;
off by default.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

PARTS = ("text_encoder", "unet", "vae")
VAE_METHODS = ("encode", "decode", "tiled_decode")  # the VAE is called through these, not forward


@dataclass(frozen=True)
class GpuOptions:
    compile: bool = False
    low_vram: bool = False
    channels_last: bool = True

    @classmethod
    def from_env(cls) -> "GpuOptions":
        on = lambda name: os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")  # noqa: E731
        return cls(compile=on("LATENT_STUDIO_SD_COMPILE"), low_vram=on("LATENT_STUDIO_SD_LOW_VRAM"))


def _device_of(args: tuple, kwargs: dict) -> tuple[torch.device | None, torch.dtype | None]:
    """What nn.Module.to was asked for (device, dtype), as torch reads its arguments."""
    device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
    return (torch.device(device) if device is not None else None), dtype


def place(net: Any, move: Callable[..., Any], args: tuple, kwargs: dict, options: GpuOptions | None = None) -> Any:
    """Move and cast `net` (`move` is nn.Module.to bound to it) and set it up for the device it lands on."""
    device, dtype = _device_of(args, kwargs)
    options = options or GpuOptions.from_env()
    offload: Offload | None = getattr(net, "_offload", None)
    if offload is not None:  # a new placement replaces the old one
        offload.remove()
        net._offload = None
    if device is None or device.type in ("cpu", "meta"):
        return move(*args, **kwargs)
    if options.low_vram:
        move(device="cpu", dtype=dtype)
        net._offload = Offload(offload_parts(net), device)
        return net
    move(*args, **kwargs)
    sdpa_attention(net)
    if options.channels_last:
        for part in ("unet", "vae"):
            getattr(net, part).to(memory_format=torch.channels_last)
    if options.compile:
        compile_unet(net)
    return net


def offload_parts(net: Any) -> list[torch.nn.Module]:
    """The parts the low-VRAM mode moves one at a time, in render order: the text encoder, SDXL's second one, the
    UNet, the VAE."""
    parts = [getattr(net, p) for p in PARTS]
    second = getattr(getattr(net, "xl", None), "text_encoder_2", None)
    if isinstance(second, torch.nn.Module):
        parts.insert(1, second)
    return parts


def sdpa_attention(net: Any) -> int:
    """Every attention layer of the UNet and the VAE on torch's scaled_dot_product_attention; how many were set."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    count = 0
    for part in ("unet", "vae"):
        module = getattr(net, part)
        processors = getattr(module, "attn_processors", {})
        if processors and not all(isinstance(p, AttnProcessor2_0) for p in processors.values()):
            module.set_attn_processor(AttnProcessor2_0())
        count += len(processors)
    return count


def compile_unet(net: Any, check: Callable[[Any], None] | None = None) -> bool:
    """The UNet compiled in place; False (and the UNet eager) when compiling or the first compiled call fails."""
    unet = net.unet
    try:
        unet.compile()
        (check or _first_call)(net)
        return True
    except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly instead
        unet._compiled_call_impl = None  # nn.Module.compile's switch: back to the eager forward
        log.warning("torch.compile failed for %s, running it uncompiled: %s", type(unet).__name__,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False


@torch.inference_mode()
def _first_call(net: Any) -> None:
    """One UNet call at the native size, so a compiler failure shows here and not in the middle of a render."""
    unet = net.unet
    p = next(unet.parameters())
    side = int(unet.config["sample_size"])
    x = torch.zeros(1, int(unet.config["in_channels"]), side, side, device=p.device, dtype=p.dtype)
    context = torch.zeros(1, 77, int(unet.config["cross_attention_dim"]), device=p.device, dtype=p.dtype)
    unet(x, torch.tensor([999], device=p.device), encoder_hidden_states=context)


class Offload:
    """Parts that live on the CPU and go to `device` only while one of them runs: a call to a part (its forward, or
    a VAE's encode / decode) moves the part that ran before back home, this one to the device, and the call's tensor
    arguments with it. `move(module, device)` does the moving (module.to by default)."""

    def __init__(self, parts: list[torch.nn.Module], device: torch.device, home: torch.device | str = "cpu",
                 move: Callable[[torch.nn.Module, torch.device], Any] | None = None):
        self.parts, self.device, self.home = parts, torch.device(device), torch.device(home)
        self.move = move or (lambda module, where: module.to(where))
        self.active: torch.nn.Module | None = None
        self._undo: list[Callable[[], None]] = []
        for part in parts:
            if any(hasattr(type(part), m) for m in VAE_METHODS) and hasattr(part, "decode"):
                for name in VAE_METHODS:
                    if hasattr(part, name):
                        self._wrap(part, name)
            else:
                handle = part.register_forward_pre_hook(self._hook, with_kwargs=True)
                self._undo.append(handle.remove)

    def _to_device(self, value):
        if isinstance(value, torch.Tensor):
            return value.to(self.device)
        if isinstance(value, (tuple, list)):
            return type(value)(self._to_device(v) for v in value)
        if isinstance(value, dict):
            return {k: self._to_device(v) for k, v in value.items()}
        return value

    def use(self, part: torch.nn.Module) -> None:
        if self.active is part:
            return
        if self.active is not None:
            self.move(self.active, self.home)
        self.move(part, self.device)
        self.active = part

    def _hook(self, module, args, kwargs):
        self.use(module)
        return self._to_device(args), self._to_device(kwargs)

    def _wrap(self, part: torch.nn.Module, name: str) -> None:
        method = getattr(part, name)

        def call(*args, **kwargs):
            self.use(part)
            return method(*self._to_device(args), **self._to_device(kwargs))

        setattr(part, name, call)
        self._undo.append(lambda: part.__dict__.pop(name, None))

    def remove(self) -> None:
        """Hooks off; every part back on the CPU."""
        for undo in self._undo:
            undo()
        self._undo.clear()
        if self.active is not None:
            self.move(self.active, self.home)
            self.active = None

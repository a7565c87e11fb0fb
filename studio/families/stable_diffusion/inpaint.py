"""Inpainting checkpoints: a Stable Diffusion UNet with 9 input channels (runwayml's sd-v1-5-inpainting, Stability's
512-inpainting-ema and the many models merged from them).

Beside the noisy latent (4 channels) such a UNet takes, at every step, the mask (1 channel, 1 = repaint) and the
latent of the picture with the masked part blanked (4 channels), the way diffusers' StableDiffusionInpaintPipeline
builds them:

- the mask is a picture (`mask` param: a file in the window's picker, `--set mask=FILE` on the command line), its
  centre fitted to the picture's size like the init image, read as grey and cut at half: white repaints, black keeps;
- the masked picture is the init image with the repainted part set to 0 (mid grey in −1 … 1), encoded by the VAE
  (the mean of its latent distribution, as the app encodes init images; diffusers draws a sample) and scaled;
- the mask is shrunk to the latent's size by nearest-neighbour sampling.

Without a mask the whole picture is repainted (mask of ones); without an init image the masked picture is all grey,
which is what AUTOMATIC1111 feeds an inpainting model for text-to-image. At strength 1 the walk starts from pure noise,
as diffusers' inpainting pipeline does; below 1 it starts from the init image noised to that strength.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from studio.errors import RequestError
from studio.params import INIT, Kind, ParamSpec

if TYPE_CHECKING:
    from studio.families.stable_diffusion.family import SDNetwork

MASK = "mask"
FIELD = f"params.{MASK}"


def takes_mask(unet_in_channels: int, latent_channels: int = 4) -> bool:
    """Whether a UNet with this many input channels is an inpainting UNet (latent + mask + masked latent)."""
    return unet_in_channels == 2 * latent_channels + 1


def network_takes_mask(net: SDNetwork) -> bool:
    return takes_mask(int(net.unet.config["in_channels"]), net.latent_channels)


def mask_spec() -> ParamSpec:
    return ParamSpec(MASK, Kind.IMAGE, "Mask", group=INIT, render_only=True,
                     help="Inpainting: a black-and-white picture the size of the init image; white is repainted, "
                          "black is kept")


def fit_mask(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """Any picture → the binary mask (height, width) float32 in {0, 1}: its centre cropped to the aspect and resized
    like the init image, made grey, 1 where it is at least half white."""
    from PIL import Image, ImageOps

    img = Image.fromarray(np.ascontiguousarray(picture))
    if img.size != (width, height):
        img = ImageOps.fit(img.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return (grey >= 0.5).astype(np.float32)


def _decode(text, mode: str) -> np.ndarray:
    from studio.io.images import decode_init_image

    try:
        return decode_init_image(text, mode)
    except RequestError as exc:
        raise RequestError(exc.problem.replace("init_image", MASK), field=FIELD) from None


def conditioning(net: SDNetwork, request, width: int, height: int, device, dtype) -> torch.Tensor:
    """The extra UNet input (1, 1 + C, h, w): the latent-sized mask, then the masked picture's latent."""
    mask_text, init_text = request.param(MASK), request.param("init_image")
    if mask_text is not None and init_text is None:
        raise RequestError("a mask needs an init image: the picture whose white part is repainted", field=FIELD)
    mask = fit_mask(_decode(mask_text, "RGB"), width, height) if mask_text is not None \
        else np.ones((height, width), np.float32)
    if init_text is not None:
        from studio.io.images import decode_init_image

        picture = decode_init_image(init_text, "RGB")
        if picture.shape[:2] != (height, width):
            raise RequestError(f"the init image is {picture.shape[1]}×{picture.shape[0]} pixels; this request renders "
                               f"{width}×{height}: fit it first", field="params.init_image")
        pixels = torch.from_numpy(picture.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    else:
        pixels = torch.zeros(1, 3, height, width)
    keep = torch.from_numpy(mask < 0.5)[None, None]
    masked = pixels * keep
    with torch.inference_mode():
        latent = net.vae.encode(masked.to(device, dtype)).latent_dist.mean * net.scaling_factor
    small = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None],
                                            size=(height // net.vae_scale, width // net.vae_scale))
    return torch.cat([small.to(device, dtype), latent], 1)


def unet_input(x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    """The UNet's input: the (scaled, perhaps doubled for guidance) latent, and for an inpainting UNet the mask and
    masked latent beside it, channel-wise."""
    if extra is None:
        return x
    return torch.cat([x, extra.expand(x.shape[0], -1, -1, -1)], 1)

"""Per-step previews of a Stable Diffusion walk without a VAE decode: a fixed linear map from the four latent channels
to RGB, as AUTOMATIC1111's "Approx cheap" live previews do, chosen by the VAE's latent space. No load-time cost.

Only a VAE of the published kl-f8 shape (4 latent channels, block_out_channels 128, 256, 512, 512) shares the latent
space the published factors were measured on; its `scaling_factor` tells SD 1.x / 2.x (0.18215) from SDXL (0.13025).
Any other VAE (other channel counts, other widths, tiny test VAEs) has no known factors: for those the caller fits a
map to the VAE itself (family.fit_preview_map), which costs one small VAE encode at load.
"""

from __future__ import annotations

import torch

# AUTOMATIC1111 stable-diffusion-webui, modules/sd_vae_approx.py, `cheap_approximation` (rows: latent channels L1..L4,
# columns: R, G, B; applied to the sampler's scaled latent, the result read as −1 … 1, no bias). The SD 1.x factors
# were published in https://discuss.huggingface.co/t/decoding-latents-to-rgb-without-upscaling/23204/2 and are the
# same in diffusers' community callbacks and ComfyUI's first latent_formats.SD15; SD 2.x uses the same VAE.
SD1_FACTORS = ((0.298, 0.207, 0.208),
               (0.187, 0.286, 0.173),
               (-0.158, 0.189, 0.264),
               (-0.184, -0.271, -0.473))
SDXL_FACTORS = ((0.3448, 0.4168, 0.4395),
                (-0.1953, -0.0290, 0.0250),
                (0.1074, 0.0886, -0.0163),
                (-0.3730, -0.2499, -0.2088))

KL_F8_BLOCKS = (128, 256, 512, 512)
KNOWN = {0.18215: ("sd1", SD1_FACTORS), 0.13025: ("sdxl", SDXL_FACTORS)}  # VAE scaling_factor → latent space


def latent_space(vae_config) -> str | None:
    """"sd1" (SD 1.x / 2.x) or "sdxl" for a kl-f8 VAE with a known scaling factor; None when no factors apply."""
    get = vae_config.get if isinstance(vae_config, dict) else (lambda k, d=None: getattr(vae_config, k, d))
    if int(get("latent_channels", 0) or 0) != 4 or tuple(get("block_out_channels", ()) or ()) != KL_F8_BLOCKS:
        return None
    scale = float(get("scaling_factor", 0.18215) or 0.18215)
    for known, (name, _) in KNOWN.items():
        if abs(scale - known) < 1e-6:
            return name
    return None


def known_preview_map(vae_config) -> torch.Tensor | None:
    """The (C + 1, 3) affine map (last row: the bias, zero here) for a VAE whose latent space has published factors,
    else None."""
    name = latent_space(vae_config)
    if name is None:
        return None
    factors = dict(KNOWN.values())[name]
    return torch.cat([torch.tensor(factors, dtype=torch.float32), torch.zeros(1, 3)])

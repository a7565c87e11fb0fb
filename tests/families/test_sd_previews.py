"""Per-step previews from published latent → RGB factors (no VAE encode at load) and the fitted map where none apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from sd_tiny import TINY_VAE, make_parts, make_pipeline_folder  # noqa: E402
from studio.families.stable_diffusion import family as sd_family  # noqa: E402
from studio.families.stable_diffusion.previews import (SD1_FACTORS, SDXL_FACTORS, known_preview_map,  # noqa: E402
                                                       latent_space)

KL_F8 = {"latent_channels": 4, "block_out_channels": [128, 256, 512, 512], "scaling_factor": 0.18215}


def test_the_latent_space_is_told_by_the_vae_shape_and_scaling_factor():
    assert latent_space(KL_F8) == "sd1"
    assert latent_space({**KL_F8, "scaling_factor": 0.13025}) == "sdxl"
    assert latent_space({**KL_F8, "scaling_factor": 0.5}) is None  # another latent space: fit instead
    assert latent_space({**KL_F8, "latent_channels": 16}) is None
    assert latent_space(TINY_VAE) is None  # tiny test VAEs: not the published latent space
    assert latent_space({k: v for k, v in KL_F8.items() if k != "scaling_factor"}) == "sd1"  # diffusers' default


def test_the_known_map_is_a1111s_cheap_approximation():
    """preview_image with the SD 1.x map gives what A1111's `cheap_approximation` gives: einsum over the channels,
    then (x + 1) / 2 clamped, as 8-bit colours (nearest-upscaled by the VAE's scale)."""
    from types import SimpleNamespace

    latent = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(2)) * 1.5
    for config, factors in ((KL_F8, SD1_FACTORS), ({**KL_F8, "scaling_factor": 0.13025}, SDXL_FACTORS)):
        net = SimpleNamespace(preview_map=known_preview_map(config), vae_scale=8)
        ours = sd_family.preview_image(net, latent)
        assert ours.shape == (40, 48, 3) and ours.dtype == np.uint8
        theirs = torch.einsum("lxy,lr->rxy", latent[0], torch.tensor(factors))
        theirs = (((theirs + 1) / 2).clamp(0, 1) * 255).permute(1, 2, 0).numpy()
        assert np.abs(ours[::8, ::8].astype(float) - theirs).max() <= 0.51  # rounding only
        assert np.array_equal(ours[::8, ::8], ours[7::8, 7::8])


def test_a_kl_f8_vae_loads_without_fitting(tmp_path, monkeypatch):
    """A pipeline whose VAE has the published shape gets the published factors; the VAE encoder never runs at load."""
    from diffusers import AutoencoderKL

    unet, _, text = make_parts(0)
    vae = AutoencoderKL(block_out_channels=KL_F8["block_out_channels"], latent_channels=4, layers_per_block=1,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        norm_num_groups=32, sample_size=64, scaling_factor=0.18215).eval()
    folder = make_pipeline_folder(tmp_path / "klf8", parts=(unet, vae, text))

    def no_fit(*args, **kwargs):
        raise AssertionError("the VAE encoder ran at load")

    monkeypatch.setattr(sd_family, "fit_preview_map", no_fit)
    encodes = []
    monkeypatch.setattr(AutoencoderKL, "encode", lambda self, *a, **k: encodes.append(1))
    net = sd_family.load_parts(sd_family.find_source(folder))
    assert torch.equal(net.preview_map, known_preview_map(KL_F8)) and not encodes


def test_a_vae_without_known_factors_is_still_fitted(tmp_path, monkeypatch):
    fitted = []
    real_fit = sd_family.fit_preview_map
    monkeypatch.setattr(sd_family, "fit_preview_map", lambda net: fitted.append(1) or real_fit(net))
    net = sd_family.load_parts(sd_family.find_source(make_pipeline_folder(tmp_path / "tiny")))
    assert fitted == [1] and net.preview_map.abs().sum() > 0

"""A VAE override per render (diffusers and original layouts, from the VAE folder only) and the tiled decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import _vae_original, make_parts, make_pipeline_folder  # noqa: E402
from studio.errors import RequestError, WeightsError  # noqa: E402
from studio.families.stable_diffusion.vae import decode_latents, vae_folder  # noqa: E402
from studio.io.weights import sha256_file  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.request import RenderRequest  # noqa: E402


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The tiny pipeline, the same pipeline with another VAE (the reference), and that VAE's weights."""
    root = tmp_path_factory.mktemp("sdvae")
    unet, vae, text = make_parts(0)
    other = make_parts(1)[1]
    return {"base": load_model(resolve(str(make_pipeline_folder(root / "base", parts=(unet, vae, text))))),
            "ref": load_model(resolve(str(make_pipeline_folder(root / "ref", parts=(unet, other, text))))),
            "other": {k: v.clone() for k, v in other.state_dict().items()}}


@pytest.fixture
def vaes(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_DATA", str(tmp_path / "data"))
    vae_folder().mkdir(parents=True)
    return vae_folder()


def render(model, **params):
    request = RenderRequest(model_id=model.id, seed=3, params={"prompt": "a red cat", "steps": 3, **params})
    return finish(model.family.render(model, request))[0]


def save(path, tensors):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def test_a_vae_file_in_either_layout_renders_as_a_pipeline_with_that_vae(made, vaes):
    base, ref, other = made["base"], made["ref"], made["other"]
    expected = render(ref).data
    own = render(base)
    assert not np.array_equal(own.data, expected)  # the two VAEs do draw differently
    original = _vae_original(other)  # first_stage_model.encoder.down.0.block.0 …, attention as 1×1 convolutions
    files = {"diffusers.safetensors": other, "checkpoint.safetensors": {**original, "model_ema.decay": torch.ones(1)},
             "bare.safetensors": {k.removeprefix("first_stage_model."): v for k, v in original.items()}}
    before = {k: v.clone() for k, v in base.network.vae.state_dict().items()}
    for name, tensors in files.items():
        path = save(vaes / name, tensors)
        out = render(base, vae=name)
        assert np.array_equal(out.data, expected), name
        assert out.info["vae"] == name.removesuffix(".safetensors")
        assert out.info["vae_hash"] == sha256_file(path)[:10]
    assert all(torch.equal(v, before[k]) for k, v in base.network.vae.state_dict().items())  # the model's own VAE
    again = render(base)  # switching back needs no reload
    assert np.array_equal(again.data, own.data) and "vae" not in again.info


def test_image_to_image_encodes_with_the_chosen_vae(made, vaes):
    from studio.io.images import encode_init_image

    base, ref = made["base"], made["ref"]
    save(vaes / "other.safetensors", made["other"])
    picture = np.zeros((16, 16, 3), np.uint8)
    picture[:, :8] = (230, 40, 40)
    init = {"init_image": encode_init_image(picture), "strength": 0.6}
    assert np.array_equal(render(base, vae="other.safetensors", **init).data, render(ref, **init).data)


def test_a_vae_that_does_not_fit_names_the_file_and_the_tensors(made, vaes):
    bad = dict(made["other"])
    key = next(k for k in bad if k.startswith("decoder.conv_in."))
    bad[key] = torch.zeros(3, 3)
    path = save(vaes / "wrong.safetensors", bad)
    with pytest.raises(WeightsError) as err:
        render(made["base"], vae="wrong.safetensors")
    assert str(err.value.path) == str(path) and "does not fit the model's VAE" in err.value.problem and key in err.value.problem
    save(vaes / "text.safetensors", {"text_model.embeddings.weight": torch.zeros(2, 2)})
    with pytest.raises(WeightsError, match="not a VAE"):
        render(made["base"], vae="text.safetensors")
    (vaes / "fake.safetensors").write_bytes(b"\x80\x04junk")
    with pytest.raises(WeightsError):
        render(made["base"], vae="fake.safetensors")


@pytest.mark.parametrize("name, words", [("../base.safetensors", "file name in"), ("sub/x.safetensors", "file name in"),
                                         ("vae.pt", "pickled"), ("missing.safetensors", "there: other.safetensors")])
def test_a_vae_is_named_in_the_vae_folder_only(made, vaes, name, words):
    save(vaes / "other.safetensors", made["other"])
    save(vaes.parent / "base.safetensors", made["other"])
    with pytest.raises(RequestError) as err:
        render(made["base"], vae=name)
    assert words in err.value.problem and err.value.field == "params.vae"


def test_the_decode_is_whole_below_the_tile_threshold_and_diffusers_tiling_above():
    vae = make_parts(0)[1]
    z = torch.randn(1, 4, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = vae.decode(z).sample
        assert torch.equal(decode_latents(vae, z), whole)
        tiled = decode_latents(vae, z, tile_above=32 * 32)
        assert torch.equal(tiled, vae.tiled_decode(z).sample) and tiled.shape == whole.shape
    # not exact (each tile normalises and attends over itself): measured, not hidden
    assert not torch.equal(tiled, whole) and torch.isfinite(tiled).all()

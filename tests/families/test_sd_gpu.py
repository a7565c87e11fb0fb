"""Stable Diffusion's GPU paths (gpu.py): the logic on the CPU (offload order, compile fallback, the CPU left alone),
and on a real device when one is present (marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import make_pipeline_folder, make_xl_parts, make_xl_pipeline_folder  # noqa: E402
from studio.families.stable_diffusion import gpu  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.request import RenderRequest  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_pipeline_folder(tmp_path_factory.mktemp("sdgpu") / "tiny")


def render(model, steps=3):
    request = RenderRequest(model_id=model.id, seed=5, params={"prompt": "a lighthouse", "steps": steps})
    return finish(model.family.render(model, request))[0].data


def test_on_the_cpu_a_model_is_only_moved(folder, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SD_COMPILE", "1")
    monkeypatch.setenv("LATENT_STUDIO_SD_LOW_VRAM", "1")
    monkeypatch.setattr(gpu, "compile_unet", lambda net: pytest.fail("compiled on the CPU"))
    model = load_model(resolve(str(folder)))
    assert getattr(model.network, "_offload", None) is None
    assert not model.network.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_options_come_from_the_environment(monkeypatch):
    assert gpu.GpuOptions.from_env() == gpu.GpuOptions()
    monkeypatch.setenv("LATENT_STUDIO_SD_COMPILE", "1")
    monkeypatch.setenv("LATENT_STUDIO_SD_LOW_VRAM", "yes")
    assert gpu.GpuOptions.from_env() == gpu.GpuOptions(compile=True, low_vram=True)


def test_offload_moves_one_part_at_a_time_in_render_order(folder):
    """With the moves recorded (and not made: all of it stays on the CPU), a render brings the text encoder, then
    the UNet (once, for every step), then the VAE to the device, each sending the one before home; the picture is
    the one rendered without offload."""
    model = load_model(resolve(str(folder)))
    plain = render(model)
    net = model.network
    names = {id(getattr(net, p)): p for p in gpu.PARTS}
    moves: list[tuple[str, str]] = []
    offload = gpu.Offload([getattr(net, p) for p in gpu.PARTS], torch.device("cpu"), home="meta",
                          move=lambda module, where: moves.append((names[id(module)], str(where))))
    net._texts.clear()
    try:
        assert np.array_equal(render(model), plain)
    finally:
        offload.remove()
    assert moves == [("text_encoder", "cpu"), ("text_encoder", "meta"), ("unet", "cpu"), ("unet", "meta"),
                     ("vae", "cpu"), ("vae", "meta")]  # the last: remove() sends the VAE home
    assert "decode" not in net.vae.__dict__ and not net.unet._forward_pre_hooks  # hooks gone


def test_offload_on_sdxl_moves_the_second_text_encoder_too(tmp_path):
    """SDXL's second encoder lives in net.xl: low VRAM moves it after the first, before the UNet, and the picture
    is the one rendered without offload."""
    model = load_model(resolve(str(make_xl_pipeline_folder(tmp_path / "tiny-xl", make_xl_parts(0)))))
    plain = render(model, steps=2)
    net = model.network
    parts = gpu.offload_parts(net)
    assert parts[1] is net.xl.text_encoder_2 and len(parts) == 4
    names = {id(net.text_encoder): "text_encoder", id(net.xl.text_encoder_2): "text_encoder_2",
             id(net.unet): "unet", id(net.vae): "vae"}
    moves: list[str] = []
    offload = gpu.Offload(parts, torch.device("cpu"), home="meta",
                          move=lambda module, where: moves.append(names[id(module)]) if str(where) == "cpu" else None)
    net.xl._texts.clear()  # both prompt caches: the encoders must run again
    net._texts.clear()
    try:
        assert np.array_equal(render(model, steps=2), plain)
    finally:
        offload.remove()
    # the two encoders take turns (each prompt chunk goes through both), then the UNet once, then the VAE
    assert moves[:2] == ["text_encoder", "text_encoder_2"] and moves[-2:] == ["unet", "vae"]
    assert set(moves[:-2]) == {"text_encoder", "text_encoder_2"}


def test_offload_really_moves_the_part_and_its_arguments():
    """CPU as home, the meta device as the target (meta tensors hold no values: only where things are is checked):
    the part called runs on the target with its tensor arguments, positional and keyword; the other stays home."""
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)
    offload = gpu.Offload([a, b], torch.device("meta"))
    out = a(torch.ones(1, 3))
    assert out.device.type == "meta" and a.weight.device.type == "meta" and b.weight.device.type == "cpu"
    assert a(input=torch.ones(1, 3)).device.type == "meta"
    offload.active = None  # a's values were left on meta: no way home to test
    offload.remove()
    assert not a._forward_pre_hooks and not b._forward_pre_hooks


def test_a_failed_compile_leaves_the_unet_eager(folder, caplog):
    model = load_model(resolve(str(folder)))
    net = model.network
    plain = render(model)

    def broken(net):
        raise RuntimeError("no C compiler found\nmore detail")

    assert gpu.compile_unet(net, check=broken) is False
    assert net.unet._compiled_call_impl is None and "no C compiler found" in caplog.text
    assert np.array_equal(render(model), plain)
    assert gpu.compile_unet(net, check=lambda net: None) is True
    assert net.unet._compiled_call_impl is not None
    net.unet._compiled_call_impl = None


def test_sdpa_is_every_attention_layers_processor(folder):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    net = load_model(resolve(str(folder))).network
    net.unet.set_attn_processor(AttnProcessor())
    count = gpu.sdpa_attention(net)
    processors = {**net.unet.attn_processors, **net.vae.attn_processors}
    assert count == len(processors) > 0 and all(isinstance(p, AttnProcessor2_0) for p in processors.values())


def _gpu() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "mps")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_on_a_gpu_half_precision_renders_close_to_float32(folder, dtype):
    cpu = render(load_model(resolve(str(folder))))
    model = load_model(resolve(str(folder)), _gpu(), dtype)
    assert model.network.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    out = render(model)
    assert np.abs(out.astype(float) - cpu).mean() < 3 and np.abs(out.astype(float) - cpu).max() <= 40


@pytest.mark.gpu
def test_on_a_gpu_low_vram_keeps_one_part_on_the_device(folder, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SD_LOW_VRAM", "1")
    plain = render(load_model(resolve(str(folder)), _gpu(), torch.float32))
    model = load_model(resolve(str(folder)), _gpu(), torch.float32)
    net = model.network
    assert all(next(getattr(net, p).parameters()).device.type == "cpu" for p in gpu.PARTS)
    out = render(model)
    on_device = [p for p in gpu.PARTS if next(getattr(net, p).parameters()).device.type != "cpu"]
    assert on_device == ["vae"] and np.abs(out.astype(float) - plain).max() <= 1


@pytest.mark.gpu
def test_on_a_gpu_compile_renders_the_same_picture(folder, monkeypatch):
    plain = render(load_model(resolve(str(folder)), _gpu(), torch.float32))
    monkeypatch.setenv("LATENT_STUDIO_SD_COMPILE", "1")
    out = render(load_model(resolve(str(folder)), _gpu(), torch.float32))
    assert np.abs(out.astype(float) - plain).max() <= 2

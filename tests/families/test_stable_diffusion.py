"""Stable Diffusion through diffusers (studio.families.stable_diffusion, studio.families.stable_diffusion.files): CLIP's tokenizer
from the shipped BPE file, the shipped SD 1.x configs, tiny pipelines made here (folder and single file) rendered
with every sampler, checked against diffusers' own pipeline, image-to-image, offline loading, and clear errors for
incomplete folders, pickles and files that are not SD 1.x checkpoints."""

from __future__ import annotations

import json
import shutil
import socket

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import (make_parts, make_pipeline_folder, write_configs, write_single_file)  # noqa: E402
from studio.cli import main  # noqa: E402
from studio.errors import ManifestError, RequestError, StudioError, WeightsError  # noqa: E402
from studio.families import get_family  # noqa: E402
from studio.families.base import LoadedModel  # noqa: E402
from studio.steps import Preview  # noqa: E402
from studio.nets.samplers import SAMPLERS, Schedule, make_sampler  # noqa: E402
from studio.families.stable_diffusion.files import (ARCHITECTURES, byte_symbols, checkpoint_architecture, clip_vocabulary,  # noqa: E402
                                      config_folder, find_source, require_diffusers)
from studio.families.stable_diffusion.family import load_parts, source_manifest  # noqa: E402
from studio.families.stable_diffusion.schedulers import SD_SAMPLERS  # noqa: E402
from studio.library import load_model, resolve, scan  # noqa: E402
from studio.params import Capability, Kind  # noqa: E402
from studio.request import CORE_FIELDS, RenderRequest  # noqa: E402

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny pipeline folder, its config folder and the same weights as one original-layout file."""
    root = tmp_path_factory.mktemp("sd")
    parts = make_parts(0)
    return {"parts": parts, "folder": make_pipeline_folder(root / "tiny-pipe", parts=parts),
            "config": write_configs(root / "tiny-config", parts),
            "file": write_single_file(root / "tiny.safetensors", parts), "root": root}


@pytest.fixture(scope="module")
def model(tiny):
    return load_model(resolve(str(tiny["folder"])))


def request(model, **changes):
    """Seed 3, the prompt, 4 steps, and `changes`: core fields by name, the rest params (None leaves one unset)."""
    fields = {"seed": 3, "prompt": PROMPT, "steps": 4, **changes}
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return RenderRequest(model_id=model.id, params={k: v for k, v in fields.items() if v is not None}, **core)


# --- the tokenizer and the shipped configs --------------------------------------------------------------------------


def test_clip_vocabulary_from_the_shipped_bpe_file():
    vocab, merges = clip_vocabulary()
    assert len(vocab) == 49408 and len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    symbols = byte_symbols()
    assert len(set(symbols)) == 256 and symbols[0] == "!" and vocab["a</w>"] == 320


def test_the_tokenizer_gives_clips_own_ids(tmp_path):
    require_diffusers()
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(config_folder("sd-v1", tmp_path) / "tokenizer"), local_files_only=True)
    # CLIP's published ids: a=320, photo=1125, of=539, cat=2368
    assert tok(PROMPT).input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("A PHOTO of a Cat").input_ids == tok(PROMPT).input_ids  # CLIP lower-cases
    text = "émoji 🐱, naïve café"
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True).replace(" ,", ",") == text
    assert tok.pad_token_id == 49407 and tok.model_max_length == 77


def test_the_shipped_sd1_configs_build_networks_of_sd1s_size(tmp_path):
    """The written-down numbers give exactly SD 1.x's parameter counts (built on the meta device: no memory)."""
    require_diffusers()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = config_folder("sd-v1", tmp_path)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, text)]
    assert counts == [859_520_964, 83_653_863, 123_060_480]
    assert ARCHITECTURES["sd-v1"].image_size == 512
    assert config_folder("sd-v1", tmp_path) == folder  # written once


# --- rendering ---------------------------------------------------------------------------------------------------------


def test_a_pipeline_folder_opens_directly_and_is_found_in_a_models_folder(tiny):
    entry = resolve(str(tiny["folder"]))
    m = entry.manifest
    assert entry.ok and m.family == "stable-diffusion" and entry.id == "tiny-pipe"
    assert (m.output["width"], m.output["height"], m.output["channels"]) == (16, 16, 3)
    assert m.latent.shape == (4, 8, 8)
    assert Capability.IMG2IMG | Capability.ANY_SIZE | Capability.ITERATE in entry.capabilities
    table = entry.parameters  # a negative prompt, a choice of samplers, free text (no alphabet)
    assert table.get("negative_prompt").kind is Kind.TEXT and table.get("sampler").kind is Kind.CHOICE
    assert set(table.get("sampler").choice_values()) == set(SD_SAMPLERS) > set(SAMPLERS)  # and Euler ancestral
    assert table.get("prompt").kind is Kind.TEXT and table.get("prompt").charset == ""
    assert table.get("width").step == table.get("height").step == 2  # the tiny VAE's scale (8 for SD 1.x)
    assert table.default("width") == 16 and table.get("width").range == (16, 2048)
    found = {e.id: e for e in scan([tiny["root"]])}
    assert found["tiny-pipe"].ok
    assert not found["tiny-config"].ok and "no safetensors weights" in str(found["tiny-config"].error)


@pytest.mark.parametrize("sampler", SD_SAMPLERS)
def test_every_sampler_renders_with_previews_and_is_reproducible(model, sampler):
    req = request(model, sampler=sampler, eta=1.0 if sampler == "ddim" else None)
    out, seen = finish(model.family.render(model, req))
    assert out.kind == "image" and out.data.shape == (16, 16, 3) and out.data.dtype == np.uint8
    previews = [p for p in seen if isinstance(p, Preview)]
    assert len(previews) == 4 and all(p.output.data.shape == (16, 16, 3) for p in previews)
    assert out.info["sampler"] == sampler and out.info["steps"] == 4
    again, _ = finish(model.family.render(model, req))
    assert np.array_equal(out.data, again.data)


def test_prompt_negative_prompt_guidance_and_seed_all_matter(model):
    base = finish(model.family.render(model, request(model)))[0].data.astype(int)
    for change in ({"prompt": "a red house"}, {"negative_prompt": "blurry"}, {"guidance": 2.0}, {"seed": 4}):
        other = finish(model.family.render(model, request(model, **change)))[0].data
        assert np.abs(base - other).max() > 0, change


def test_latent_tools_work_on_the_initial_noise(model):
    fam = model.family
    z = fam.latent(model, request(model))
    assert z.shape == (4, 8, 8)
    explicit = request(model, latent=tuple(z.flatten().tolist()))
    assert torch.equal(fam.latent(model, explicit), z)
    assert np.array_equal(finish(fam.render(model, explicit))[0].data, finish(fam.render(model, request(model)))[0].data)
    mixed = fam.latent(model, request(model).with_param("mix_seed", 9).with_param("mix_strength", 0.5))
    assert 0.8 < float(mixed.std()) < 1.2 and not torch.equal(mixed, z)  # a slerp keeps the noise's spread
    with pytest.raises(RequestError, match="at this size needs 256"):
        fam.latent(model, request(model, latent=(0.0,) * 10))


def test_other_sizes_and_their_limits(model):
    out = finish(model.family.render(model, request(model, width=24, height=16)))[0]
    assert out.data.shape == (16, 24, 3)
    assert model.family.latent(model, request(model, width=24, height=16)).shape == (4, 8, 12)
    with pytest.raises(RequestError, match="multiple of 2"):
        finish(model.family.render(model, request(model, width=17)))
    with pytest.raises(RequestError, match="between 16 and 2048, got 14") as info:  # fewer than 8 cells
        model.family.latent(model, request(model, width=18, height=14))
    assert info.value.field == "height"
    with pytest.raises(RequestError, match="params.guidance: must be between 0 and 30, got 99") as info:
        finish(model.family.render(model, request(model, guidance=99.0)))
    assert info.value.field == "params.guidance"
    table = model.table  # the size specs say what `size` checks: whole cells of the VAE's 2 pixels, 8 at least
    assert table.get("width").step == 2 and table.get("width").range == (16, 2048)
    assert table.check(request(model, width=24, height=16)).width == 24


def test_the_walk_matches_diffusers_own_pipeline(tiny, model):
    """The same parts, noise and settings through diffusers' StableDiffusionPipeline with a DDIM scheduler made from
    the model's own scheduler config (leading spacing from 1, final ᾱ = ᾱ_0): the same picture to within rounding
    (every sampler: tests/families/test_sd_schedulers.py)."""
    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline

    unet, vae, text = tiny["parts"]
    tokenizer = model.network.tokenizer
    sched = DDIMScheduler.from_config(PNDMScheduler.from_config(
        json.loads((tiny["folder"] / "scheduler" / "scheduler_config.json").read_text())).config)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    req = request(model, sampler="ddim", eta=0.0, steps=6, negative_prompt="blurry", guidance=5.0)
    noise = model.family.latent(model, req)[None]
    ref = pipe(PROMPT, negative_prompt="blurry", num_inference_steps=6, guidance_scale=5.0, latents=noise.clone(),
               output_type="np", height=16, width=16).images[0]
    ours = finish(model.family.render(model, req))[0].data
    assert np.abs(ours.astype(float) - ref * 255).max() <= 1.0


def test_the_preview_map_is_fitted_to_the_vae():
    """With a VAE whose encoder is an exact linear map of each cell's mean colour, the fitted latent → RGB map
    inverts it: the cheap preview of an encoded picture is that picture's cell colours."""
    from types import SimpleNamespace

    from studio.families.stable_diffusion.family import fit_preview_map, preview_image

    mix = torch.tensor([[0.5, -1.0, 0.2], [1.0, 0.3, -0.4], [-0.2, 0.8, 1.1], [0.7, 0.7, 0.7]])

    class LinearVAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def encode(self, x):
            cells = torch.nn.functional.avg_pool2d(x, 2)
            mean = torch.einsum("oc,bchw->bohw", mix, cells) + 0.1
            return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean / 0.5))

    net = SimpleNamespace(vae=LinearVAE(), vae_scale=2, image_size=16, latent_channels=4, scaling_factor=0.5)
    net.preview_map = fit_preview_map(net)
    picture = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    latent = net.vae.encode(picture).latent_dist.mean * 0.5
    cells = torch.nn.functional.avg_pool2d(picture, 2)[0].permute(1, 2, 0)
    preview = preview_image(net, latent)[::2, ::2].astype(np.float32) / 127.5 - 1
    assert np.abs(preview - cells.numpy()).max() < 0.01


def test_image_to_image_keeps_more_of_the_picture_at_low_strength(model):
    fam = model.family
    picture = np.zeros((40, 60, 3), np.uint8)
    picture[:, :30] = (230, 40, 40)
    fitted = fam.init_picture_for(model.manifest, request(model), picture)
    assert fitted.shape == (16, 16, 3)
    from studio.io.images import encode_init_image

    init = encode_init_image(fitted)
    low = finish(fam.render(model, request(model, init_image=init, strength=0.25)))[0]
    high = finish(fam.render(model, request(model, init_image=init, strength=1.0)))[0]
    assert low.info["start_step"] == 3 and high.info["start_step"] == 0
    with torch.inference_mode():  # what the VAE alone makes of the picture: low strength stays near it
        net = model.network
        x = torch.from_numpy(fitted.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        back = net.vae.decode(net.vae.encode(x).latent_dist.mean).sample[0].permute(1, 2, 0).numpy()
    back = (back.clip(-1, 1) + 1) * 127.5
    assert np.abs(low.data - back).mean() < np.abs(high.data - back).mean()
    with pytest.raises(RequestError, match="renders 24×16: fit it first"):
        finish(fam.render(model, request(model, init_image=init, strength=0.5, width=24)))
    with pytest.raises(RequestError, match="needs an init image"):
        finish(fam.render(model, request(model, strength=0.5)))


def test_v_prediction_is_turned_into_noise_for_every_sampler():
    """ε = √ᾱ·v + √(1−ᾱ)·x_t with ᾱ of the network's input, whatever the sampler scales it by."""
    schedule = Schedule.make("scaled_linear", 1000, 0.00085, 0.012)
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 2, 2, generator=gen), torch.randn(1, 4, 2, 2, generator=gen)
    for name in SD_SAMPLERS:
        s = make_sampler(name, schedule, 10)
        for i in (0, 4, 9):
            inp = s.scale_input(s.add_noise(x0, eps, i), i)
            a = s.alpha_bar(i)
            assert torch.allclose(inp, a**0.5 * x0 + (1 - a) ** 0.5 * eps, atol=1e-5), (name, i)
            v = a**0.5 * eps - (1 - a) ** 0.5 * x0
            assert torch.allclose(a**0.5 * v + (1 - a) ** 0.5 * inp, eps, atol=1e-5), (name, i)


def test_moving_the_model_drops_cached_prompts(model):
    net = model.network
    net.text_embeddings("cached")
    assert any(key[0] == "cached" for key in net._texts)  # keyed by prompt, clip skip and the embeddings found
    model.to("cpu", torch.float64)
    try:
        assert not any(key[0] == "cached" for key in net._texts)
        assert net.text_embeddings("cached")[0].dtype == torch.float64
    finally:
        model.to("cpu", torch.float32)


# --- single files ------------------------------------------------------------------------------------------------------


def test_a_single_file_with_its_config_renders_what_the_folder_renders(tiny, model):
    source = find_source(tiny["file"], str(tiny["config"]))
    manifest = source_manifest(source)
    fam = get_family("stable-diffusion")
    single = LoadedModel(manifest, fam, load_parts(source), "x", torch.device("cpu"), torch.float32)
    req = request(model, sampler="euler")
    assert np.array_equal(finish(fam.render(single, req))[0].data, finish(fam.render(model, req))[0].data)


def test_a_single_file_is_recognised_as_sd1_and_gets_the_shipped_config(tiny):
    assert checkpoint_architecture(tiny["file"]) == "sd-v1"
    entry = resolve(str(tiny["file"]))
    assert entry.ok and entry.manifest.architecture["config"] == "sd-v1"
    assert entry.manifest.output["width"] == 512 and entry.manifest.latent.shape == (4, 64, 64)
    # tiny weights do not fit SD 1.x's shapes: a clear error naming the file, no crash
    with pytest.raises(WeightsError) as info:
        load_model(entry)
    assert str(tiny["file"]) in str(info.value) and "cannot load the unet" in str(info.value)


def test_loading_fetches_nothing(tiny, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading a local model")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    source = find_source(tiny["file"], str(tiny["config"]))
    assert load_parts(source).image_size == 16
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


# --- bad input ---------------------------------------------------------------------------------------------------------


def test_incomplete_folders_say_what_is_missing(tiny, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny["folder"], broken)
    shutil.rmtree(broken / "unet")
    (broken / "tokenizer" / "merges.txt").unlink()
    with pytest.raises(ManifestError) as info:
        resolve(str(broken))
    assert "unet/ is missing" in str(info.value)
    assert "tokenizer/ has neither tokenizer.json nor vocab.json with merges.txt" in str(info.value)
    assert str(broken) in str(info.value)


def test_pickled_parts_are_refused_not_loaded(tiny, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny["folder"], pickled)
    weights = pickled / "vae" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    (pickled / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(ManifestError, match="only diffusion_pytorch_model.bin: pickles are never loaded"):
        resolve(str(pickled))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(WeightsError, match="never loads pickles"):
        find_source(ckpt)


def test_a_broken_model_index_and_other_pipelines_are_named(tiny, tmp_path):
    bad = tmp_path / "bad-index"
    shutil.copytree(tiny["folder"], bad)
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(ManifestError, match="model_index.json is not readable JSON"):
        find_source(bad)
    (bad / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ManifestError, match="a FluxPipeline folder"):
        find_source(bad)


def test_files_that_are_not_sd1_checkpoints_are_named(tmp_path):
    from safetensors.torch import save_file

    lora = tmp_path / "style-lora.safetensors"
    save_file({"lora_unet_down_blocks_0.alpha": torch.ones(1)}, str(lora))
    with pytest.raises(WeightsError, match="not a Stable Diffusion checkpoint.*not LoRAs"):
        find_source(lora)
    xl = tmp_path / "xl.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.ones(1),
               "conditioner.embedders.1.model.ln_final.weight": torch.ones(1)}, str(xl))
    with pytest.raises(WeightsError, match="SDXL"):
        find_source(xl)
    v2 = tmp_path / "v2.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.ones(1),
               "cond_stage_model.model.token_embedding.weight": torch.ones(1)}, str(v2))
    assert find_source(v2).config == "sd-v2-v"  # opened since issue 18 (tests/families/test_sd_files_today.py)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 5)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        find_source(junk)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(WeightsError, match="header length is impossible"):
        find_source(huge)


def test_missing_extra_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_diffusers(name, *args, **kwargs):
        if name == "diffusers" or name.startswith("diffusers."):
            raise ImportError("No module named 'diffusers'", name="diffusers")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_diffusers)
    with pytest.raises(StudioError, match=r"pip install 'latent-studio\[diffusers\]'"):
        require_diffusers()


# --- the command line ------------------------------------------------------------------------------------------------


def test_render_a_pipeline_folder_from_the_command_line(tiny, tmp_path, capsys):
    out = tmp_path / "cat.png"
    code = main(["render", "--model", str(tiny["folder"]), "--prompt", PROMPT, "--negative", "blurry",
                 "--set", "steps=3", "--set", "sampler=euler", "--seed", "7", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    from studio.export.image import read_request

    stored = read_request(out)
    assert stored.param("prompt") == PROMPT and stored.param("negative_prompt") == "blurry"
    assert stored.model_id == "tiny-pipe" and stored.param("steps") == 3 and stored.param("sampler") == "euler"
    assert len(stored.model_hash) == 64
    again = tmp_path / "again.png"
    assert main(["render", "--model", str(tiny["folder"]), "--from", str(out), "--out", str(again)]) == 0
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_renders_on_cuda_in_float16(tiny):
    model = load_model(resolve(str(tiny["folder"])), "cuda", torch.float16)
    out = finish(model.family.render(model, request(model)))[0]
    cpu = finish(model.family.render(load_model(resolve(str(tiny["folder"]))), request(model)))[0]
    assert out.data.shape == (16, 16, 3) and np.abs(out.data.astype(int) - cpu.data).mean() < 8


def test_a_pickled_sd_checkpoint_is_converted_without_running_it(tiny, tmp_path, capsys):
    from safetensors.torch import load_file

    tensors = load_file(str(tiny["file"]))
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": tensors, "global_step": 7}, ckpt)
    with pytest.raises(WeightsError, match="latent-studio import tiny.ckpt --sd"):
        find_source(ckpt)
    assert main(["import", str(ckpt), "--sd"]) == 0, capsys.readouterr().err
    converted = tmp_path / "tiny.safetensors"
    assert converted.is_file() and checkpoint_architecture(converted) == "sd-v1"
    assert set(load_file(str(converted))) == set(tensors)
    assert main(["import", str(ckpt), "--sd"]) == 1 and "already there" in capsys.readouterr().err
    assert main(["import", str(ckpt)]) == 1 and "--like MODEL" in capsys.readouterr().err

    class Payload:  # what a malicious checkpoint would run on loading: it must not
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": tensors, "hook": Payload()}, evil)
    assert main(["import", str(evil), "--sd", "--out", str(tmp_path / "evil.safetensors")]) == 1
    assert "needs code to load" in capsys.readouterr().err and not (tmp_path / "pwned").exists()


def test_a_v_prediction_pipeline_renders(tiny, tmp_path, model):
    folder = tmp_path / "v-pipe"
    shutil.copytree(tiny["folder"], folder)
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "v_prediction"}))
    v_model = load_model(resolve(str(folder)))
    assert v_model.network.prediction == "v_prediction"
    out = finish(v_model.family.render(v_model, request(v_model)))[0].data
    assert out.shape == (16, 16, 3) and not np.array_equal(out, finish(model.family.render(model, request(model)))[0].data)
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "sample"}))
    with pytest.raises(ManifestError, match="unsupported prediction_type 'sample'"):
        load_model(resolve(str(folder)))

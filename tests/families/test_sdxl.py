"""SDXL base pipelines (studio.families.stable_diffusion.sdxl): a tiny SDXL pipeline made here from configs (two
CLIP text encoders, a UNet with SDXL's "text_time" added embedding) renders what diffusers' StableDiffusionXLPipeline
renders from the same parts, noise and scheduler, with each sampler; the same weights written as one file in the
original layout render the same picture; the shipped SDXL configs are SDXL base's size; bad files are named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import (TINY_XL_TEXT_2, make_xl_parts, make_xl_pipeline_folder, write_xl_configs,  # noqa: E402
                     write_xl_single_file)
from studio.cli import main  # noqa: E402
from studio.errors import ManifestError, WeightsError  # noqa: E402
from studio.families.base import LoadedModel  # noqa: E402
from studio.families.stable_diffusion import sdxl  # noqa: E402
from studio.families.stable_diffusion.family import load_parts, source_manifest  # noqa: E402
from studio.families.stable_diffusion.files import (ARCHITECTURES, checkpoint_architecture, config_folder,  # noqa: E402
                                                    find_source, require_diffusers)
from studio.library import load_model, resolve  # noqa: E402
from studio.request import CORE_FIELDS, RenderRequest  # noqa: E402

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny SDXL pipeline folder, its config folder, the same weights as one original-layout file, and a folder
    whose model_index says not to zero the empty negative prompt."""
    root = tmp_path_factory.mktemp("sdxl")
    parts = make_xl_parts(0)
    return {"parts": parts, "folder": make_xl_pipeline_folder(root / "tiny-xl", parts),
            "plain": make_xl_pipeline_folder(root / "tiny-xl-plain", parts, force_zeros=False),
            "config": write_xl_configs(root / "tiny-xl-config", parts),
            "file": write_xl_single_file(root / "tiny-xl.safetensors", parts), "root": root}


@pytest.fixture(scope="module")
def model(tiny):
    return load_model(resolve(str(tiny["folder"])))


def request(model, **changes):
    """Seed 3, the prompt, 4 steps, and `changes`: core fields by name, the rest params (None leaves one unset)."""
    fields = {"seed": 3, "prompt": PROMPT, "steps": 4, **changes}
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return RenderRequest(model_id=model.id, params={k: v for k, v in fields.items() if v is not None}, **core)


def diffusers_pipeline(tiny, model, sampler: str, folder_key: str = "folder"):
    """diffusers' own SDXL pipeline over the same parts, its scheduler built from the folder's scheduler config."""
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler, StableDiffusionXLPipeline)

    config = json.loads((tiny[folder_key] / "scheduler" / "scheduler_config.json").read_text())
    cls = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpmpp": DPMSolverMultistepScheduler,
           "euler_a": EulerAncestralDiscreteScheduler}[sampler]
    unet, vae, text, text_2 = tiny["parts"]
    net = model.network
    force = json.loads((tiny[folder_key] / "model_index.json").read_text())["force_zeros_for_empty_prompt"]
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text_2, tokenizer=net.tokenizer,
                                     tokenizer_2=net.xl.tokenizer_2, unet=unet, scheduler=cls.from_config(config),
                                     force_zeros_for_empty_prompt=force)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    """Within 2/255 of diffusers' picture (its float output scaled to 0…255)."""
    assert ours.shape == ref.shape
    assert np.abs(ours.astype(np.float64) - ref * 255).max() <= 2.0


# --- the shipped configs ------------------------------------------------------------------------------------------


def test_the_shipped_sdxl_configs_build_networks_of_sdxl_bases_size(tmp_path):
    """SDXL base's parameter counts (UNet 2.57 G, CLIP ViT-L 123 M, OpenCLIP bigG with projection 695 M, VAE 84 M),
    built on the meta device; a 1024² default; both tokenizers written (the second pads with "!")."""
    require_diffusers()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = config_folder("sdxl", tmp_path)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2")))
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, text, text_2)]
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    assert ARCHITECTURES["sdxl"].image_size == 1024
    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    tok_2 = CLIPTokenizer.from_pretrained(str(folder / "tokenizer_2"), local_files_only=True)
    assert tok(PROMPT).input_ids == tok_2(PROMPT).input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.pad_token_id == 49407 and tok_2.pad_token_id == 0  # "!" is token 0
    assert sdxl.is_xl_folder(folder)


# --- rendering against diffusers ----------------------------------------------------------------------------------


def test_an_sdxl_folder_opens_at_its_own_size(tiny, model):
    m = model.manifest
    assert m.family == "stable-diffusion" and (m.output["width"], m.output["height"]) == (16, 16)
    assert m.latent.shape == (4, 8, 8)
    net = model.network
    assert net.xl is not None and net.xl.force_zeros
    context, parsed = net.text_embeddings(PROMPT)  # both encoders' penultimate states side by side
    assert context.shape == (1, 77, 32 + TINY_XL_TEXT_2["hidden_size"]) and parsed.tokens < 75


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpmpp"])
def test_an_sdxl_folder_renders_what_diffusers_renders(tiny, model, sampler):
    """A negative prompt, guidance 5, and a picture wider than tall (the size conditions are (height, width))."""
    req = request(model, sampler=sampler, negative_prompt="blurry", guidance=5.0, width=24, height=16)
    noise = model.family.latent(model, req)[None]
    ref = diffusers_pipeline(tiny, model, sampler)(
        PROMPT, negative_prompt="blurry", num_inference_steps=4, guidance_scale=5.0, latents=noise.clone(),
        output_type="np", height=16, width=24).images[0]
    out = finish(model.family.render(model, req))[0]
    assert out.data.shape == (16, 24, 3)
    assert_close(out.data, ref)


@pytest.mark.parametrize("sampler, schedule", [("euler_a", "auto"), ("dpmpp", "karras")])
def test_euler_a_and_dpmpp_2m_karras_render_what_diffusers_renders_on_sdxl(tiny, model, sampler, schedule):
    """A1111's most used samplers on SDXL: Euler a's step noise from the seed's generator after the initial noise (as
    diffusers' pipeline draws both from `generator`), DPM++ 2M with Karras σs."""
    req = request(model, sampler=sampler, schedule=schedule, negative_prompt="blurry", guidance=5.0)
    pipe = diffusers_pipeline(tiny, model, sampler)
    if schedule == "karras":
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, use_karras_sigmas=True)
    ref = pipe(PROMPT, negative_prompt="blurry", num_inference_steps=4, guidance_scale=5.0, output_type="np",
               generator=torch.Generator().manual_seed(req.seed), height=16, width=16).images[0]
    out = finish(model.family.render(model, req))[0]
    assert_close(out.data, ref)
    other = finish(model.family.render(model, request(model, sampler=sampler, schedule=schedule, seed=req.seed + 1,
                                                      negative_prompt="blurry", guidance=5.0)))[0]
    assert np.abs(other.data.astype(np.float64) - ref * 255).max() > 2.0  # the comparison can fail


def test_an_empty_negative_prompt_is_zeros_as_in_diffusers(tiny, model):
    """SDXL base says force_zeros_for_empty_prompt: no negative prompt means a zero context and pooled embedding.
    A folder that says otherwise encodes the empty text instead; both as diffusers does, and the two differ."""
    req = request(model, sampler="euler", guidance=6.0)
    noise = model.family.latent(model, req)[None]
    ours = finish(model.family.render(model, req))[0].data
    ref = diffusers_pipeline(tiny, model, "euler")(PROMPT, num_inference_steps=4, guidance_scale=6.0,
                                                   latents=noise.clone(), output_type="np", height=16,
                                                   width=16).images[0]
    assert_close(ours, ref)
    plain = load_model(resolve(str(tiny["plain"])))
    assert not plain.network.xl.force_zeros
    ours_plain = finish(plain.family.render(plain, request(plain, sampler="euler", guidance=6.0)))[0].data
    ref_plain = diffusers_pipeline(tiny, plain, "euler", "plain")(
        PROMPT, num_inference_steps=4, guidance_scale=6.0, latents=noise.clone(), output_type="np", height=16,
        width=16).images[0]
    assert_close(ours_plain, ref_plain)
    assert np.abs(ours.astype(int) - ours_plain).max() > 0


def test_without_guidance_only_the_prompt_is_encoded(tiny, model):
    req = request(model, sampler="ddim", guidance=1.0)
    noise = model.family.latent(model, req)[None]
    ref = diffusers_pipeline(tiny, model, "ddim")(PROMPT, num_inference_steps=4, guidance_scale=1.0,
                                                  latents=noise.clone(), output_type="np", height=16,
                                                  width=16).images[0]
    assert_close(finish(model.family.render(model, req))[0].data, ref)


def test_the_added_conditions_follow_diffusers_layout(model):
    """time_ids = original (h, w), crop (top, left), target (h, w); [prompt, negative] rows when guided."""
    net = model.network
    context, added = net.xl.conditions(net, PROMPT, "", True, (16, 24), original=(32, 48), crop=(2, 4))
    assert context.shape[0] == 2 and torch.equal(context[1], torch.zeros_like(context[1]))
    assert added["time_ids"].tolist() == [[32, 48, 2, 4, 16, 24]] * 2
    assert added["text_embeds"].shape == (2, TINY_XL_TEXT_2["projection_dim"])
    assert torch.equal(added["text_embeds"][1], torch.zeros(TINY_XL_TEXT_2["projection_dim"]))
    context, added = net.xl.conditions(net, PROMPT, "", False, (16, 16))
    assert context.shape[0] == 1 and added["time_ids"].tolist() == [[16, 16, 0, 0, 16, 16]]


def test_size_and_crop_conditions_are_parameters_and_render_as_in_diffusers(tiny, model):
    """original_width/height and crop_left/top: SDXL models only; diffusers' original_size and crops_coords_top_left."""
    from pathlib import Path

    from studio.families.stable_diffusion.files import Source

    table = model.table
    assert table.default("original_width") == 0 and table.get("original_width").range == (0, 8192)
    sd1 = source_manifest(Source(Path("/nowhere/sd1.safetensors"), "file", "sd-v1", ()))
    assert not sdxl.size_specs(sd1) and len(sdxl.size_specs(resolve(str(tiny["file"])).manifest)) == 4
    req = request(model, sampler="euler", guidance=5.0, negative_prompt="blurry", original_width=48,
                  original_height=32, crop_left=4, crop_top=2)
    noise = model.family.latent(model, req)[None]
    ref = diffusers_pipeline(tiny, model, "euler")(
        PROMPT, negative_prompt="blurry", num_inference_steps=4, guidance_scale=5.0, latents=noise.clone(),
        output_type="np", height=16, width=16, original_size=(32, 48), crops_coords_top_left=(2, 4)).images[0]
    ours = finish(model.family.render(model, req))[0].data
    assert_close(ours, ref)
    plain = finish(model.family.render(model, request(model, sampler="euler", guidance=5.0,
                                                      negative_prompt="blurry")))[0].data
    assert np.abs(ours.astype(int) - plain).max() > 0


def test_moving_the_model_drops_cached_prompts(model):
    net = model.network
    net.text_embeddings("cached xl")
    assert any(key[0] == "cached xl" for key in net.xl._texts)
    model.to("cpu", torch.float64)
    try:
        assert not any(key[0] == "cached xl" for key in net.xl._texts)
        assert net.text_embeddings("cached xl")[0].dtype == torch.float64
        _, added = net.xl.conditions(net, PROMPT, "", True, (16, 16))
        assert added["time_ids"].dtype == added["text_embeds"].dtype == torch.float64
    finally:
        model.to("cpu", torch.float32)


@pytest.mark.gpu
def test_an_sdxl_model_renders_on_the_gpu_in_float32_and_float16(model):
    """Every SDXL tensor (both encoders, pooled text, time ids) follows the model to the device and dtype."""
    device = "cuda" if torch.cuda.is_available() else "mps"
    req = request(model, sampler="euler", guidance=5.0, negative_prompt="blurry", width=24, height=16)
    expected = finish(model.family.render(model, req))[0].data.astype(int)
    try:
        for dtype, tolerance in ((torch.float32, 2), (torch.float16, 8)):
            model.to(device, dtype)
            got = finish(model.family.render(model, req))[0].data
            assert got.shape == expected.shape and np.abs(got.astype(int) - expected).mean() <= tolerance, dtype
    finally:
        model.to("cpu", torch.float32)


# --- single files ---------------------------------------------------------------------------------------------------


def test_a_single_file_in_the_original_layout_renders_what_the_folder_renders(tiny, model):
    """conditioner.embedders.0/1, model.diffusion_model (label_emb), first_stage_model: the same picture."""
    assert checkpoint_architecture(tiny["file"]) == "sdxl"
    source = find_source(tiny["file"], str(tiny["config"]))
    single = LoadedModel(source_manifest(source), model.family, load_parts(source), "x", torch.device("cpu"),
                         torch.float32)
    assert single.network.xl is not None
    for sampler in ("euler", "dpmpp"):
        req = request(model, sampler=sampler, negative_prompt="blurry", guidance=5.0)
        assert np.array_equal(finish(model.family.render(single, req))[0].data,
                              finish(model.family.render(model, req))[0].data), sampler


def test_a_single_file_gets_sdxls_shipped_config_and_1024_pixels(tiny):
    entry = resolve(str(tiny["file"]))
    assert entry.ok and entry.manifest.architecture["config"] == "sdxl"
    assert entry.manifest.output["width"] == 1024 and entry.manifest.latent.shape == (4, 128, 128)
    with pytest.raises(WeightsError) as info:  # tiny weights do not fit SDXL's shapes: named, no crash
        load_model(entry)
    assert str(tiny["file"]) in str(info.value) and "cannot load the unet" in str(info.value)


def test_the_second_encoder_must_fit(tiny, tmp_path):
    """A file whose OpenCLIP tower does not fit the config names the file and the tensor."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny["file"]), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    key = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
    bad = tmp_path / "bad-qkv.safetensors"
    save_file({**tensors, key: tensors[key][:-3]}, str(bad))
    with pytest.raises(WeightsError, match="in_proj_weight has shape") as info:
        load_parts(find_source(bad, str(tiny["config"])))
    assert str(bad) in str(info.value)
    flat = tmp_path / "flat-projection.safetensors"
    save_file({**tensors, "conditioner.embedders.1.model.text_projection": torch.ones(3, 4, 5)}, str(flat))
    with pytest.raises(WeightsError, match="text_projection has shape \\[3, 4, 5\\], expected a matrix"):
        load_parts(find_source(flat, str(tiny["config"])))
    missing = tmp_path / "no-ln-final.safetensors"
    save_file({k: v for k, v in tensors.items() if "ln_final" not in k}, str(missing))
    with pytest.raises(WeightsError, match="second text encoder .* does not fit: 2 missing"):
        load_parts(find_source(missing, str(tiny["config"])))


def test_files_and_folders_that_are_not_sdxl_base_are_named(tiny, tmp_path):
    from safetensors.torch import save_file

    refiner = tmp_path / "refiner.safetensors"  # the refiner has only the OpenCLIP encoder
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.ones(1),
               "conditioner.embedders.0.model.ln_final.weight": torch.ones(1)}, str(refiner))
    with pytest.raises(WeightsError, match="not the refiner"):
        find_source(refiner)
    broken = tmp_path / "broken-xl"
    shutil.copytree(tiny["folder"], broken)
    shutil.rmtree(broken / "text_encoder_2")
    (broken / "tokenizer_2" / "merges.txt").unlink()
    with pytest.raises(ManifestError) as info:
        find_source(broken)
    assert "text_encoder_2/ is missing" in str(info.value) and "tokenizer_2/ has neither" in str(info.value)
    wrong = tmp_path / "wrong-xl"
    shutil.copytree(tiny["folder"], wrong)
    config = json.loads((wrong / "text_encoder_2" / "config.json").read_text())
    (wrong / "text_encoder_2" / "config.json").write_text(json.dumps({**config, "projection_dim": 24}))
    (wrong / "text_encoder_2" / "model.safetensors").unlink()
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    CLIPTextModelWithProjection(CLIPTextConfig(**{**TINY_XL_TEXT_2, "projection_dim": 24})).save_pretrained(
        str(wrong / "text_encoder_2"), safe_serialization=True)
    with pytest.raises(WeightsError, match="added embedding takes 88 numbers.*give 72") as info:
        load_parts(find_source(wrong))
    assert str(wrong / "unet") in str(info.value)


def test_a_pickled_sdxl_checkpoint_is_converted_and_renders_the_same(tiny, model, tmp_path, capsys):
    from safetensors.torch import load_file

    tensors = load_file(str(tiny["file"]))
    ckpt = tmp_path / "tiny-xl.ckpt"
    torch.save({"state_dict": tensors}, ckpt)
    assert main(["import", str(ckpt), "--sd"]) == 0, capsys.readouterr().err
    converted = tmp_path / "tiny-xl.safetensors"
    assert checkpoint_architecture(converted) == "sdxl" and set(load_file(str(converted))) == set(tensors)
    source = find_source(converted, str(tiny["config"]))
    single = LoadedModel(source_manifest(source), model.family, load_parts(source), "x", torch.device("cpu"),
                         torch.float32)
    req = request(model, sampler="ddim")
    assert np.array_equal(finish(model.family.render(single, req))[0].data,
                          finish(model.family.render(model, req))[0].data)


# --- the command line -----------------------------------------------------------------------------------------------


def test_render_an_sdxl_folder_from_the_command_line(tiny, tmp_path, capsys):
    out = tmp_path / "cat.png"
    code = main(["render", "--model", str(tiny["folder"]), "--prompt", PROMPT, "--set", "steps=2", "--seed", "7",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    from PIL import Image

    assert Image.open(out).size == (16, 16)

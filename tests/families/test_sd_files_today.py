"""Stable Diffusion files as today's tools write them (issue 18, point 1 without SDXL): pipeline folders saved by
transformers 5 (tokenizer.json only), fp16 variants, single files from diffusers' converter script under
transformers 4 and 5, SD 2.x single files (OpenCLIP text encoder; ε or v), and inpainting checkpoints (9-channel
UNet) used for masked image-to-image, checked against diffusers' own inpainting pipeline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import (TINY_SD2_TEXT, TINY_SD2_UNET, make_parts, make_pipeline_folder, make_variant_parts,  # noqa: E402
                     save_fp16_variant, save_tokenizer_as_today, write_configs, write_converter_file,
                     write_sd2_file, write_single_file)
from studio.cli import main  # noqa: E402
from studio.errors import ManifestError, RequestError, WeightsError  # noqa: E402
from studio.families import get_family  # noqa: E402
from studio.families.base import LoadedModel  # noqa: E402
from studio.families.stable_diffusion.family import load_parts, source_manifest  # noqa: E402
from studio.families.stable_diffusion.files import (ARCHITECTURES, HF5_TEXT_KEY, UNET_KEY, check_parts,  # noqa: E402
                                                    check_tokenizer, checkpoint_architecture, config_folder,
                                                    find_source, require_diffusers)
from studio.io.images import encode_init_image  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.request import CORE_FIELDS, RenderRequest  # noqa: E402

PROMPT = "a photo of a cat"


def request(model, **changes):
    fields = {"seed": 3, "prompt": PROMPT, "steps": 4, "sampler": "euler", **changes}
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return RenderRequest(model_id=model.id, params={k: v for k, v in fields.items() if v is not None}, **core)


def draw(model, **changes) -> np.ndarray:
    return finish(model.family.render(model, request(model, **changes)))[0].data


def from_file(path, config) -> LoadedModel:
    """A single file opened with a tiny config folder (the shipped configs are SD-sized)."""
    source = find_source(path, str(config))
    return LoadedModel(source_manifest(source), get_family("stable-diffusion"), load_parts(source), "x",
                       torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd-today")
    parts = make_parts(0)
    folder = make_pipeline_folder(root / "pipe", parts=parts)
    return {"root": root, "parts": parts, "folder": folder, "config": write_configs(root / "config", parts),
            "model": load_model(resolve(str(folder)))}


# --- pipeline folders saved today ------------------------------------------------------------------------------------


def test_a_folder_saved_by_transformers_5_opens_and_draws_what_the_old_layout_draws(sd1, tmp_path):
    today = save_tokenizer_as_today(shutil.copytree(sd1["folder"], tmp_path / "today"))
    assert sorted(p.name for p in (today / "tokenizer").iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    check_parts(today)
    model = load_model(resolve(str(today)))
    assert model.network.tokenizer(PROMPT).input_ids == sd1["model"].network.tokenizer(PROMPT).input_ids
    assert np.array_equal(draw(model), draw(sd1["model"]))


@pytest.mark.parametrize("change, words", [
    (lambda d: d["model"].update(type="WordPiece"), "not a BPE tokenizer"),
    (lambda d: d["model"]["vocab"].update({"cat": "one"}), "whole number"),
    (lambda d: d["model"]["vocab"].update({"cat": 10**12}), "whole number"),
    (lambda d: d["model"]["merges"].append(["a", "b", "c"]), "not a merge of two symbols"),
    (lambda d: d["model"].update(merges={"a": "b"}), "model.merges must be a list"),
    (lambda d: d.update(added_tokens=[{"id": "x", "content": "y"}]), "added token"),
    (lambda d: d.update(model=[1, 2]), "not a BPE tokenizer"),
])
def test_a_malformed_tokenizer_json_names_the_file(sd1, tmp_path, change, words):
    today = save_tokenizer_as_today(shutil.copytree(sd1["config"], tmp_path / "today"))
    path = today / "tokenizer" / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(WeightsError) as info:
        check_tokenizer(today / "tokenizer")
    message = str(info.value)
    assert "tokenizer.json" in message and words in message and "\n" not in message and len(message) < 400


def test_a_deep_huge_or_missing_tokenizer_json_is_refused_before_transformers_reads_it(sd1, tmp_path):
    today = save_tokenizer_as_today(shutil.copytree(sd1["config"], tmp_path / "today"))
    path = today / "tokenizer" / "tokenizer.json"
    path.write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    with pytest.raises(WeightsError, match="tokenizer.json.*nested|nested.*tokenizer.json"):
        check_parts(today)
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse
    with pytest.raises(WeightsError, match="over the limit"):
        check_parts(today)
    path.unlink()
    for part, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        (today / part / f"{stem}.safetensors").write_bytes(b"")
    with pytest.raises(ManifestError, match="tokenizer/ has neither tokenizer.json nor vocab.json with merges.txt"):
        find_source(today)


def test_a_folder_of_fp16_variants_only_opens_in_float32(sd1, tmp_path):
    half = save_fp16_variant(shutil.copytree(sd1["folder"], tmp_path / "half"))
    source = find_source(half)
    assert sorted(p.name for p in source.weights) == ["diffusion_pytorch_model.fp16.safetensors"] * 2 + [
        "model.fp16.safetensors"]
    model = load_model(resolve(str(half)))
    assert all(p.dtype == torch.float32 for p in model.network.parameters())
    unet = sd1["parts"][0].state_dict()
    for name, value in model.network.unet.state_dict().items():
        assert torch.equal(value, unet[name].half().float()), name  # the fp16 file's values, not another model's
    ours, full = draw(model).astype(int), draw(sd1["model"]).astype(int)
    assert np.abs(ours - full).max() <= 2  # float16-rounded weights, float32 arithmetic


# --- single files -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text_model_prefix", [True, False], ids=["transformers-4", "transformers-5"])
def test_a_file_from_diffusers_converter_draws_what_its_folder_draws(sd1, tmp_path, text_model_prefix):
    path = write_converter_file(tmp_path / "converted.safetensors", sd1["parts"], text_model_prefix)
    assert checkpoint_architecture(path) == "sd-v1"
    assert np.array_equal(draw(from_file(path, sd1["config"])), draw(sd1["model"]))


def test_a_file_without_a_text_encoder_names_both_layouts(sd1, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "unet-only.safetensors"
    save_file({UNET_KEY: torch.ones(8, 4, 3, 3), "cond_stage_model.other.weight": torch.ones(1)}, str(path))
    with pytest.raises(WeightsError) as info:
        find_source(path)
    assert "cond_stage_model.transformer.*" in str(info.value) and "cond_stage_model.model.*" in str(info.value)


@pytest.fixture(scope="module")
def sd2(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd2")
    parts = make_variant_parts(1, unet=TINY_SD2_UNET, text=TINY_SD2_TEXT)
    folder = make_pipeline_folder(root / "pipe", parts=parts)
    return {"parts": parts, "folder": folder, "config": write_configs(root / "config", parts),
            "file": write_sd2_file(root / "sd2.safetensors", parts), "model": load_model(resolve(str(folder)))}


def test_an_sd2_file_with_openclips_text_encoder_draws_what_its_folder_draws(sd2):
    single = from_file(sd2["file"], sd2["config"])
    text = sd2["parts"][2].state_dict()
    for name, value in single.network.text_encoder.state_dict().items():
        assert torch.equal(value, text[name]), name  # q/k/v split from in_proj, the extra last block left out
    assert np.array_equal(draw(single), draw(sd2["model"]))
    assert np.array_equal(draw(single, guidance=3.0, negative_prompt="blurry"),
                          draw(sd2["model"], guidance=3.0, negative_prompt="blurry"))


def test_sd2_files_are_v_prediction_at_768_unless_a_config_beside_says_otherwise(sd2, tmp_path):
    path = shutil.copy(sd2["file"], tmp_path / "model.safetensors")
    assert checkpoint_architecture(path) == "sd-v2-v"
    manifest = source_manifest(find_source(path))
    assert manifest.output["width"] == 768 and manifest.latent.shape == (4, 96, 96)
    beside = tmp_path / "model.yaml"
    beside.write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n"
                      "    linear_start: 0.00085\n", encoding="utf-8")  # v2-inference.yaml: the 512-px base
    assert checkpoint_architecture(path) == "sd-v2"
    assert source_manifest(find_source(path)).output["width"] == 512
    beside.write_text('model:\n  params:\n    parameterization: "v"  # v2-inference-v.yaml\n', encoding="utf-8")
    assert checkpoint_architecture(path) == "sd-v2-v"
    # diffusers' converter run under transformers 5 misses its SD 2.x test and writes CLIP names: told by the width
    from safetensors.torch import save_file

    hf5 = tmp_path / "hf5.safetensors"
    save_file({UNET_KEY: torch.ones(2, 4, 3, 3), HF5_TEXT_KEY: torch.ones(3, 1024)}, str(hf5))
    assert checkpoint_architecture(hf5) == "sd-v2-v"
    save_file({UNET_KEY: torch.ones(2, 4, 3, 3), HF5_TEXT_KEY: torch.ones(3, 768)}, str(hf5))
    assert checkpoint_architecture(hf5) == "sd-v1"


def test_the_shipped_sd2_configs_build_networks_of_sd2s_size(tmp_path):
    require_diffusers()
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    def count(make):
        with torch.device("meta"):
            return sum(p.numel() for p in make().parameters())

    for name, side, prediction in (("sd-v2", 512, "epsilon"), ("sd-v2-v", 768, "v_prediction")):
        arch = ARCHITECTURES[name]
        folder = config_folder(name, tmp_path)
        check_parts(folder)
        assert arch.image_size == side and arch.configs["scheduler"]["prediction_type"] == prediction
        unet = json.loads((folder / "unet" / "config.json").read_text())
        assert count(lambda: UNet2DConditionModel.from_config(unet)) == 865_910_724  # SD 2.x's UNet
        text = json.loads((folder / "text_encoder" / "config.json").read_text())
        assert count(lambda: CLIPTextModel(CLIPTextConfig(**text))) == 340_387_840  # OpenCLIP ViT-H's 23 blocks
        tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
        assert tokenizer.pad_token == "!" and tokenizer("a cat", padding="max_length").input_ids[-1] == 0


# --- inpainting -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inpainting(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd-inpaint")
    parts = make_variant_parts(2, unet={"in_channels": 9})
    folder = make_pipeline_folder(root / "pipe", parts=parts)
    return {"parts": parts, "folder": folder, "config": write_configs(root / "config", parts),
            "file": write_single_file(root / "inpaint.safetensors", parts), "root": root,
            "model": load_model(resolve(str(folder)))}


def _picture_and_mask(side: int = 16):
    gen = np.random.default_rng(5)
    picture = gen.integers(0, 256, (side, side, 3), dtype=np.uint8)
    mask = np.zeros((side, side), np.uint8)
    mask[4:12, 2:10] = 255  # white: repaint
    return picture, mask


def test_an_inpainting_checkpoint_is_recognised_and_offers_a_mask(inpainting, sd1):
    assert checkpoint_architecture(inpainting["file"]) == "sd-v1-inpainting"
    assert ARCHITECTURES["sd-v1-inpainting"].configs["unet"]["in_channels"] == 9
    assert "mask" in inpainting["model"].table.known_names()
    assert "mask" not in sd1["model"].table.known_names()
    with pytest.raises(RequestError, match="mask"):
        sd1["model"].checked(request(sd1["model"], mask=encode_init_image(_picture_and_mask()[1])))


@pytest.mark.parametrize("strength", [1.0, 0.75])
def test_masked_image_to_image_matches_diffusers_inpainting_pipeline(inpainting, monkeypatch, strength):
    """The same parts, noise and settings through diffusers' StableDiffusionInpaintPipeline (DDIM set up like the
    app's walk): within 2/255. diffusers draws a sample of the VAE's latent distribution where the app takes its
    mean; the reference is made to take the mean too."""
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from PIL import Image

    model = inpainting["model"]
    unet, vae, text = inpainting["parts"]
    # DDIM made from the folder's own scheduler config (SD 1.x's PNDM settings), which the app follows
    from diffusers import PNDMScheduler

    from studio.families.stable_diffusion.files import SD1_SCHEDULER

    sched = DDIMScheduler.from_config(PNDMScheduler.from_config(SD1_SCHEDULER).config)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=model.network.tokenizer, unet=unet,
                                          scheduler=sched, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    picture, mask = _picture_and_mask()
    # diffusers' inpainting pipeline starts from given latents as pure noise at any strength: it draws the noise
    # from a generator here, and the app gets the same draw as its explicit initial noise
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(11))
    req = request(model, sampler="ddim", eta=0.0, steps=4, guidance=5.0, negative_prompt="blurry",
                  init_image=encode_init_image(picture), mask=encode_init_image(mask), strength=strength,
                  latent=tuple(noise.flatten().tolist()))
    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mean)
    ref = pipe(PROMPT, negative_prompt="blurry", image=Image.fromarray(picture), mask_image=Image.fromarray(mask),
               num_inference_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(11),
               strength=strength, output_type="np", height=16, width=16).images[0]
    ours = finish(model.family.render(model, req))[0].data
    assert np.abs(ours.astype(float) - ref * 255).max() <= 2.0
    without = finish(model.family.render(model, req.with_params({"mask": None})))[0].data
    assert not np.array_equal(ours, without)  # the mask matters


def test_inpainting_from_a_single_file_and_its_limits(inpainting):
    single = from_file(inpainting["file"], inpainting["config"])
    picture, mask = _picture_and_mask()
    changes = {"init_image": encode_init_image(picture), "mask": encode_init_image(mask), "strength": 1.0}
    assert np.array_equal(draw(single, **changes), draw(inpainting["model"], **changes))
    assert draw(inpainting["model"]).shape == (16, 16, 3)  # text to image: the whole picture repainted
    with pytest.raises(RequestError, match="a mask needs an init image") as info:
        draw(inpainting["model"], mask=encode_init_image(mask))
    assert info.value.field == "params.mask"
    with pytest.raises(RequestError, match="mask is not a base64 PNG") as info:
        draw(inpainting["model"], init_image=encode_init_image(picture), mask="not a picture!")
    assert info.value.field == "params.mask"


def test_inpainting_from_the_command_line_with_a_mask_file(inpainting, tmp_path, capsys):
    from PIL import Image

    from studio.export.image import read_request

    picture, mask = _picture_and_mask()
    Image.fromarray(picture).save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "inpainted.png"
    code = main(["render", "--model", str(inpainting["folder"]), "--prompt", PROMPT, "--init",
                 str(tmp_path / "photo.png"), "--set", f"mask={tmp_path / 'mask.png'}", "--set", "strength=1",
                 "--set", "steps=3", "--seed", "4", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    stored = read_request(out)
    assert stored.param("mask") == encode_init_image(mask) and stored.param("strength") == 1.0
    assert main(["render", "--model", str(inpainting["folder"]), "--prompt", PROMPT, "--init",
                 str(tmp_path / "photo.png"), "--set", f"mask={tmp_path / 'missing.png'}", "--out",
                 str(tmp_path / "x.png")]) != 0
    assert "missing.png" in capsys.readouterr().err


def test_a_model_toml_naming_an_inpainting_file_offers_the_mask_too(inpainting, tmp_path):
    from studio.manifest import read_manifest

    package = tmp_path / "my-inpainting"
    package.mkdir()
    (package / "model.toml").write_text(
        'format = 1\nid = "my-inpainting"\nname = "My inpainting"\nversion = "1"\nfamily = "stable-diffusion"\n'
        'license = "see source"\n\n[output]\nkind = "image"\nwidth = 512\nheight = 512\nchannels = 3\n\n'
        '[latent]\nshape = [4, 64, 64]\n\n[conditions]\nkind = "text"\n\n'
        f'[architecture]\nsource = "{inpainting["file"].as_posix()}"\nconfig = "sd-v1-inpainting"\n',
        encoding="utf-8")
    manifest = read_manifest(package)
    names = {spec.name for spec in get_family("stable-diffusion").parameters(manifest)}
    assert "mask" in names and "init_image" in names


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_inpainting_on_cuda_in_float16(inpainting):
    picture, mask = _picture_and_mask()
    changes = {"init_image": encode_init_image(picture), "mask": encode_init_image(mask), "strength": 1.0}
    model = load_model(resolve(str(inpainting["folder"])), "cuda", torch.float16)
    out = draw(model, **changes)
    assert out.shape == (16, 16, 3) and np.abs(out.astype(int) - draw(inpainting["model"], **changes)).mean() < 8


def test_a_side_config_too_big_is_named_and_a_fifo_is_not_read(sd2, tmp_path):
    import os

    path = shutil.copy(sd2["file"], tmp_path / "model.safetensors")
    beside = tmp_path / "model.yaml"
    with open(beside, "wb") as f:
        f.truncate(64 << 20)  # sparse
    with pytest.raises(ManifestError) as info:
        find_source(path)
    assert "model.yaml" in str(info.value) and "over the limit" in str(info.value)
    if hasattr(os, "mkfifo"):
        beside.unlink()
        os.mkfifo(beside)
        assert checkpoint_architecture(path) == "sd-v2-v"  # not a regular file: not opened, never blocks

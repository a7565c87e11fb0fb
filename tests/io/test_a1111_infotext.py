"""A1111-faithful metadata both ways: the `parameters` text we write, read by AUTOMATIC1111's published rules
(modules/infotext_utils.py `parse_generation_parameters`, re-implemented below from its description), and A1111 /
ComfyUI settings put back onto a Stable Diffusion model, with A1111's noise sources."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio import __version__
from studio.export import parameters_text
from studio.io.a1111_names import a1111_name, a1111_sampler, our_sampler
from studio.io.foreign import lora_tags, map_settings, parse_comfy, parse_parameters, read_foreign_settings
from studio.request import RenderRequest

# A1111's re_param_code and re_imagesize
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def a1111_parse(text: str) -> dict[str, str]:
    """A1111's reading: the last line is the settings line when three pairs match there; lines before it are the
    prompt until "Negative prompt:"; a quoted value is a JSON string; "WxH" gives key-1 and key-2; a missing Clip skip
    is "1", a missing RNG "GPU", a missing Schedule type "Automatic"."""
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, done = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done, line = True, line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in _PAIR.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = json.loads(value)
        m = _SIZE.match(value)
        if m:
            res[f"{key}-1"], res[f"{key}-2"] = m.groups()
        else:
            res[key] = value
    res.setdefault("Clip skip", "1")
    res.setdefault("RNG", "GPU")
    res.setdefault("Schedule type", "Automatic")
    return res


SHA = "0123456789abcdef" * 4


def full_request() -> RenderRequest:
    return RenderRequest(model_id="sd15", seed=3_141_592_653, width=640, height=448, params={
        "prompt": "a fox, (snow:1.2), \"winter\": dusk <lora:fox_style:0.8>", "negative_prompt": "blurry, lowres",
        "steps": 30, "sampler": "ddim", "guidance": 6.5, "eta": 0.3, "variation_seed": 77,
        "variation_strength": 0.25, "init_image": "data:image/png;base64,AAAA", "strength": 0.6, "clip_skip": 2,
        "vae": "vae-ft-mse-840000.safetensors", "rng": "nv", "ensd": 31337})


def test_every_a1111_field_round_trips_by_a1111s_rules(capsys):
    request = full_request()
    info = {"lora_hashes": [("fox_style", "a1b2c3d4e5f6")], "ti_hashes": [("bad-hands", "0f0f0f0f0f0f")]}
    text = parameters_text(request, (640, 448), "SD 1.5", SHA, used=dict(request.params), info=info)
    got = a1111_parse(text)
    want = {
        "Prompt": request.params["prompt"], "Negative prompt": "blurry, lowres", "Steps": "30", "Sampler": "DDIM",
        "CFG scale": "6.5", "Seed": "3141592653", "Size-1": "640", "Size-2": "448", "Model hash": SHA[:10],
        "Model": "SD 1.5", "VAE": "vae-ft-mse-840000.safetensors", "Variation seed": "77",
        "Variation seed strength": "0.25", "Denoising strength": "0.6", "Clip skip": "2", "ENSD": "31337",
        "Lora hashes": "fox_style: a1b2c3d4e5f6", "TI hashes": "bad-hands: 0f0f0f0f0f0f", "RNG": "NV",
        "Eta DDIM": "0.3", "Version": f"latent-studio {__version__}",
    }
    same = [k for k, v in want.items() if got.get(k) == v]
    print(f"A1111 infotext fields that round-trip: {len(same)} of {len(want)}")
    assert same == list(want), {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    # A1111's order of its own keys, ours after them, Version last
    keys = [k for k, _ in _PAIR.findall(text.split("\n")[-1])]
    order = ["Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "VAE", "Variation seed",
             "Variation seed strength", "Denoising strength", "Clip skip", "ENSD", "Lora hashes", "TI hashes", "RNG",
             "Eta DDIM", "Init image", "Version"]
    assert keys == order


def test_defaults_are_written_as_used_and_names_are_a1111s():
    request = RenderRequest(model_id="sd15", seed=5, params={"prompt": "a cat"})
    used = {"prompt": "a cat", "negative_prompt": "", "sampler": "dpmpp", "steps": 25, "guidance": 7.5, "eta": 0.0,
            "rng": "ours", "variation_strength": 0.0}
    got = a1111_parse(parameters_text(request, (512, 512), "SD", used=used))
    assert (got["Steps"], got["Sampler"], got["Schedule type"], got["CFG scale"]) == ("25", "DPM++ 2M", "Uniform",
                                                                                      "7.5")
    assert got["RNG"] == "CPU" and "Eta DDIM" not in got and "Variation seed" not in got  # our draw is A1111's CPU
    karras = a1111_parse(parameters_text(request, (512, 512), "SD", used={**used, "karras": True}))
    assert (karras["Sampler"], karras["Schedule type"]) == ("DPM++ 2M", "Karras")
    gpu = parameters_text(request, (512, 512), "SD", used={**used, "rng": "gpu"})
    assert "RNG" not in gpu and a1111_parse(gpu)["RNG"] == "GPU"  # A1111 leaves its default out, as we do
    assert "ENSD" not in got  # 0, A1111's default, is left out; so is a delta our own noise does not use
    assert "ENSD" not in parameters_text(request, (512, 512), "SD", used={**used, "ensd": 31337})
    assert a1111_parse(parameters_text(request, (512, 512), "SD", used={**used, "rng": "gpu", "ensd": 31337}))[
        "ENSD"] == "31337"


def test_no_empty_first_line_without_a_prompt():
    text = parameters_text(RenderRequest(model_id="drums", seed=4), None, "Drums", extra=[("Length", "1.00 s")])
    assert not text.startswith("\n") and text.startswith("Seed: 4, Model: Drums, Length: 1.00 s")
    got = a1111_parse(text)
    assert got["Prompt"] == "" and got["Seed"] == "4"
    only_negative = parameters_text(RenderRequest(model_id="m", seed=1, params={"negative_prompt": "x"}), None)
    assert only_negative.startswith("Negative prompt: x\nSeed: 1")


@pytest.mark.parametrize("ours, karras, a1111, schedule, old", [
    ("dpmpp", False, "DPM++ 2M", "Uniform", "DPM++ 2M"), ("dpmpp", True, "DPM++ 2M", "Karras", "DPM++ 2M Karras"),
    ("euler", False, "Euler", "Uniform", "Euler"), ("euler_a", False, "Euler a", "Uniform", "Euler a"),
    ("ddim", False, "DDIM", None, "DDIM"),
])
def test_the_name_table_both_ways(ours, karras, a1111, schedule, old):
    assert a1111_sampler(ours, karras) == (a1111, schedule)
    assert a1111_name(ours, karras) == old
    assert our_sampler(a1111, schedule) == (ours, karras if schedule is not None else None)
    assert our_sampler(old)[0] == ours
    assert our_sampler("dpmpp_2m", "karras") == ("dpmpp", True) and our_sampler("DPM++ SDE") is None


def test_lora_tags_and_hashes_are_read():
    s = parse_parameters("a fox <lora:fox_style:0.8> and <lora:snow> <lora:both:0.5:0.7>\n"
                         "Steps: 20, Sampler: Euler a, Seed: 1, Lora hashes: \"fox_style: abc123, snow: def456\", "
                         "RNG: NV, Variation seed: 9, Variation seed strength: 0.1")
    assert s.loras == (("fox_style", 0.8, "abc123"), ("snow", 1.0, "def456"), ("both", 0.5, None))
    assert (s.rng, s.variation_seed, s.variation_strength) == ("nv", 9, 0.1)
    assert s.ensd == 0  # an A1111 text without ENSD: a delta of 0
    assert parse_parameters("x\nSteps: 20, Sampler: Euler a, Seed: 1, ENSD: 31337").ensd == 31337
    bad = parse_parameters("x\nSteps: 20, Sampler: Euler a, Seed: 1, ENSD: -5")
    assert bad.ensd == 0 and [v for k, v in bad.other if k == "ENSD"][0].startswith("-5 (not a number")
    assert [t[2] for t in lora_tags("x <lora:a:1> y")] == ["<lora:a:1>"]


# --- onto a Stable Diffusion model -------------------------------------------------------------------------------

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import make_pipeline_folder  # noqa: E402
from studio.cli import main  # noqa: E402
from studio.latent.a1111_rng import PhiloxGenerator, a1111_slerp  # noqa: E402
from studio.latent.seeds import sample_prior  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    folder = make_pipeline_folder(tmp_path_factory.mktemp("sdmeta") / "tiny-pipe")
    return folder, resolve(str(folder)), load_model(resolve(str(folder)))


def test_a_default_render_writes_what_it_used(sd, tmp_path, capsys):
    folder, _, _ = sd
    out = tmp_path / "cat.png"
    assert main(["render", "--model", str(folder), "--prompt", "a cat", "--seed", "7", "--set", "steps=2",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    with Image.open(out) as image:
        got = a1111_parse(image.text["parameters"])
    assert (got["Steps"], got["Sampler"], got["Schedule type"], got["CFG scale"], got["Seed"]) == (
        "2", "DPM++ 2M", "Uniform", "7.5", "7")
    assert (got["Size-1"], got["Size-2"], got["RNG"], got["Model"]) == ("16", "16", "CPU", "tiny-pipe")


def test_an_a1111_picture_restores_its_settings_and_its_noise(sd, tmp_path):
    _, entry, model = sd
    text = ("a red fox <lora:fox_style:0.8>, snow\nNegative prompt: blurry\n"
            "Steps: 12, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 4242, Size: 64x48, "
            "Model hash: 6ce0161689, Model: v1-5, Variation seed: 17, Variation seed strength: 0.3, "
            "Lora hashes: \"fox_style: 1a2b3c4d5e6f\", Version: v1.10.1")
    info = PngInfo()
    info.add_text("parameters", text)
    path = tmp_path / "a1111.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(path, pnginfo=info)
    settings = read_foreign_settings(path)
    base = RenderRequest(model_id=model.id, seed=1)
    mapped = map_settings(settings, base, entry.parameters, True, "tiny")
    r = mapped.request
    assert (r.seed, r.width, r.height) == (4242, 64, 48)
    assert (r.params["steps"], r.params["guidance"], r.params["sampler"]) == (12, 6.0, "dpmpp")
    assert (r.params["variation_seed"], r.params["variation_strength"], r.params["rng"]) == (17, 0.3, "gpu")
    assert r.params["prompt"] == "a red fox, snow" and r.params["negative_prompt"] == "blurry"
    unused = " | ".join(mapped.unused)
    assert "not matched: <lora:fox_style:0.8> [1a2b3c4d5e6f]" in unused and "Model: v1-5" in unused
    assert r.params["schedule"] == "karras" and not any("Schedule type" in u for u in unused)
    assert "ensd" not in r.params  # no ENSD in the text: a delta of 0, the default
    moved = map_settings(parse_parameters(text.replace("Seed: 4242,", "Seed: 4242, ENSD: 31337,")), base,
                         entry.parameters, True, "tiny")
    assert moved.request.params["ensd"] == 31337 and "ENSD: 31337" in moved.used
    cleared = map_settings(settings, moved.request, entry.parameters, True, "tiny")  # onto a request that had one
    assert cleared.request.params["ensd"] == 0
    # a LoRA found here by its hash, under another name, is kept under that name
    found = map_settings(settings, base, entry.parameters, True, "tiny",
                         find_lora=lambda name, short: "my_fox" if short == "1a2b3c4d5e6f" else None)
    assert found.request.params["prompt"] == "a red fox, snow <lora:my_fox:0.8>"
    assert "LoRA: my_fox (0.8) for fox_style" in found.used
    # no RNG in the text is A1111's GPU noise: Philox, with A1111's variation slerp
    z = model.family.latent(model, r)
    shape = model.family.latent_shape(model, r)  # (4, 24, 32): the tiny VAE halves each side
    want = a1111_slerp(0.3, PhiloxGenerator(4242).randn(shape), PhiloxGenerator(17).randn(shape))
    assert torch.allclose(z, want, atol=1e-6)


def test_noise_sources_on_the_model(sd):
    _, _, model = sd
    fam = model.family
    base = RenderRequest(model_id=model.id, seed=99, params={"prompt": "x", "steps": 1})
    ours = fam.latent(model, base)
    shape = fam.latent_shape(model, base)
    assert torch.equal(ours, sample_prior(99, shape))
    assert torch.equal(fam.latent(model, base.with_param("rng", "cpu")), ours)  # our draw is A1111's CPU
    nv = fam.latent(model, base.with_param("rng", "nv"))
    assert torch.equal(nv, PhiloxGenerator(99).randn(shape))
    if not torch.cuda.is_available():
        assert torch.equal(fam.latent(model, base.with_param("rng", "gpu")), nv)
    image_ours = finish(fam.render(model, base))[0].data
    image_nv = finish(fam.render(model, base.with_param("rng", "nv")))[0].data
    assert not np.array_equal(image_ours, image_nv)


def test_our_own_text_maps_back_onto_the_model(sd):
    _, entry, model = sd
    request = RenderRequest(model_id=model.id, seed=31, width=72, height=64, params={
        "prompt": "a lighthouse, dusk", "negative_prompt": "fog", "steps": 9, "sampler": "euler", "guidance": 5.5,
        "variation_seed": 3, "variation_strength": 0.4, "rng": "nv", "ensd": 31337})
    text = parameters_text(request, (72, 64), "tiny", used=model.params(request))
    assert "ENSD: 31337" in text
    mapped = map_settings(parse_parameters(text), RenderRequest(model_id=model.id, seed=0), entry.parameters, True,
                          "tiny")
    assert mapped.request == model.checked(request)
    assert not [u for u in mapped.unused if not u.startswith("Model")], mapped.unused


def test_comfy_loras_and_scheduler():
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 7, "sampler_name": "dpmpp_2m",
                                                   "scheduler": "karras", "denoise": 1, "model": ["10", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["10", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blur", "clip": ["10", 1]}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "styles\\ink.safetensors", "strength_model": 0.7,
                                                      "strength_clip": 1, "model": ["4", 0], "clip": ["4", 1]}},
    }
    s = parse_comfy(json.dumps(graph), None)
    assert (s.sampler, s.schedule, s.rng, s.ensd) == ("dpmpp_2m", "karras", "cpu", 0)
    assert s.loras == (("ink", 0.7, None),)


def test_hashes_are_written_whichever_way_the_family_gives_them():
    """LoRAs report A1111's text, textual inversions a {name: hash} mapping, tests pairs: all write the same line."""
    from studio.export.image import _hash_pairs

    want = [("ink", "0123456789ab"), ("wash", "ba9876543210")]
    assert _hash_pairs("ink: 0123456789ab, wash: ba9876543210") == want
    assert _hash_pairs({"ink": "0123456789ab", "wash": "ba9876543210"}) == want
    assert _hash_pairs(want) == want
    assert _hash_pairs(None) == [] and _hash_pairs("") == []

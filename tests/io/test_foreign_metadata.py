"""Settings other tools store in pictures (studio.io.foreign): AUTOMATIC1111 `parameters` (PNG chunk, JPEG Exif
UserComment), ComfyUI `prompt` / `workflow`, InvokeAI `invokeai_metadata` / `sd-metadata`; hostile variants; and
the mapping onto the shipped diffusion model's parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from studio.errors import RequestError
from studio.io.foreign import (MAX_GRAPH_NODES, map_settings, parse_parameters, read_foreign_settings,
                               summary)
from studio.io.metadata import exif_texts
from studio.library import resolve
from studio.limits import MAX_JSON_DEPTH
from studio.request import RenderRequest

MODELS = Path(__file__).resolve().parents[2] / "models"

A1111 = ("masterpiece, a red fox in the snow,\nwinter forest\n"
         "Negative prompt: blurry, lowres\n"
         "Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 123, Size: 512x768, Model hash: 6ce0161689, "
         "Model: v1-5-pruned-emaonly, Clip skip: 2, Lora hashes: \"fox: 1a2b3c, snow: 4d5e6f\", Version: v1.9.4")

# ComfyUI's default workflow as its API graph (the `prompt` chunk) …
COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {
        "text": "beautiful scenery nature glass bottle landscape, purple galaxy bottle,", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}
# … and as the editor's graph (the `workflow` chunk): widgets by position, links [id, from, slot, to, slot, type]
COMFY_WORKFLOW = {
    "last_node_id": 9, "last_link_id": 9,
    "nodes": [
        {"id": 7, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [6], "slot_index": 0}],
         "widgets_values": ["text, watermark"]},
        {"id": 6, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4], "slot_index": 0}],
         "widgets_values": ["a lighthouse at dusk"]},
        {"id": 5, "type": "EmptyLatentImage", "inputs": [],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2], "slot_index": 0}],
         "widgets_values": [640, 384, 1]},
        {"id": 3, "type": "KSampler", "inputs": [
            {"name": "model", "type": "MODEL", "link": 1}, {"name": "positive", "type": "CONDITIONING", "link": 4},
            {"name": "negative", "type": "CONDITIONING", "link": 6},
            {"name": "latent_image", "type": "LATENT", "link": 2}],
         "widgets_values": [42, "fixed", 12, 6.5, "ddim", "karras", 1]},
        {"id": 4, "type": "CheckpointLoaderSimple", "inputs": [],
         "widgets_values": ["dreamshaper_8.safetensors"]},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
              [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"]],
    "version": 0.4,
}
INVOKE = {
    "generation_mode": "txt2img", "positive_prompt": "a castle on a hill", "negative_prompt": "fog",
    "width": 768, "height": 512, "seed": 3141592653, "rand_device": "cpu", "cfg_scale": 7.5, "steps": 30,
    "scheduler": "dpmpp_2m", "clip_skip": 0,
    "model": {"key": "abc", "hash": "blake3:00", "name": "stable-diffusion-v1-5", "base": "sd-1", "type": "main"},
}
INVOKE_LEGACY = {
    "model": "stable diffusion", "model_weights": "stable-diffusion-1.5", "app_id": "invoke-ai/InvokeAI",
    "app_version": "2.2.5",
    "image": {"prompt": [{"prompt": "a dog in a hat [cartoon]", "weight": 1.0}], "steps": 50, "cfg_scale": 7.5,
              "threshold": 0, "perlin": 0, "height": 512, "width": 512, "seed": 1234, "seamless": False,
              "hires_fix": False, "type": "txt2img", "postprocessing": None, "sampler": "k_lms", "variations": []},
}


def png(tmp: Path, name: str, **texts: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key.replace("_", "-") if key == "sd_metadata" else key, value)
    path = tmp / name
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path, pnginfo=info)
    return path


@pytest.fixture(scope="module")
def diffusion():
    return resolve(str(MODELS / "glyph-diffusion"))


def test_a1111_png(tmp_path):
    s = read_foreign_settings(png(tmp_path, "a.png", parameters=A1111))
    assert s.tool == "AUTOMATIC1111"
    assert s.prompt == "masterpiece, a red fox in the snow,\nwinter forest"
    assert s.negative_prompt == "blurry, lowres"
    assert (s.seed, s.steps, s.guidance, s.sampler, s.width, s.height) == (123, 20, 7.0, "Euler", 512, 768)
    assert s.model == "v1-5-pruned-emaonly"
    other = dict(s.other)
    assert s.clip_skip == 2 and other["Model hash"] == "6ce0161689" and s.rng == "gpu"  # no RNG: A1111's GPU
    assert other["Lora hashes"] == "fox: 1a2b3c, snow: 4d5e6f"  # a quoted value with commas stays whole


def test_a1111_jpeg_user_comment(tmp_path):
    """A1111 writes JPEG settings as the Exif UserComment (UNICODE, UTF-16 BE) in the Exif sub-IFD."""
    path = tmp_path / "a.jpg"
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(path, exif=exif_texts(A1111))
    s = read_foreign_settings(path)
    assert s is not None and s.seed == 123 and s.negative_prompt == "blurry, lowres"


def test_a1111_without_settings_line_is_all_prompt():
    s = parse_parameters("just a prompt\nover two lines")
    assert s.prompt == "just a prompt\nover two lines" and s.seed is None


def test_comfy_prompt_graph(tmp_path):
    path = png(tmp_path, "c.png", prompt=json.dumps(COMFY_PROMPT), workflow=json.dumps(COMFY_WORKFLOW))
    s = read_foreign_settings(path)
    assert s.tool == "ComfyUI"
    assert s.prompt.startswith("beautiful scenery") and s.negative_prompt == "text, watermark"
    assert (s.seed, s.steps, s.guidance, s.sampler, s.width, s.height) == (156680208700286, 20, 8.0, "euler", 512,
                                                                           512)
    assert s.model == "v1-5-pruned-emaonly.safetensors" and s.schedule == "normal" and s.rng == "cpu"


def test_comfy_workflow_only(tmp_path):
    s = read_foreign_settings(png(tmp_path, "w.png", workflow=json.dumps(COMFY_WORKFLOW)))
    assert s.prompt == "a lighthouse at dusk" and s.negative_prompt == "text, watermark"
    assert (s.seed, s.steps, s.guidance, s.sampler, s.width, s.height) == (42, 12, 6.5, "ddim", 640, 384)
    assert s.model == "dreamshaper_8.safetensors" and s.schedule == "karras"


def test_comfy_ksampler_advanced_noise_seed(tmp_path):
    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "add_noise": "enable", "noise_seed": 77, "steps": 25, "cfg": 5.5, "sampler_name": "dpmpp_2m",
        "scheduler": "karras", "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable",
        "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0], "model": ["4", 0]}}
    s = read_foreign_settings(png(tmp_path, "k.png", prompt=json.dumps(graph)))
    assert (s.seed, s.steps, s.guidance, s.sampler) == (77, 25, 5.5, "dpmpp_2m")


def test_invokeai(tmp_path):
    s = read_foreign_settings(png(tmp_path, "i.png", invokeai_metadata=json.dumps(INVOKE)))
    assert s.tool == "InvokeAI" and s.prompt == "a castle on a hill" and s.negative_prompt == "fog"
    assert (s.seed, s.steps, s.guidance, s.sampler, s.width, s.height) == (3141592653, 30, 7.5, "dpmpp_2m", 768, 512)
    assert s.model == "stable-diffusion-v1-5"


def test_invokeai_legacy(tmp_path):
    s = read_foreign_settings(png(tmp_path, "l.png", sd_metadata=json.dumps(INVOKE_LEGACY)))
    assert s.prompt == "a dog in a hat" and s.negative_prompt == "cartoon"
    assert (s.seed, s.steps, s.sampler, s.model) == (1234, 50, "k_lms", "stable-diffusion-1.5")


def test_plain_picture_has_none(tmp_path):
    assert read_foreign_settings(png(tmp_path, "p.png")) is None


# --- hostile ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk, text, problem", [
    ("prompt", "{" * (MAX_JSON_DEPTH + 5) + "}" * (MAX_JSON_DEPTH + 5), "levels deep"),
    ("prompt", "{not json", "not valid JSON"),
    ("prompt", "[1, 2, 3]", "not ComfyUI's graph"),
    ("prompt", json.dumps({"1": {"class_type": "SaveImage", "inputs": {}}}), "no KSampler"),
    ("workflow", json.dumps({"nodes": "many"}), "no list of nodes"),
    ("invokeai_metadata", "[]", "not an object"),
    ("sd_metadata", json.dumps({"image": 5}), "no 'image' object"),
])
def test_damaged_metadata_names_file_and_chunk(tmp_path, chunk, text, problem):
    path = png(tmp_path, "bad.png", **{chunk: text})
    with pytest.raises(RequestError) as err:
        read_foreign_settings(path)
    assert problem in str(err.value) and "bad.png" in str(err.value)


def test_huge_graph_is_refused(tmp_path):
    graph = {str(i): {"class_type": "Note", "inputs": {}} for i in range(MAX_GRAPH_NODES + 1)}
    with pytest.raises(RequestError, match="nodes, over the limit"):
        read_foreign_settings(png(tmp_path, "big.png", prompt=json.dumps(graph)))


def test_wrong_types_are_listed_not_used(tmp_path):
    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["3"]["inputs"].update(seed=-5, steps="many", cfg=[1], sampler_name={"x": 1})
    graph["6"]["inputs"]["text"] = 12
    s = read_foreign_settings(png(tmp_path, "t.png", prompt=json.dumps(graph)))
    assert (s.seed, s.steps, s.guidance, s.sampler, s.prompt) == (None, None, None, None, None)
    names = [name for name, _ in s.other]
    assert {"Seed", "Steps", "CFG", "Sampler", "Prompt"} <= set(names)


def test_self_linked_graph_ends(tmp_path):
    graph = {"1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "seed": 1}},
             "2": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["2", 0]}}}
    s = read_foreign_settings(png(tmp_path, "loop.png", prompt=json.dumps(graph)))
    assert s.seed == 1 and s.prompt is None


# --- mapping ------------------------------------------------------------------------------------------------------


def test_map_a1111_onto_glyph_diffusion(diffusion):
    s = parse_parameters(A1111)
    request = RenderRequest(model_id=diffusion.id, seed=5, latent=None)
    mapped = map_settings(s, request, diffusion.parameters, False, "Glyph Diffusion")
    r = mapped.request
    assert r.seed == 123 and r.params["steps"] == 20 and r.params["guidance"] == 7.0 and r.params["sampler"] == "euler"
    unused = " | ".join(mapped.unused)
    assert "Model: v1-5-pruned-emaonly" in unused and "Clip skip: 2" in unused and "Size: 512x768" in unused
    # the glyph model draws letters of its alphabet: a prompt with commas and spaces is not one of them
    assert ("Prompt" in unused) != ("prompt" in r.params and r.params["prompt"] == s.prompt)
    title, detail = summary(s, mapped, "Glyph Diffusion", "a.png")
    assert "AUTOMATIC1111" in title and "Not used by Glyph Diffusion: " in detail


def test_map_unknown_sampler_and_fitting_prompt(diffusion):
    s = parse_parameters("Latent\nSteps: 12, Sampler: Euler a, CFG scale: 3, Seed: 9, Size: 32x32, Model: x")
    request = RenderRequest(model_id=diffusion.id, seed=5)
    mapped = map_settings(s, request, diffusion.parameters, False, "Glyph Diffusion")
    assert mapped.request.params["prompt"] == "Latent" and mapped.request.seed == 9
    assert "sampler" not in mapped.request.params
    assert any(u.startswith("Sampler: Euler a (no matching sampler)") for u in mapped.unused)


def test_map_out_of_range_is_listed(diffusion):
    s = parse_parameters("Latent\nSteps: 5000, CFG scale: 500, Seed: 1")
    mapped = map_settings(s, RenderRequest(model_id=diffusion.id, seed=5), diffusion.parameters, False, "GD")
    assert "steps" not in mapped.request.params and "guidance" not in mapped.request.params
    assert any(u.startswith("Steps: 5000 (") for u in mapped.unused)


@pytest.mark.parametrize("chunk", ["parameters", "prompt", "invokeai_metadata"])
def test_huge_compressed_chunk_is_refused_naming_the_file(tmp_path, chunk):
    info = PngImagePlugin.PngInfo()
    info.add_text(chunk, "x" * (5 << 20), zip=True)  # 5 MB that packs into a few kB
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, pnginfo=info)
    with pytest.raises(RequestError) as err:
        read_foreign_settings(path)
    assert "bomb.png" in str(err.value) and "too large" in str(err.value)


def test_jpeg_with_a_damaged_exif_block_holds_no_settings(tmp_path):
    path = tmp_path / "odd.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff")
    assert read_foreign_settings(path) is None


def test_a_long_settings_line_is_bounded():
    text = "p\n" + ", ".join(f"Key{i}: {i}" for i in range(5000))
    assert len(parse_parameters(text).other) <= 201

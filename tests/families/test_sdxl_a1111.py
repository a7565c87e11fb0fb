"""SDXL with AUTOMATIC1111's prompt language and kohya's SDXL LoRAs (studio/families/stable_diffusion/xl_prompts.py,
sdxl.py, lora_xl.py) on a tiny SDXL pipeline made here from configs:

- a plain prompt of at most 75 tokens gives exactly diffusers' StableDiffusionXLPipeline.encode_prompt states;
- longer prompts are read whole in chunks of 75 (both encoders, states side by side), the pooled embedding is encoder
  2's for the first chunk, BREAK starts a chunk, weights follow A1111's mean-restoring emphasis per encoder, and the
  negative prompt is paired to the prompt's chunks (an empty one stays zeros);
- textual inversions with `clip_l` / `clip_g` go into both encoders, as diffusers' load_textual_inversion does;
- kohya's original-layout UNet names (input_blocks / middle_block / output_blocks / label_emb, and lora_te1_ /
  lora_te2_) name the same layers as diffusers' single-file converter does; a LoRA in that layout draws what the same
  weights in diffusers' PEFT layout draw, and what diffusers' own load_lora_weights draws; unknown names are refused
  naming the file and the key."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402

from conftest import finish  # noqa: E402
from sd_tiny import (TINY_TEXT, TINY_XL_TEXT_2, _unet_original, make_xl_parts, make_xl_pipeline_folder,  # noqa: E402
                     write_xl_single_file)
from studio.errors import RequestError, WeightsError  # noqa: E402
from studio.families.stable_diffusion import lora as L  # noqa: E402
from studio.families.stable_diffusion.lora_xl import original_unet_names  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.request import CORE_FIELDS, RenderRequest  # noqa: E402

PROMPT = "a photo of a cat"
D1, D2 = TINY_TEXT["hidden_size"], TINY_XL_TEXT_2["hidden_size"]
GROUP = "a very big red cat"  # five tokens, six with its comma
LONG = ", ".join([GROUP] * 20)  # 119 tokens: the 75th is mid-group, so the first chunk ends at the 12th comma (72)
FIRST = ", ".join([GROUP] * 12) + ","
REST = ", ".join([GROUP] * 8)  # 47 tokens


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl-a1111")
    parts = make_xl_parts(0)
    return {"root": root, "parts": parts, "folder": make_xl_pipeline_folder(root / "tiny-xl", parts)}


@pytest.fixture(scope="module")
def model(tiny):
    return load_model(resolve(str(tiny["folder"])))


def request(model, **changes):
    fields = {"seed": 3, "prompt": PROMPT, "steps": 3, "sampler": "euler", "guidance": 5.0,
              "negative_prompt": "blurry", **changes}
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return RenderRequest(model_id=model.id, params={k: v for k, v in fields.items() if v is not None}, **core)


def render(model, **changes) -> np.ndarray:
    return finish(model.family.render(model, request(model, **changes)))[0].data


def diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def pipeline(tiny, model, parts=None):
    """diffusers' SDXL pipeline over (fresh copies of) the parts, Euler from the folder's scheduler config."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    config = json.loads((tiny["folder"] / "scheduler" / "scheduler_config.json").read_text())
    unet, vae, text, text_2 = parts or tiny["parts"]
    net = model.network
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text_2,
                                     tokenizer=copy.deepcopy(net.tokenizer),
                                     tokenizer_2=copy.deepcopy(net.xl.tokenizer_2), unet=unet,
                                     scheduler=EulerDiscreteScheduler.from_config(config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def mean_restored(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis as its sd_emphasis.EmphasisOriginal states it: z times each token's multiplier,
    then times (mean before / mean after)."""
    before = z.mean()
    z = z * weights.reshape(1, -1, 1)
    return z * (before / z.mean())


def encode(model, prompt):
    """(context, pooled, parsed) of `prompt` as the app reads it for SDXL."""
    return model.network.xl.encode(model.network, prompt)


# --- prompts ------------------------------------------------------------------------------------------------------


def test_a_plain_prompt_is_exactly_diffusers_reading(tiny, model):
    """≤ 75 tokens and no syntax: the same token ids, layers and pooled embedding as diffusers' encode_prompt, bit
    for bit (weights of 1 leave the states as they are)."""
    pipe = pipeline(tiny, model)
    with torch.inference_mode():
        ref, ref_neg, ref_pooled, ref_pooled_neg = pipe.encode_prompt(PROMPT, device="cpu", negative_prompt="blurry")
    context, pooled, parsed = encode(model, PROMPT)
    assert context.shape == (1, 77, D1 + D2) and len(parsed.chunks) == 1
    assert torch.equal(context, ref) and torch.equal(pooled, ref_pooled)
    neg, pooled_neg, _ = encode(model, "blurry")
    assert torch.equal(neg, ref_neg) and torch.equal(pooled_neg, ref_pooled_neg)


def test_a_long_prompt_is_read_whole_and_pooled_from_its_first_chunk(tiny, model):
    """119 tokens: two chunks, cut after the last comma within 20 tokens of the end (A1111's word wrap); each chunk
    reads as it would alone; the pooled embedding is the first chunk's (A1111's zs[0].pooled), not the second's."""
    context, pooled, parsed = encode(model, LONG)
    assert context.shape == (1, 154, D1 + D2) and parsed.tokens == 75 + 47
    first, first_pooled, _ = encode(model, FIRST)
    rest, rest_pooled, _ = encode(model, REST)
    assert torch.allclose(context[:, :77], first, atol=1e-6) and torch.allclose(context[:, 77:], rest, atol=1e-6)
    assert torch.allclose(pooled, first_pooled, atol=1e-6) and not torch.allclose(pooled, rest_pooled, atol=1e-3)


def test_a_long_prompt_draws_another_picture_than_diffusers_truncation(tiny, model):
    """diffusers cuts the same prompt at 77 tokens; the app reads all of it, so the pictures differ, while the first
    75 tokens alone draw diffusers' picture."""
    pipe = pipeline(tiny, model)
    req = request(model, prompt=LONG)
    noise = model.family.latent(model, req)[None]

    def reference(prompt):
        return (pipe(prompt, negative_prompt="blurry", num_inference_steps=3, guidance_scale=5.0,
                     latents=noise.clone(), output_type="np", height=16, width=16).images[0] * 255)

    truncated = reference(LONG)
    ours = finish(model.family.render(model, req))[0].data
    assert np.abs(ours - truncated).max() > 2.0
    # what diffusers drew is what its first 77 tokens mean: the app's reading of those 75 prompt tokens alone
    cut_text = model.network.tokenizer.decode(model.network.tokenizer(LONG, truncation=True).input_ids[1:-1])
    assert np.abs(render(model, prompt=cut_text).astype(float) - truncated).max() <= 2.0


def test_break_starts_a_chunk(model):
    context, pooled, parsed = encode(model, "a photo BREAK of a cat")
    assert context.shape[1] == 154 and len(parsed.chunks) == 2
    first, first_pooled, _ = encode(model, "a photo")
    assert torch.allclose(context[:, :77], first, atol=1e-6) and torch.allclose(pooled, first_pooled, atol=1e-6)


def test_weights_follow_a1111s_emphasis_per_encoder(model):
    """(cat:1.5): each encoder's states times the token weights, then each rescaled to its own unweighted mean —
    computed here from the plain prompt's states by A1111's published rule; one mean over both encoders' channels
    would give other numbers."""
    plain, plain_pooled, _ = encode(model, PROMPT)
    weighted, pooled, parsed = encode(model, "a photo of a (cat:1.5)")
    weights = torch.tensor(parsed.chunks[0].weights)
    assert weights.tolist().count(1.5) == 1 and parsed.chunks[0].tokens == encode(model, PROMPT)[2].chunks[0].tokens
    expected = torch.cat([mean_restored(plain[..., :D1], weights), mean_restored(plain[..., D1:], weights)], -1)
    assert torch.allclose(weighted, expected, atol=1e-6)
    assert not torch.allclose(weighted, mean_restored(plain, weights), atol=1e-4)  # not one mean over both
    assert torch.equal(pooled, plain_pooled)  # the pooled embedding is taken before the emphasis, as in A1111
    assert diff(render(model, prompt="a photo of a (cat:1.5)"), render(model)) > 0
    escaped = encode(model, "a photo of a \\(cat\\)")[2].chunks[0]  # literal brackets: text, weight 1
    assert len(set(escaped.weights)) == 1 and escaped.tokens != parsed.chunks[0].tokens


def test_the_negative_is_paired_to_the_prompts_chunks(model):
    """A long prompt and a short negative: the negative is padded with the empty prompt's states; an empty negative
    stays zeros as long as the prompt; a long negative pads the prompt."""
    net = model.network
    context, added = net.xl.conditions(net, LONG, "blurry", True, (16, 16))
    neg, neg_pooled, _ = encode(model, "blurry")
    empty, _, _ = encode(model, "")
    assert context.shape == (2, 154, D1 + D2)
    assert torch.equal(context[1:, :77], neg) and torch.equal(context[1:, 77:], empty)
    assert torch.equal(added["text_embeds"][1:], neg_pooled)
    context, added = net.xl.conditions(net, LONG, "", True, (16, 16))
    assert context.shape == (2, 154, D1 + D2) and not context[1].any() and not added["text_embeds"][1].any()
    context, _ = net.xl.conditions(net, PROMPT, LONG, True, (16, 16))
    assert context.shape == (2, 154, D1 + D2) and torch.equal(context[:1, 77:], empty)
    # zeros padded with zeros draw what A1111's separate 77-token pass for the negative draws: a zero context gives
    # zero keys and values (SDXL's attention has no key/value bias), whatever its length
    unet, x, t = net.unet, torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([500])
    zero_added = {"text_embeds": torch.zeros_like(added["text_embeds"][:1]), "time_ids": added["time_ids"][:1]}
    with torch.inference_mode():
        short, long = (unet(x, t, encoder_hidden_states=torch.zeros(1, n, D1 + D2), added_cond_kwargs=zero_added).sample
                       for n in (77, 154))
    assert torch.allclose(short, long, atol=1e-6)
    assert render(model, prompt=LONG, negative_prompt="").shape == (16, 16, 3)  # the UNet takes the pair
    assert render(model, prompt=PROMPT, negative_prompt=LONG).shape == (16, 16, 3)


def test_textual_inversion_goes_into_both_encoders_as_diffusers_does(tiny, model):
    """An SDXL embedding (clip_l for CLIP ViT-L, clip_g for OpenCLIP) beside the model: the same states as diffusers'
    load_textual_inversion into each encoder; recorded in the render's info. The pooled embedding is OpenCLIP's at
    the end-of-text token, as A1111 pools it (its embedding slots hold token 0); diffusers' pools at the highest token
    id, which is its added embedding token, so only the states are compared with its encode_prompt."""
    beside = tiny["root"] / "embeddings"
    beside.mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(5)
    clip_l, clip_g = torch.randn(2, D1, generator=gen), torch.randn(2, D2, generator=gen)
    path = beside / "xlstyle.safetensors"
    save_file({"clip_l": clip_l, "clip_g": clip_g}, str(path))
    parts = make_xl_parts(0)  # diffusers grows its own copies of the vocabularies
    pipe = pipeline(tiny, model, parts)
    pipe.load_textual_inversion(clip_l, token="xlstyle", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(clip_g, token="xlstyle", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    prompt = "a xlstyle cat on a hill"
    with torch.inference_mode():
        ref, _, ref_pooled, _ = pipe.encode_prompt(prompt, device="cpu", do_classifier_free_guidance=False)
    context, pooled, parsed = encode(model, prompt)
    assert [e.name for _, e in parsed.chunks[0].fixes] == ["xlstyle"]
    assert torch.allclose(context, ref, atol=1e-5)
    spelled = pipe.maybe_convert_prompt(prompt, pipe.tokenizer_2)  # "xlstyle xlstyle_1", as encode_prompt does
    ids = pipe.tokenizer_2(spelled, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = pipe.text_encoder_2(ids)  # the same states; the projection taken at the end-of-text token
        eos = ids[0].tolist().index(pipe.tokenizer_2.eos_token_id)
        at_eos = pipe.text_encoder_2.text_projection(out.last_hidden_state[:, eos])
    assert torch.allclose(pooled, at_eos, atol=1e-5) and not torch.allclose(ref_pooled, at_eos, atol=1e-3)
    out = finish(model.family.render(model, request(model, prompt=prompt)))[0]
    assert out.info["embeddings"] == {"xlstyle": str(path)}
    sd15 = beside / "sd15only.safetensors"  # an SD 1.x embedding has nothing for OpenCLIP: said, naming the file
    save_file({"emb_params": torch.randn(1, D1, generator=gen)}, str(sd15))
    with pytest.raises(WeightsError, match="width") as info:
        encode(model, "a sd15only cat")
    assert str(sd15) in str(info.value)
    uneven = beside / "uneven.safetensors"  # 2 vectors for CLIP ViT-L, 3 for OpenCLIP: the chunks would not line up
    save_file({"clip_l": torch.randn(2, D1, generator=gen), "clip_g": torch.randn(3, D2, generator=gen)}, str(uneven))
    with pytest.raises(WeightsError, match="2 for the first .clip_l. and 3 for the second") as info:
        encode(model, "an uneven cat")
    assert str(uneven) in str(info.value)


def test_clip_skip_leaves_sdxl_as_a1111_does(model):
    """A1111 reads SDXL's penultimate layers whatever "Clip skip" says (its "Clip skip SDXL" option is off by
    default): A1111 pictures of SDXL models that say "Clip skip: 2" restore to the same picture."""
    assert np.array_equal(render(model, clip_skip=2), render(model))


def test_a_prompt_too_long_is_refused_by_name(model):
    with pytest.raises(RequestError, match="at most 32 chunks"):
        encode(model, "cat, " * 1300)


@pytest.mark.gpu
def test_long_weighted_prompts_and_an_embedding_render_on_the_gpu(tiny, model):
    """Both encoders' chunks, the emphasis, the pooled embedding and an SDXL embedding follow the model to the device
    and dtype (float32 and float16), drawing the CPU's picture."""
    beside = tiny["root"] / "embeddings"
    beside.mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(7)
    save_file({"clip_l": torch.randn(1, D1, generator=gen), "clip_g": torch.randn(1, D2, generator=gen)},
              str(beside / "gpustyle.safetensors"))
    device = "cuda" if torch.cuda.is_available() else "mps"
    req = request(model, prompt=f"(gpustyle:1.2) {LONG} BREAK a [dog]", negative_prompt="blurry, (ugly:1.3)")
    expected = finish(model.family.render(model, req))[0].data.astype(int)
    try:
        for dtype, tolerance in ((torch.float32, 2), (torch.float16, 8)):
            model.to(device, dtype)
            got = finish(model.family.render(model, req))[0].data
            assert got.shape == expected.shape and np.abs(got.astype(int) - expected).mean() <= tolerance, dtype
    finally:
        model.to("cpu", torch.float32)


# --- kohya's original-layout names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["sdxl", "sd-v1"])
def test_original_names_are_what_diffusers_single_file_converter_reads(config):
    """Every tensor of SDXL base's (and SD 1.5's) UNet, named by lora_xl's original names and put through diffusers'
    convert_ldm_unet_checkpoint, lands on the parameter it came from (meta tensors: no memory)."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from studio.families.stable_diffusion.files import ARCHITECTURES

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(ARCHITECTURES[config].configs["unet"])
    names = original_unet_names(unet)
    checkpoint, came_from = {}, {}
    for key, value in unet.state_dict().items():
        module, _, leaf = key.rpartition(".")
        tensor = torch.empty(value.shape, device="meta")
        checkpoint[f"model.diffusion_model.{names[module]}.{leaf}"] = tensor
        came_from[id(tensor)] = key
    converted = convert_ldm_unet_checkpoint(checkpoint, dict(unet.config))
    assert set(converted) == set(unet.state_dict())
    assert all(came_from[id(tensor)] == key for key, tensor in converted.items())
    if config == "sdxl":  # the names the brief and kohya's files use
        assert names["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"] == \
            "input_blocks.4.1.transformer_blocks.0.attn1.to_q"
        assert names["up_blocks.0.attentions.2.proj_out"] == "output_blocks.2.1.proj_out"
        assert names["mid_block.attentions.0.transformer_blocks.9.ff.net.2"] == \
            "middle_block.1.transformer_blocks.9.ff.net.2"
        assert names["add_embedding.linear_1"] == "label_emb.0.0"


def xl_lora_layers(parts, seed: int, rank: int = 4, convs: bool = True):
    """{(part, diffusers module): (down, up, alpha)}: the UNet's attention and feed-forward layers (and, with
    `convs`, resnet convs, time projections, samplers and the added embedding), both text encoders' attention and
    MLP layers."""
    unet, _, text, text_2 = parts
    gen = torch.Generator().manual_seed(seed)
    attention = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
    others = ("conv1", "conv2", "time_emb_proj", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv",
              "add_embedding.linear_1", "time_embedding.linear_2")
    out = {}
    for part, net in (("unet", unet), ("text_encoder", text), ("text_encoder_2", text_2)):
        for name, module in net.named_modules():
            wanted = name.endswith(attention + (others if convs else ())) if part == "unet" \
                else name.endswith(("q_proj", "v_proj", "out_proj", "fc1"))
            if not wanted:
                continue
            if isinstance(module, torch.nn.Linear):
                down = torch.randn(rank, module.in_features, generator=gen) * 0.2
                up = torch.randn(module.out_features, rank, generator=gen) * 0.2
            else:
                k = module.kernel_size
                down = torch.randn(rank, module.in_channels, *k, generator=gen) * 0.05
                up = torch.randn(module.out_channels, rank, 1, 1, generator=gen) * 0.2
            out[(part, name)] = (down, up, float(rank) / 2)
    return out


def kohya_xl_tensors(layers):
    """kohya sd-scripts' SDXL names: the UNet's by the original layout (sd_tiny's own reverse of diffusers' converter,
    written apart from the app's), lora_te1_ / lora_te2_ for the encoders, underscores throughout."""
    tensors = {}
    for (part, name), (down, up, alpha) in layers.items():
        if part == "unet":
            diffusers = name.replace("add_embedding.linear_1", "label_emb.0.0").replace(
                "time_embedding.linear_2", "time_embed.2")
            original = next(iter(_unet_original({diffusers + ".weight": None})))
            stem = "lora_unet_" + original.removeprefix("model.diffusion_model.").removesuffix(".weight")
        else:
            stem = ("lora_te1_" if part == "text_encoder" else "lora_te2_") + "text_model_" + \
                name.removeprefix("text_model.")
        stem = stem.replace(".", "_")
        tensors[f"{stem}.lora_down.weight"] = down
        tensors[f"{stem}.lora_up.weight"] = up
        tensors[f"{stem}.alpha"] = torch.tensor(alpha)
    return tensors


def peft_xl_tensors(layers):
    tensors = {}
    for (part, name), (down, up, _) in layers.items():
        tensors[f"{part}.{name}.lora_A.weight"] = down
        tensors[f"{part}.{name}.lora_B.weight"] = up
    (down, _, alpha) = next(iter(layers.values()))
    meta = {f"{p}.{k}": v for p in ("unet", "text_encoder", "text_encoder_2")
            for k, v in (("r", down.shape[0]), ("lora_alpha", alpha), ("alpha_pattern", {}), ("rank_pattern", {}))}
    return tensors, {"format": "pt", "lora_adapter_metadata": json.dumps(meta)}


def save(path, tensors, metadata=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def test_the_kohya_layout_names_the_layers_the_single_file_names(tiny):
    """The tiny SDXL pipeline written as an original-layout single file: every UNet weight there sits under the name
    lora_xl gives its module."""
    from safetensors.torch import load_file

    unet = tiny["parts"][0]
    file = load_file(str(write_xl_single_file(tiny["root"] / "xl.safetensors", tiny["parts"])))
    names = original_unet_names(unet)
    for module_name, module in unet.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            assert torch.equal(file[f"model.diffusion_model.{names[module_name]}.weight"], module.weight), module_name


def test_a_kohya_sdxl_lora_draws_what_the_same_peft_lora_draws(tiny, model):
    """UNet (attention, resnets, samplers, embeddings) and both text encoders: kohya's original-layout names and
    diffusers' PEFT names, the same weights, the same picture; switching back leaves the base picture exactly."""
    layers = xl_lora_layers(tiny["parts"], 1)
    loras = tiny["folder"].parent / "loras"
    save(loras / "xlink.safetensors", kohya_xl_tensors(layers))
    save(loras / "xlink-peft.safetensors", *peft_xl_tensors(layers))
    base = render(model)
    kohya = render(model, loras="xlink:0.8")
    assert model.network._lora_active.modules == len(layers)  # every layer found, in all three parts
    peft = render(model, loras="xlink-peft:0.8")
    assert diff(kohya, base) > 10 and diff(kohya, peft) <= 2
    te2_only = {k: v for k, v in layers.items() if k[0] == "text_encoder_2"}
    save(loras / "xlte2.safetensors", kohya_xl_tensors(te2_only))
    assert diff(render(model, loras="xlte2:1"), base) > 0  # the second encoder's LoRA reaches the picture
    assert np.array_equal(render(model), base)


def test_a_kohya_sdxl_lora_draws_what_diffusers_load_lora_weights_draws(tiny, model):
    """diffusers' own loading of the same kohya file (its SGM block mapping, PEFT layers), attention layers and both
    text encoders, weight 0.8: within 2/255."""
    pytest.importorskip("peft")
    layers = xl_lora_layers(tiny["parts"], 2, convs=False)
    path = save(tiny["folder"].parent / "loras" / "xlattn.safetensors", kohya_xl_tensors(layers))
    req = request(model, loras="xlattn:0.8")
    noise = model.family.latent(model, req)[None]
    pipe = pipeline(tiny, model, make_xl_parts(0))
    pipe.load_lora_weights(str(path), adapter_name="xlattn")
    pipe.set_adapters(["xlattn"], [0.8])
    ref = pipe(PROMPT, negative_prompt="blurry", num_inference_steps=3, guidance_scale=5.0, latents=noise.clone(),
               output_type="np", height=16, width=16).images[0] * 255
    ours = finish(model.family.render(model, req))[0].data
    assert np.abs(ours - ref).max() <= 2.0
    assert np.abs(render(model) - ref).max() > 2.0  # the comparison can fail: the base picture is another


def test_unknown_and_misfitting_sdxl_lora_keys_are_refused_naming_file_and_key(tiny, model, tmp_path):
    good = kohya_xl_tensors(xl_lora_layers(tiny["parts"], 3, convs=False))
    stem = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    te2 = "lora_te2_text_model_encoder_layers_0_self_attn_q_proj"
    cases = [
        ({f"{stem.replace('_4_', '_99_')}.lora_down.weight": torch.zeros(4, 32),
          f"{stem.replace('_4_', '_99_')}.lora_up.weight": torch.zeros(32, 4)}, "input_blocks_99_1.*original-layout"),
        ({f"{'lora_unet_middle_block_7_proj_in'}.lora_down.weight": torch.zeros(4, 32),
          "lora_unet_middle_block_7_proj_in.lora_up.weight": torch.zeros(32, 4)}, "middle_block_7.*names no layer"),
        ({f"{te2}.lora_down.weight": torch.zeros(4, D1), f"{te2}.lora_up.weight": torch.zeros(D1, 4)},
         f"{te2}.*does not fit"),  # CLIP ViT-L's width on the OpenCLIP encoder
        ({**good, "lora_te3_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, D1)},
         "lora_te3_.*not a kohya LoRA key"),
    ]
    for tensors, match in cases:
        path = save(tmp_path / "bad-xl.safetensors", tensors)
        with pytest.raises(WeightsError, match=match) as info:
            L.apply_loras(model.network, [(L.read_lora(path), 1.0)], model.device, model.dtype)
        assert str(path) in str(info.value), match
        assert not any(isinstance(hook, L._Patch) for m in model.network.modules()  # nothing half-applied
                       for hook in m._forward_hooks.values()), match  # (transformers keeps hooks of its own)

"""Tiny Stable Diffusion pipelines made here from configs (seeded random weights, never downloaded): a diffusers
pipeline folder, its config folder (no weights), and the same weights as one original-layout single file.

`to_original_layout` turns diffusers' parameter names into the original (CompVis) checkpoint names, which is the
reverse of what diffusers' `from_single_file` does, so a file made here goes through the app's real single-file path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from studio.families.stable_diffusion.files import SD1_INDEX, SD1_SCHEDULER, require_diffusers, write_tokenizer

LAYERS = 2  # resnets per down block (up blocks have one more)
TINY_UNET = {
    "block_out_channels": [32, 64], "layers_per_block": LAYERS, "sample_size": 8, "in_channels": 4, "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 32,
}
TINY_VAE = {
    "block_out_channels": [32, 64], "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
    "norm_num_groups": 32, "sample_size": 16, "scaling_factor": 0.18215,
}
TINY_TEXT = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=77, projection_dim=32, hidden_act="quick_gelu", bos_token_id=0,
                 eos_token_id=2, pad_token_id=1)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Fresh diffusers models zero their last layers; tests need every part to matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim >= 1:
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)


def make_parts(seed: int = 0):
    require_diffusers()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_UNET)
    vae = AutoencoderKL(**TINY_VAE)
    text = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
    for i, m in enumerate((unet, vae, text)):
        _randomise(m, seed * 10 + i)
    return unet.eval(), vae.eval(), text.eval()


def write_configs(folder: Path, parts) -> Path:
    """What a config folder holds: model_index.json, each part's config, the tokenizer and the scheduler."""
    unet, vae, text = parts
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(SD1_INDEX))
    for name, model in (("unet", unet), ("vae", vae)):
        (folder / name).mkdir(exist_ok=True)
        model.save_config(str(folder / name))
    text.config.save_pretrained(str(folder / "text_encoder"))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD1_SCHEDULER))
    write_tokenizer(folder / "tokenizer")
    return folder


def make_pipeline_folder(folder: Path, seed: int = 0, parts=None) -> Path:
    """A complete diffusers pipeline folder with safetensors weights."""
    parts = parts or make_parts(seed)
    write_configs(folder, parts)
    unet, vae, text = parts
    unet.save_pretrained(str(folder / "unet"), safe_serialization=True)
    vae.save_pretrained(str(folder / "vae"), safe_serialization=True)
    text.save_pretrained(str(folder / "text_encoder"), safe_serialization=True)
    return folder


def _unet_names(blocks: int) -> list[tuple[str, str]]:
    """(diffusers prefix, original prefix) for the UNet's blocks."""
    pairs = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
             ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2.")]
    per = LAYERS + 1
    for i in range(blocks):
        for j in range(LAYERS):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{per * i + j + 1}.0."))
            pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{per * i + j + 1}.1."))
        if i < blocks - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{per * (i + 1)}.0.op."))
        for j in range(per):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{per * i + j}.0."))
            pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{per * i + j}.1."))
        if i < blocks - 1:
            has_attention = TINY_UNET["up_block_types"][i].startswith("CrossAttn")
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{per * i + 2}.{2 if has_attention else 1}."))
    pairs += [("mid_block.attentions.0.", "middle_block.1."), ("mid_block.resnets.0.", "middle_block.0."),
              ("mid_block.resnets.1.", "middle_block.2.")]
    return pairs


RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def _unet_original(state: dict) -> dict:
    pairs = sorted(_unet_names(len(TINY_UNET["block_out_channels"])), key=lambda p: -len(p[0]))
    out = {}
    for name, value in state.items():
        new = name
        for a, b in pairs:
            if name.startswith(a):
                rest = name[len(a):]
                if "resnets" in a:
                    for x, y in RESNET:
                        if rest.startswith(x + "."):
                            rest = y + rest[len(x):]
                new = b + rest
                break
        out["model.diffusion_model." + new] = value
    return out


def _vae_original(state: dict) -> dict:
    n = len(TINY_VAE["block_out_channels"])
    out = {}
    for name, value in state.items():
        new = name.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        for i in range(n):
            new = new.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            new = new.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            new = new.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n - 1 - i}.block.")
            new = new.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample.")
        for j in range(2):
            new = new.replace(f"mid_block.resnets.{j}.", f"mid.block_{j + 1}.")
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for a, b in (("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."),
                         ("group_norm.", "norm.")):
                new = new.replace(a, b)
            if new.endswith("weight") and value.ndim == 2:
                value = value[:, :, None, None]  # the original attention used 1×1 convolutions
        out["first_stage_model." + new] = value
    return out


def write_single_file(path: Path, parts) -> Path:
    """The parts' weights as one original-layout Stable Diffusion 1.x checkpoint."""
    from safetensors.torch import save_file

    unet, vae, text = parts
    tensors = {**_unet_original(unet.state_dict()), **_vae_original(vae.state_dict()),
               **{"cond_stage_model.transformer.text_model." + k.removeprefix("text_model."): v
                  for k, v in text.state_dict().items()}}  # the names SD 1.x files use, whatever transformers calls them
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


# --- the layouts today's tools write (issue 18) ----------------------------------------------------------------------

TINY_SD2_UNET = {**TINY_UNET, "use_linear_projection": True, "attention_head_dim": [4, 8]}
TINY_SD2_TEXT = {**TINY_TEXT, "hidden_act": "gelu"}


def make_variant_parts(seed: int = 0, unet: dict | None = None, text: dict | None = None):
    """Tiny parts like `make_parts` with some config values changed: an SD 2.x-shaped UNet and text encoder
    (TINY_SD2_UNET, TINY_SD2_TEXT), or an inpainting UNet ({"in_channels": 9})."""
    require_diffusers()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    parts = (UNet2DConditionModel(**{**TINY_UNET, **(unet or {})}), AutoencoderKL(**TINY_VAE),
             CLIPTextModel(CLIPTextConfig(**{**TINY_TEXT, **(text or {})})))
    for i, m in enumerate(parts):
        _randomise(m, seed * 10 + i)
    return tuple(m.eval() for m in parts)


def save_tokenizer_as_today(folder: Path) -> Path:
    """Replace a pipeline's tokenizer/ with what transformers 5's save_pretrained writes: tokenizer.json and
    tokenizer_config.json only (the fast tokenizer's own file; no vocab.json, no merges.txt)."""
    import shutil

    import transformers

    old = folder / "tokenizer"
    fast = getattr(transformers, "CLIPTokenizerFast", transformers.CLIPTokenizer)
    tokenizer = fast.from_pretrained(str(old), local_files_only=True)
    shutil.rmtree(old)
    tokenizer.save_pretrained(str(old))
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        (old / name).unlink(missing_ok=True)
    return folder


def save_fp16_variant(folder: Path) -> Path:
    """Every weighted part of a pipeline folder as its fp16 variant only (`*.fp16.safetensors`, what
    save_pretrained(variant="fp16") writes after `.half()`), the float32 files removed."""
    from safetensors.torch import load_file, save_file

    for part, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        plain = folder / part / f"{stem}.safetensors"
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(plain)).items()}
        save_file(tensors, str(folder / part / f"{stem}.fp16.safetensors"), metadata={"format": "pt"})
        plain.unlink()
    return folder


def write_converter_file(path: Path, parts, text_model_prefix: bool) -> Path:
    """The file diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py writes for an SD 1.x pipeline:
    the UNet and VAE renamed to the original layout (its maps, as `_unet_original` / `_vae_original` follow them),
    the text encoder's state dict as transformers saved it under `cond_stage_model.transformer.`: with
    `text_model.` under transformers 4 (`text_model_prefix`), without it under transformers 5."""
    from safetensors.torch import save_file

    unet, vae, text = parts
    names = {k.removeprefix("text_model."): v for k, v in text.state_dict().items() if not k.endswith("position_ids")}
    prefix = "cond_stage_model.transformer." + ("text_model." if text_model_prefix else "")
    tensors = {**_unet_original(unet.state_dict()), **_vae_original(vae.state_dict()),
               **{prefix + k: v for k, v in names.items()}}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def openclip_text(text, extra_block_seed: int | None = 7) -> dict:
    """A CLIPTextModel's weights in OpenCLIP's layout, as SD 2.x files hold them under cond_stage_model.model.*:
    q, k and v joined into in_proj, `resblocks`, `ln_final`, plus what SD does not use (a last block, drawn from
    `extra_block_seed`, standing for the one SD 2.x skips; text_projection; logit_scale)."""
    state = {k.removeprefix("text_model."): v for k, v in text.state_dict().items() if not k.endswith("position_ids")}
    out = {"token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
           "positional_embedding": state.pop("embeddings.position_embedding.weight"),
           "ln_final.weight": state.pop("final_layer_norm.weight"), "ln_final.bias": state.pop("final_layer_norm.bias")}
    layers = text.config.num_hidden_layers
    names = [("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
             ("mlp.fc2.", "mlp.c_proj."), ("self_attn.out_proj.", "attn.out_proj.")]
    for i in range(layers):
        pre = f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(
                [state.pop(f"{pre}self_attn.{n}_proj.{kind}") for n in "qkv"])
        for key in [k for k in state if k.startswith(pre)]:
            rest = key[len(pre):]
            for a, b in names:
                if rest.startswith(a):
                    out[f"transformer.resblocks.{i}.{b}{rest[len(a):]}"] = state.pop(key)
    assert not state, sorted(state)
    width = text.config.hidden_size
    if extra_block_seed is not None:
        gen = torch.Generator().manual_seed(extra_block_seed)
        for key in [k for k in out if k.startswith("transformer.resblocks.0.")]:
            out[key.replace("resblocks.0.", f"resblocks.{layers}.")] = torch.randn(out[key].shape, generator=gen)
    out["text_projection"] = torch.randn(width, width)
    out["logit_scale"] = torch.tensor(4.6)
    return out


def write_sd2_file(path: Path, parts) -> Path:
    """The parts' weights as one original-layout Stable Diffusion 2.x checkpoint (OpenCLIP text encoder)."""
    from safetensors.torch import save_file

    unet, vae, text = parts
    tensors = {**_unet_original(unet.state_dict()), **_vae_original(vae.state_dict()),
               **{"cond_stage_model.model." + k: v for k, v in openclip_text(text).items()}}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


# --- SDXL -------------------------------------------------------------------------------------------------------------

TINY_XL_TEXT_2 = dict(vocab_size=49408, hidden_size=48, intermediate_size=40, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=77, projection_dim=40, hidden_act="gelu",
                      bos_token_id=0, eos_token_id=2, pad_token_id=1)
TIME_DIM = 8
TINY_XL_UNET = {  # the same blocks as TINY_UNET (so `_unet_original` names them), with SDXL's added embedding
    **TINY_UNET, "cross_attention_dim": TINY_TEXT["hidden_size"] + TINY_XL_TEXT_2["hidden_size"],
    "addition_embed_type": "text_time", "addition_time_embed_dim": TIME_DIM,
    "projection_class_embeddings_input_dim": 6 * TIME_DIM + TINY_XL_TEXT_2["projection_dim"],
    "transformer_layers_per_block": [2, 1], "use_linear_projection": True,
}
TINY_XL_VAE = {**TINY_VAE, "scaling_factor": 0.13025}
# the app samples with trailing timesteps and a final ᾱ of 1 today; a folder that says so means the same schedule
# whether or not the scheduler config is honoured, and diffusers' schedulers built from it take the same walk
TINY_XL_SCHEDULER = {"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                     "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
                     "set_alpha_to_one": True, "steps_offset": 0, "timestep_spacing": "trailing",
                     "clip_sample": False}


def make_xl_parts(seed: int = 0):
    """(unet, vae, text_encoder, text_encoder_2) of a tiny SDXL pipeline, seeded."""
    require_diffusers()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_XL_UNET)
    vae = AutoencoderKL(**TINY_XL_VAE)
    text = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**TINY_XL_TEXT_2))
    for i, m in enumerate((unet, vae, text, text_2)):
        _randomise(m, seed * 10 + i)
    return unet.eval(), vae.eval(), text.eval(), text_2.eval()


def write_xl_configs(folder: Path, parts, force_zeros: bool = True) -> Path:
    """An SDXL config folder: model_index.json, each part's config, both tokenizers and the scheduler."""
    from studio.families.stable_diffusion.sdxl import SDXL_INDEX, TOKENIZER_2_PAD

    unet, vae, text, text_2 = parts
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({**SDXL_INDEX, "force_zeros_for_empty_prompt": force_zeros}))
    for name, model in (("unet", unet), ("vae", vae)):
        (folder / name).mkdir(exist_ok=True)
        model.save_config(str(folder / name))
    text.config.save_pretrained(str(folder / "text_encoder"))
    text_2.config.save_pretrained(str(folder / "text_encoder_2"))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(TINY_XL_SCHEDULER))
    write_tokenizer(folder / "tokenizer")
    write_tokenizer(folder / "tokenizer_2", TOKENIZER_2_PAD)
    return folder


def make_xl_pipeline_folder(folder: Path, parts, force_zeros: bool = True) -> Path:
    """A complete SDXL diffusers pipeline folder with safetensors weights."""
    write_xl_configs(folder, parts, force_zeros)
    for name, model in zip(("unet", "vae", "text_encoder", "text_encoder_2"), parts):
        model.save_pretrained(str(folder / name), safe_serialization=True)
    return folder


def _open_clip_original(state: dict) -> dict:
    """CLIPTextModelWithProjection's weights in OpenCLIP's names (the reverse of diffusers'
    convert_open_clip_checkpoint): q/k/v fused into attn.in_proj_*, the projection stored transposed."""
    out, fused = {}, {}
    rename = (("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
              ("mlp.fc2.", "mlp.c_proj."), ("self_attn.out_proj.", "attn.out_proj."))
    top = {"embeddings.position_embedding.weight": "positional_embedding",
           "embeddings.token_embedding.weight": "token_embedding.weight",
           "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    for name, value in state.items():
        bare = name.removeprefix("text_model.")
        if bare.endswith("position_ids"):
            continue
        if bare == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif bare in top:
            out[top[bare]] = value
        else:
            number, _, rest = bare.removeprefix("encoder.layers.").partition(".")
            block = f"transformer.resblocks.{number}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                proj, kind = rest.split(".")[1], rest.split(".")[2]
                fused.setdefault(block + f"attn.in_proj_{kind}", {})[proj] = value
                continue
            for a, b in rename:
                if rest.startswith(a):
                    rest = b + rest[len(a):]
            out[block + rest] = value
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    out["logit_scale"] = torch.tensor(4.6052)  # OpenCLIP files carry it; it is not part of the text encoder
    return out


def write_xl_single_file(path: Path, parts) -> Path:
    """The parts' weights as one SDXL base checkpoint in the original (generative-models) layout."""
    from safetensors.torch import save_file

    unet, vae, text, text_2 = parts
    unet_state = {name.replace("add_embedding.linear_1.", "label_emb.0.0.").replace("add_embedding.linear_2.",
                                                                                      "label_emb.0.2."): value
                  for name, value in unet.state_dict().items()}
    tensors = {**_unet_original(unet_state), **_vae_original(vae.state_dict()),
               **{"conditioner.embedders.0.transformer.text_model." + k.removeprefix("text_model."): v
                  for k, v in text.state_dict().items()},
               **{"conditioner.embedders.1.model." + k: v for k, v in _open_clip_original(text_2.state_dict()).items()}}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path

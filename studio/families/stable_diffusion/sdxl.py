"""SDXL base pipelines (Podell et al. 2023) on the Stable Diffusion family: what SDXL adds to SD 1.x / 2.x.

- **Two text encoders.** OpenAI's CLIP ViT-L (`text_encoder`, as SD 1.x) and OpenCLIP ViT-bigG with its projection
  (`text_encoder_2`, a CLIPTextModelWithProjection), each with its own tokenizer (the second pads with "!"). The
  UNet's context is both encoders' *penultimate* hidden states side by side (768 + 1280 = 2048 channels).
- **Extra conditions** (`added_cond_kwargs`, UNet `addition_embed_type="text_time"`): the pooled, projected text
  embedding of encoder 2, and the micro-conditioning `add_time_ids` = original size (h, w), crop top-left (top,
  left), target size (h, w). The original size defaults to the picture's size and the crop to (0, 0), as diffusers'
  StableDiffusionXLPipeline does.
- **Prompts read the AUTOMATIC1111 way** through both encoders (xl_prompts.py): weights, BREAK, chunks of 75 tokens
  side by side on the channel axis and one after another on the token axis, the pooled embedding from the first
  chunk; prompt and negative padded to the same number of chunks.
- **An empty negative prompt is zeros** (context and pooled) when the pipeline says `force_zeros_for_empty_prompt`
  (SDXL base does; so does AUTOMATIC1111 for SDXL), as diffusers does when no negative prompt is given.
- **Files.** A diffusers pipeline folder (`model_index.json` class StableDiffusionXLPipeline, with `text_encoder_2/`
  and `tokenizer_2/`), or a single file in the original (Stability's generative-models) layout:
  `conditioner.embedders.0.transformer.*` (CLIP ViT-L, transformers' names), `conditioner.embedders.1.model.*`
  (OpenCLIP: fused q/k/v, `text_projection` stored transposed), `model.diffusion_model.*` (UNet, `label_emb.*` for
  the added embedding) and `first_stage_model.*` (VAE). The configs below are SDXL 1.0 base's own; a 1024² picture is
  the default size.

Which names the second encoder's weights have in each layout is taken from diffusers' single-file conversion
(diffusers/loaders/single_file_utils.py, `convert_open_clip_checkpoint`, the "openclip" mapping); the code is ours.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from studio.errors import WeightsError

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
EXTRA_PARTS = ("text_encoder_2", "tokenizer_2")
TEXT_1_PREFIX = "conditioner.embedders.0.transformer."
TEXT_2_PREFIX = "conditioner.embedders.1.model."
TEXT_CACHE = 16

# --- SDXL 1.0 base's configs (stabilityai/stable-diffusion-xl-base-1.0), written down -------------------------------

SDXL_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280], "center_input_sample": False, "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
    "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": True,
}
SDXL_VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024, "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SDXL_TEXT_ENCODER = {  # the text half of OpenAI's CLIP ViT-L/14, as in SD 1.x
    "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "attention_dropout": 0.0, "dropout": 0.0,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "hidden_act": "quick_gelu", "hidden_size": 768,
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77, "num_attention_heads": 12, "num_hidden_layers": 12, "projection_dim": 768,
    "vocab_size": 49408,
}
SDXL_TEXT_ENCODER_2 = {  # the text half of OpenCLIP ViT-bigG/14, with its projection
    "architectures": ["CLIPTextModelWithProjection"], "model_type": "clip_text_model", "attention_dropout": 0.0,
    "dropout": 0.0, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "hidden_act": "gelu",
    "hidden_size": 1280, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 5120,
    "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "num_attention_heads": 20, "num_hidden_layers": 32,
    "projection_dim": 1280, "vocab_size": 49408,
}
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "clip_sample": False, "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None,
    "use_karras_sigmas": False,
}
SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0", "force_zeros_for_empty_prompt": True,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
CONFIGS = {"index": SDXL_INDEX, "unet": SDXL_UNET, "vae": SDXL_VAE, "text_encoder": SDXL_TEXT_ENCODER,
           "text_encoder_2": SDXL_TEXT_ENCODER_2, "scheduler": SDXL_SCHEDULER}
TOKENIZER_2_PAD = "!"  # OpenCLIP pads with zeros: the id of "!"


def is_xl_index(index: dict) -> bool:
    """Whether a model_index.json names an SDXL pipeline."""
    return str(index.get("_class_name", "")) in PIPELINES


def _index(root: Path) -> dict:
    """A pipeline's model_index.json, read as files.read_config reads it (sdxl.py sits below files.py: no import of
    it here)."""
    from studio.errors import ManifestError
    from studio.files import read_json

    path = root / "model_index.json"
    data = read_json(path, ManifestError, what="JSON file")
    if not isinstance(data, dict):
        raise ManifestError(f"not a JSON object (it holds {type(data).__name__})", path)
    return data


def _variant(folder: Path, stem: str) -> str | None:
    """diffusers' weights variant: None for `stem.safetensors`, "fp16" when only `stem.fp16.safetensors` is there."""
    return None if (folder / f"{stem}.safetensors").is_file() or not (folder / f"{stem}.fp16.safetensors").is_file() \
        else "fp16"


def is_xl_folder(root: Path) -> bool:
    """Whether a pipeline or config folder is SDXL (its model_index.json says so)."""
    return is_xl_index(_index(root))


def is_xl_checkpoint(keys: set[str]) -> bool:
    """Whether a single file's tensor names are SDXL base's original layout (both text encoders under
    conditioner.embedders.*)."""
    return any(k.startswith(TEXT_1_PREFIX) for k in keys) and any(k.startswith(TEXT_2_PREFIX) for k in keys)


def manifest_is_xl(manifest) -> bool:
    """Whether a stable-diffusion manifest names an SDXL model: a single file of the shipped "sdxl" architecture, or a
    pipeline / config folder whose model_index.json names an SDXL pipeline. False when that cannot be read (the
    checks that load the model say why)."""
    from studio.errors import StudioError

    arch = manifest.architecture
    config, source = arch.get("config", ""), arch.get("source", "")
    if config == "sdxl":
        return True
    folder = Path(config) if config else Path(str(source)).expanduser()
    if not folder.is_absolute():
        folder = manifest.folder / folder
    try:
        return folder.is_dir() and is_xl_folder(folder)
    except (StudioError, OSError):
        return False


def size_specs(manifest) -> list:
    """SDXL's micro-conditioning as parameters: the original size the picture claims to come from (0 = its own
    size) and the top-left corner of the crop it claims to be (0, 0 = uncropped), as diffusers' original_size and
    crops_coords_top_left. No parameters for other models."""
    if not manifest_is_xl(manifest):
        return []
    from studio.limits import MAX_SIDE  # an original size may be larger than any picture the model draws (4096²)
    from studio.params import SAMPLER, Kind, ParamSpec

    side = ("SDXL's size conditioning: the {} the model is told the picture had before it was resized (0: the "
            "picture's own). Small values look like upscaled low-resolution pictures")
    crop = ("SDXL's crop conditioning: how far from the {} edge the model is told the picture was cropped (0: "
            "uncropped, centred subjects; larger values cut them off)")
    return [ParamSpec("original_width", Kind.INT, "Original width", default=0, range=(0, MAX_SIDE),
                      group=SAMPLER, render_only=True, help=side.format("width")),
            ParamSpec("original_height", Kind.INT, "Original height", default=0, range=(0, MAX_SIDE),
                      group=SAMPLER, render_only=True, help=side.format("height")),
            ParamSpec("crop_left", Kind.INT, "Crop left", default=0, range=(0, MAX_SIDE), group=SAMPLER,
                      render_only=True, help=crop.format("left")),
            ParamSpec("crop_top", Kind.INT, "Crop top", default=0, range=(0, MAX_SIDE), group=SAMPLER,
                      render_only=True, help=crop.format("top"))]


# --- the second text encoder from a single file ---------------------------------------------------------------------

_OPEN_CLIP_LAYERS = {  # OpenCLIP name → transformers' name (diffusers' "openclip" layers mapping)
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
}
_OPEN_CLIP_BLOCK = (("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."),
                    ("mlp.c_proj.", "mlp.fc2."), ("attn.out_proj.", "self_attn.out_proj."))


def open_clip_state(tensors: dict[str, torch.Tensor], hidden: int, where: Path) -> dict[str, torch.Tensor]:
    """OpenCLIP text-tower weights (names after the `model.` prefix) as CLIPTextModelWithProjection's state dict:
    q/k/v split out of `attn.in_proj_*`, `text_projection` transposed (OpenCLIP computes x @ P, a Linear x @ Wᵀ)."""
    state: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        if name in _OPEN_CLIP_LAYERS:
            state[_OPEN_CLIP_LAYERS[name]] = value
        elif name == "text_projection":
            if value.ndim != 2:
                raise WeightsError(f"{TEXT_2_PREFIX}{name} has shape {list(value.shape)}, expected a matrix", where)
            state["text_projection.weight"] = value.T.contiguous()
        elif name.startswith("transformer.resblocks."):
            number, _, rest = name.removeprefix("transformer.resblocks.").partition(".")
            block = f"text_model.encoder.layers.{number}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                if value.ndim == 0 or value.shape[0] != 3 * hidden:
                    raise WeightsError(f"{TEXT_2_PREFIX}{name} has shape {list(value.shape)}, expected {3 * hidden} "
                                       "rows (q, k, v)", where)
                kind = "weight" if rest.endswith("weight") else "bias"
                for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                    state[f"{block}self_attn.{proj}.{kind}"] = value[i * hidden:(i + 1) * hidden].clone()
            else:
                for a, b in _OPEN_CLIP_BLOCK:
                    if rest.startswith(a):
                        rest = b + rest[len(a):]
                        break
                state[block + rest] = value
        # anything else (logit_scale, the attention mask buffer) is not part of the text encoder
    return state


def read_prefixed(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file under `prefix` (the prefix removed), in float32."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key.startswith(prefix):
                out[key[len(prefix):]] = f.get_tensor(key).float()
    return out


def fit_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Load `state` into `model` whole: WeightsError naming the file when names or shapes do not fit."""
    own = model.state_dict()
    wants_prefix = any(k.startswith("text_model.") for k in own)  # transformers 4 keeps text_model.*, 5 drops it

    def name(key: str) -> str:
        bare = key.removeprefix("text_model.")
        return f"text_model.{bare}" if wants_prefix and bare != "text_projection.weight" else bare

    state = {name(k): v for k, v in state.items() if not k.endswith("position_ids")}  # a buffer older files carry
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise WeightsError(f"the {what} does not fit: {bad[0]} is {list(state[bad[0]].shape)}, the model needs "
                           f"{list(own[bad[0]].shape)}", path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise WeightsError(f"the {what} does not fit: {len(missing)} missing (e.g. {', '.join(missing[:3]) or '-'}),"
                           f" {len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3]) or '-'})", path)


# --- loading --------------------------------------------------------------------------------------------------------


class SDXLText(nn.Module):
    """SDXL's second text encoder and tokenizer, and what the UNet's added conditions need. A submodule of SDNetwork
    (`net.xl`), so it moves and casts with the rest."""

    def __init__(self, text_encoder_2: CLIPTextModelWithProjection, tokenizer_2, force_zeros: bool):
        super().__init__()
        self.text_encoder_2 = text_encoder_2
        self.tokenizer_2 = tokenizer_2
        self.force_zeros = force_zeros
        self._texts: OrderedDict = OrderedDict()
        self._book_2 = None  # textual inversions for the second encoder (book_2)

    def forward(self, *args, **kwargs):  # pragma: no cover - the family drives the parts
        raise RuntimeError("SDXLText is driven by the stable-diffusion family, not called")

    def _apply(self, fn, *args, **kwargs):
        self._texts.clear()  # embeddings live on the old device / dtype
        return super()._apply(fn, *args, **kwargs)

    def book_2(self, net):
        """The textual-inversion embeddings for the second encoder (their `clip_g` vectors): the same folders as the
        first encoder's book (net.embeddings), made when first needed; None when the model has no book."""
        first = getattr(net, "embeddings", None)
        if first is None:
            return None
        if self._book_2 is None or self._book_2.folders != first.folders:
            from studio.families.stable_diffusion.embeddings import EmbeddingBook

            self._book_2 = EmbeddingBook(first.folders, self.tokenizer_2,
                                         int(self.text_encoder_2.config.hidden_size))
        return self._book_2

    def encode(self, net, prompt: str):
        """`prompt` read the AUTOMATIC1111 way through both encoders (xl_prompts.py): (context (1, 77·chunks,
        D₁ + D₂), pooled (1, P) from the first chunk, the parsed prompt), kept for the last TEXT_CACHE prompts."""
        from studio.families.stable_diffusion.xl_prompts import encode_xl_prompt

        book, book_2 = getattr(net, "embeddings", None), self.book_2(net)
        key = (prompt, book.refresh() if book is not None else (), book_2.refresh() if book_2 is not None else ())
        if key in self._texts:
            self._texts.move_to_end(key)
            return self._texts[key]
        text = encode_xl_prompt(prompt, net.tokenizer, net.text_encoder, self.tokenizer_2, self.text_encoder_2,
                                book, book_2)
        entry = (text.context, text.pooled, text.parsed)
        self._texts[key] = entry
        while len(self._texts) > TEXT_CACHE:
            self._texts.popitem(last=False)
        return entry

    def conditions(self, net, prompt: str, negative: str, guided: bool, size: tuple[int, int],
                   original: tuple[int, int] | None = None, crop: tuple[int, int] = (0, 0)
                   ) -> tuple[torch.Tensor, dict]:
        """(the UNet's context: [prompt, negative] when guided, else [prompt]; its `added_cond_kwargs` in the same
        order). `size` and `original` are (height, width), `crop` is (top, left).

        An empty negative prompt is zeros (context and pooled) when the model says so, as diffusers does and as
        A1111 always does for SDXL; a prompt longer than one chunk then gets zeros as long as itself, which draws what
        A1111 draws (it runs the shorter negative in a pass of its own, and a zero context attends to nothing: SDXL's
        attention keys and values have no bias). Otherwise the shorter of prompt and negative is padded with the empty
        prompt's states per missing chunk (A1111's "pad prompt/negative prompt to be same length", prompts.pair)."""
        from studio.families.stable_diffusion.prompts import pair

        cond, pooled, _ = self.encode(net, prompt)
        context = cond
        if guided:
            if not negative and self.force_zeros:
                uncond, pooled_neg = torch.zeros_like(cond), torch.zeros_like(pooled)
            else:
                uncond, pooled_neg, _ = self.encode(net, negative)
                if uncond.shape[1] != cond.shape[1]:
                    cond, uncond = pair(cond, uncond, self.encode(net, "")[0])
            context = torch.cat([cond, uncond])
            pooled = torch.cat([pooled, pooled_neg])
        ids = torch.tensor([[*(original or size), *crop, *size]], dtype=cond.dtype, device=cond.device)
        return context, {"text_embeds": pooled, "time_ids": ids.repeat(len(pooled), 1)}

    def request_conditions(self, net, request, guided: bool, size: tuple[int, int], prompt: str | None = None):
        """`conditions` for a request: its prompt (or `prompt`, the request's without its LoRA tags), negative
        prompt, and the size and crop it claims (`size_specs`)."""
        height, width = size
        original = (int(request.param("original_height", 0) or height),
                    int(request.param("original_width", 0) or width))
        crop = (int(request.param("crop_top", 0)), int(request.param("crop_left", 0)))
        return self.conditions(net, request.param("prompt", "") if prompt is None else prompt,
                               request.param("negative_prompt", ""), guided, size, original, crop)


def check_added_embedding(unet, text_encoder_2, where: Path) -> None:
    """The UNet's added embedding takes the pooled text (encoder 2's projection) and six size numbers: refuse a
    model whose parts disagree (diffusers' own check), naming the file."""
    time_dim = unet.config.get("addition_time_embed_dim")
    expected = getattr(getattr(unet, "add_embedding", None), "linear_1", None)
    if unet.config.get("addition_embed_type") != "text_time" or not isinstance(time_dim, int) or expected is None:
        raise WeightsError("an SDXL pipeline needs a UNet with addition_embed_type \"text_time\"", where)
    passed = 6 * time_dim + int(text_encoder_2.config.projection_dim)
    if expected.in_features != passed:
        raise WeightsError(f"the UNet's added embedding takes {expected.in_features} numbers, but the second text "
                           f"encoder's projection ({text_encoder_2.config.projection_dim}) and six size numbers of "
                           f"{time_dim} give {passed}", where)


def load_second_encoder(root: Path, weights_file: Path | None) -> SDXLText:
    """SDXL's second text encoder (on the CPU in float32, like the other parts) and tokenizer: from a pipeline
    folder's text_encoder_2/ and tokenizer_2/, or from a single file's conditioner.embedders.1.model.* with the config
    folder's text_encoder_2/config.json."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    folder = root / "text_encoder_2"
    if weights_file is None:
        text = CLIPTextModelWithProjection.from_pretrained(str(folder), use_safetensors=True, local_files_only=True,
                                                           variant=_variant(folder, "model"), torch_dtype=torch.float32)
    else:
        text = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder), local_files_only=True))
        tensors = read_prefixed(weights_file, TEXT_2_PREFIX)
        if not tensors:
            raise WeightsError(f"an SDXL checkpoint needs its second text encoder ({TEXT_2_PREFIX}*)", weights_file)
        fit_state(text, open_clip_state(tensors, int(text.config.hidden_size), weights_file), weights_file,
                  "second text encoder (OpenCLIP ViT-bigG)")
    from studio.families.stable_diffusion.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(root / "tokenizer_2")
    force = _index(root).get("force_zeros_for_empty_prompt", True)
    return SDXLText(text.eval(), tokenizer, force is not False)


def first_encoder_from_file(path: Path, model: CLIPTextModel) -> CLIPTextModel:
    """SDXL's first text encoder (CLIP ViT-L) from a single file: conditioner.embedders.0.transformer.* with
    transformers' own names."""
    tensors = read_prefixed(path, TEXT_1_PREFIX)
    if not tensors:
        raise WeightsError(f"an SDXL checkpoint needs its first text encoder ({TEXT_1_PREFIX}*)", path)
    fit_state(model, tensors, path, "first text encoder (CLIP ViT-L)")
    return model

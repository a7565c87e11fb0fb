"""Stable Diffusion files on the user's disk: diffusers pipeline folders and single-file checkpoints, opened offline.

- A **pipeline folder** (what diffusers' `save_pretrained` writes): `model_index.json` plus `unet/`, `vae/`,
  `text_encoder/`, `tokenizer/` and `scheduler/`, each with its config and safetensors weights. Every part is checked
  before anything loads, and a missing or pickled part is named.
- A **single-file checkpoint** (`.safetensors` in the original Stable Diffusion layout, as model sites share them)
  holds weights only. diffusers' `from_single_file` needs a config folder beside it to work offline; the app writes
  one for each architecture it supports from numbers written down here (`ARCHITECTURES`), with CLIP's tokenizer built
  from the BPE file the app ships (`studio/data/bpe_simple_vocab_16e6.txt.gz`, from the open-clip-torch wheel).

Nothing is ever fetched: the Hugging Face offline switches are set before diffusers or transformers is imported, and
every load passes `local_files_only=True`. Only safetensors weights are read (`use_safetensors=True`): a part that
exists only as a pickle (`.bin`, `.ckpt`) is refused with the way to convert it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from studio.errors import ManifestError, StudioError, WeightsError
from studio.families.stable_diffusion import sdxl
from studio.files import check_regular, is_regular, read_json, read_text
from studio.io.safetensors import read_header
from studio.families.stable_diffusion.tokenizers import (TOKENIZER_JSON, check_tokenizer_json, has_bpe_files,
                                                         has_tokenizer_json, layout_problem)
from studio.limits import MAX_JSON_BYTES, MAX_PARAMETERS, MAX_SIDE, MAX_VOCABULARY, MAX_WIDTH, quote

PIPELINE_INDEX = "model_index.json"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHT_NAMES = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"  # every original-layout SD checkpoint has it
SD1_TEXT_KEY = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
# diffusers' convert_diffusers_to_original_stable_diffusion.py writes the text encoder's own parameter names under
# cond_stage_model.transformer.; transformers 5 names them without `text_model.`
HF5_TEXT_KEY = "cond_stage_model.transformer.embeddings.token_embedding.weight"
SD2_TEXT_KEY = "cond_stage_model.model.token_embedding.weight"  # OpenCLIP ViT-H (SD 2.x's original layout)
OPENCLIP_PREFIX = "cond_stage_model.model."
TEXT_PREFIX = "cond_stage_model.transformer."
SD2_WIDTH = 1024  # OpenCLIP ViT-H's text width; CLIP ViT-L/14's is 768
SDXL_KEY = "conditioner.embedders.1.model.ln_final.weight"


class MissingExtra(StudioError):
    """The optional packages for Stable Diffusion (diffusers, transformers) are not installed."""


def set_offline() -> None:
    """The Hugging Face libraries' offline switches (read when they are first imported): nothing is fetched."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def require_diffusers():
    """Import diffusers and transformers (offline), or say how to install them."""
    set_offline()
    try:
        import diffusers
        import transformers
    except ImportError as exc:
        raise MissingExtra(f"Stable Diffusion needs the optional packages diffusers and transformers ({exc.name} is "
                           "missing): pip install 'latent-studio[diffusers]'") from None

    transformers.logging.set_verbosity_error()  # "weights not initialised" chatter about unused heads
    diffusers.logging.set_verbosity_error()
    return diffusers, transformers


# --- architectures: the configs of the models the app can open from a single file --------------------------------

SD1_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD1_VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "norm_num_groups": 32, "out_channels": 3, "sample_size": 512, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}
SD1_TEXT_ENCODER = {  # the text half of OpenAI's CLIP ViT-L/14
    "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "attention_dropout": 0.0, "dropout": 0.0,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "hidden_act": "quick_gelu", "hidden_size": 768,
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77, "num_attention_heads": 12, "num_hidden_layers": 12, "projection_dim": 768,
    "vocab_size": 49408,
}
SD1_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "clip_sample": False, "prediction_type": "epsilon", "trained_betas": None,
}
SD1_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0", "requires_safety_checker": False,
    "feature_extractor": [None, None], "safety_checker": [None, None], "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
}


def _inpainting(arch: dict) -> dict:
    """The configs of an architecture's inpainting checkpoints: a UNet with 9 input channels (the noisy latent, the
    mask and the masked picture's latent), as runwayml's and Stability's inpainting releases have."""
    index = {**arch["index"], "_class_name": "StableDiffusionInpaintPipeline"}
    return {**arch, "index": index, "unet": {**arch["unet"], "in_channels": 9}}


# Stable Diffusion 2.x: the same VAE; a UNet with linear projections and per-level head widths, conditioned on
# OpenCLIP ViT-H/14's penultimate layer (23 of its 24 blocks, as diffusers' stable-diffusion-2 folders hold it)
SD2_UNET = {**SD1_UNET, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": SD2_WIDTH,
            "use_linear_projection": True, "upcast_attention": False}
SD2_TEXT_ENCODER = {**SD1_TEXT_ENCODER, "hidden_act": "gelu", "hidden_size": SD2_WIDTH, "intermediate_size": 4096,
                    "num_attention_heads": 16, "num_hidden_layers": 23, "projection_dim": 512}
SD2_SCHEDULER = {**SD1_SCHEDULER, "prediction_type": "epsilon"}
SD2V_SCHEDULER = {**SD1_SCHEDULER, "_class_name": "DDIMScheduler", "prediction_type": "v_prediction"}


@dataclass(frozen=True)
class Architecture:
    name: str
    title: str
    configs: dict  # part → config dict (model_index.json under "index")
    pad_token: str = "<|endoftext|>"

    @property
    def image_size(self) -> int:
        return int(self.configs["unet"]["sample_size"]) * 2 ** (len(self.configs["vae"]["block_out_channels"]) - 1)


_SD1 = {"index": SD1_INDEX, "unet": SD1_UNET, "vae": SD1_VAE, "text_encoder": SD1_TEXT_ENCODER,
        "scheduler": SD1_SCHEDULER}
_SD2 = {**_SD1, "unet": SD2_UNET, "text_encoder": SD2_TEXT_ENCODER, "scheduler": SD2_SCHEDULER}
_SD2V = {**_SD2, "unet": {**SD2_UNET, "sample_size": 96, "upcast_attention": True}, "scheduler": SD2V_SCHEDULER}
ARCHITECTURES = {
    "sd-v1": Architecture("sd-v1", "Stable Diffusion 1.x (512 px, CLIP ViT-L/14 text encoder)", _SD1),
    "sd-v1-inpainting": Architecture("sd-v1-inpainting", "Stable Diffusion 1.x inpainting (512 px, 9-channel UNet)",
                                     _inpainting(_SD1)),
    "sd-v2": Architecture("sd-v2", "Stable Diffusion 2.x base (512 px, ε prediction, OpenCLIP ViT-H text encoder)",
                          _SD2, pad_token="!"),
    "sd-v2-v": Architecture("sd-v2-v", "Stable Diffusion 2.x (768 px, v prediction, OpenCLIP ViT-H text encoder)",
                            _SD2V, pad_token="!"),
    "sd-v2-inpainting": Architecture("sd-v2-inpainting", "Stable Diffusion 2.x inpainting (512 px, 9-channel UNet)",
                                     _inpainting(_SD2), pad_token="!"),
    "sdxl": Architecture("sdxl", "Stable Diffusion XL base (1024 px, CLIP ViT-L and OpenCLIP ViT-bigG text encoders)",
                         sdxl.CONFIGS),
}


# --- CLIP's tokenizer from the shipped BPE merges ------------------------------------------------------------------


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes, in vocabulary order (GPT-2's table): first the 188
    bytes that print as themselves, as their own characters in byte order; then the other 68 bytes (controls, space,
    DEL, the non-breaking space, the soft hyphen), in byte order, as the code points 256, 257, …"""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(keep)]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(others))]


def clip_vocabulary(bpe_path: Path | None = None) -> tuple[dict[str, int], list[str]]:
    """(token → id, merges) of CLIP's tokenizer: the 256 byte symbols, the same with the end-of-word mark `</w>`,
    one token per merge (the first 48,894 merges of the shipped file), then the start and end markers: 49,408."""
    path = bpe_path or shipped_bpe()
    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise WeightsError(f"cannot read CLIP's BPE vocabulary: {exc}", path) from None
    merges = lines[1:49152 - 256 - 2 + 1]
    if len(merges) != 48894 or not all(len(m.split()) == 2 for m in merges):
        raise WeightsError("not CLIP's BPE vocabulary (expected 48,894 merges after a header line)", path)
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def shipped_bpe() -> Path:
    path = Path(str(resources.files("studio") / "data" / BPE_FILE))
    if not path.is_file():
        raise WeightsError("CLIP's BPE vocabulary is missing from the app's data folder (reinstall the app)", path)
    return path


def write_tokenizer(folder: Path, pad_token: str = "<|endoftext|>", max_length: int = 77) -> Path:
    """A CLIPTokenizer folder (vocab.json, merges.txt, configs) built from the shipped BPE file."""
    vocab, merges = clip_vocabulary()
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "vocab.json", vocab)
    _write_text(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                "pad_token": pad_token}
    _write_json(folder / "special_tokens_map.json", specials)
    _write_json(folder / "tokenizer_config.json", {**specials, "tokenizer_class": "CLIPTokenizer",
                                                   "model_max_length": max_length, "do_lower_case": True,
                                                   "clean_up_tokenization_spaces": True})
    return folder


def _write_json(path: Path, data) -> None:
    _write_text(path, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def config_folder(name: str, root: Path | None = None) -> Path:
    """The config folder of a shipped architecture (configs, tokenizer and scheduler; no weights), written once to
    the user's cache folder (or `root`) and rewritten when what it should hold changes."""
    if name not in ARCHITECTURES:
        raise ManifestError(f"unknown Stable Diffusion architecture {name!r} (known: {', '.join(ARCHITECTURES)})",
                            field="architecture.config")
    arch = ARCHITECTURES[name]
    from studio import __version__
    from studio.paths import user_cache_dir

    stamp = hashlib.sha256(json.dumps([arch.configs, arch.pad_token, shipped_bpe().stat().st_size],
                                      sort_keys=True).encode()).hexdigest()[:16]
    folder = (root or user_cache_dir() / "sd-configs") / f"{name}-{stamp}"
    if (folder / ".complete").is_file():
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / PIPELINE_INDEX, arch.configs["index"])
        for part in ("unet", "vae", "text_encoder", *(["text_encoder_2"] if "text_encoder_2" in arch.configs else [])):
            (folder / part).mkdir(exist_ok=True)
            _write_json(folder / part / "config.json", arch.configs[part])
        (folder / "scheduler").mkdir(exist_ok=True)
        _write_json(folder / "scheduler" / "scheduler_config.json", arch.configs["scheduler"])
        write_tokenizer(folder / "tokenizer", arch.pad_token)
        if "text_encoder_2" in arch.configs:  # SDXL's second tokenizer pads with "!" (sdxl.py)
            write_tokenizer(folder / "tokenizer_2", sdxl.TOKENIZER_2_PAD)
        _write_text(folder / ".complete", f"written by latent-studio {__version__}\n")
    except OSError as exc:
        raise StudioError(f"cannot write the {arch.title} config folder: {exc.strerror or exc}", folder) from None
    return folder


# --- what is on disk ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A Stable Diffusion model found on disk: a pipeline folder or a single file, and its architecture config."""

    path: Path
    kind: str  # "folder" | "file"
    config: str  # for a file: the name of a shipped architecture or a config folder; for a folder: ""
    weights: tuple[Path, ...]  # the safetensors files that make the model (hashed together)

    @property
    def title(self) -> str:
        return self.path.stem if self.kind == "file" else self.path.name


def safetensors_keys(path: Path) -> set[str]:
    """The tensor names in a safetensors file, read from its header alone; WeightsError when it is not one."""
    return set(read_header(path).tensors)


def checkpoint_architecture(path: Path) -> str:
    """The shipped architecture a single-file checkpoint has, from its tensor names and shapes (the header alone);
    WeightsError naming what it is when the app cannot open it.

    SD 1.x and 2.x are told apart by their text encoder: CLIP ViT-L/14 (768 wide) under cond_stage_model.transformer.
    (the original release layout, and diffusers' converter under transformers 4 and 5), OpenCLIP ViT-H (1024 wide)
    under cond_stage_model.model. (and under cond_stage_model.transformer. where diffusers' converter ran under
    transformers 5, which hides the 2.x test it makes). A UNet taking 9 channels is an inpainting checkpoint. SD 2.x
    files do not say whether they predict ε (the 512-px base) or v (the 768-px models): v, as diffusers assumes,
    unless a config beside the file says otherwise (`sd2_prediction`)."""
    tensors = read_header(path).tensors
    keys = set(tensors)
    if UNET_KEY not in keys:
        raise WeightsError("not a Stable Diffusion checkpoint (no model.diffusion_model.* weights); the app opens "
                           "full SD 1.x / 2.x and SDXL base checkpoints, not LoRAs, VAEs or text encoders alone", path)
    if sdxl.is_xl_checkpoint(keys):
        return "sdxl"
    if SDXL_KEY in keys or any(k.startswith("conditioner.embedders.") for k in keys):
        raise WeightsError("an SDXL checkpoint without both text encoders (conditioner.embedders.0.transformer.* "
                           "and conditioner.embedders.1.model.*): the app opens SDXL base checkpoints, not the "
                           "refiner or UNet-only files", path)
    unet_in = tensors[UNET_KEY][1]
    inpainting = len(unet_in) == 4 and unet_in[1] == 9
    if SD2_TEXT_KEY in keys:
        version = "sd-v2"
    else:
        text = next((k for k in (SD1_TEXT_KEY, HF5_TEXT_KEY) if k in keys), None)
        if text is None:
            raise WeightsError("the checkpoint has no text encoder (neither CLIP's cond_stage_model.transformer.* "
                               "nor OpenCLIP's cond_stage_model.model.*); the app needs a full SD 1.x / 2.x "
                               "checkpoint", path)
        shape = tensors[text][1]
        version = "sd-v2" if len(shape) == 2 and shape[1] == SD2_WIDTH else "sd-v1"
    if inpainting:
        return f"{version}-inpainting"
    if version == "sd-v2" and sd2_prediction(path) == "v_prediction":
        return "sd-v2-v"
    return version


SIDE_CONFIG_SUFFIXES = (".yaml", ".yml")
MAX_SIDE_CONFIG_BYTES = 1 << 20


def side_config(path: Path) -> Path | None:
    """The original-repo config beside a checkpoint (`<name>.yaml`, as AUTOMATIC1111 and ComfyUI read it), if any."""
    for suffix in SIDE_CONFIG_SUFFIXES:
        beside = path.with_suffix(suffix)
        if beside.is_file():
            return beside
    return None


def sd2_prediction(path: Path) -> str:
    """What an SD 2.x single file predicts: "v_prediction" unless `<name>.yaml` beside it is an original-repo config
    without `parameterization: "v"` (v2-inference.yaml, the 512-px base's), then "epsilon". Only that one key is
    read (a bounded text file; nothing else in it is interpreted)."""
    beside = side_config(path)
    if beside is None:
        return "v_prediction"
    text = read_text(beside, ManifestError, max_bytes=MAX_SIDE_CONFIG_BYTES, what="config file")
    found = re.search(r"""^\s*parameterization\s*:\s*["']?([A-Za-z_]+)["']?\s*(#.*)?$""", text, re.MULTILINE)
    return "v_prediction" if found and found.group(1) == "v" else "epsilon"


def text_encoder_state(path: Path, layers: int) -> dict:
    """The text encoder of a single file as transformers' CLIPTextModel names it (with `text_model.`), in float32:
    CLIP from cond_stage_model.transformer.* (with or without `text_model.`), or OpenCLIP from
    cond_stage_model.model.* converted (q, k, v split out of in_proj; blocks past `layers` dropped: SD 2.x uses the
    penultimate layer). Position-id buffers older files carry are left out."""
    from safetensors import safe_open

    state = {}
    with safe_open(str(path), framework="pt") as f:
        names = list(f.keys())
        if any(k.startswith(OPENCLIP_PREFIX) for k in names):
            for key in names:
                if key.startswith(OPENCLIP_PREFIX):
                    state.update(_openclip_to_clip(key[len(OPENCLIP_PREFIX):], f.get_tensor(key).float(), layers))
            return state
        for key in names:
            if key.startswith(TEXT_PREFIX) and not key.endswith("position_ids"):
                state["text_model." + key[len(TEXT_PREFIX):].removeprefix("text_model.")] = f.get_tensor(key).float()
    return state


_OPENCLIP_NAMES = (("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."),
                   ("mlp.c_proj.", "mlp.fc2."), ("attn.out_proj.", "self_attn.out_proj."))


def _openclip_to_clip(key: str, value, layers: int) -> dict:
    """One OpenCLIP text tensor → the CLIPTextModel tensors it becomes ({} for those SD does not use)."""
    if key == "token_embedding.weight":
        return {"text_model.embeddings.token_embedding.weight": value}
    if key == "positional_embedding":
        return {"text_model.embeddings.position_embedding.weight": value}
    if key.startswith("ln_final."):
        return {"text_model.final_layer_norm." + key[len("ln_final."):]: value}
    found = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", key)
    if not found or int(found.group(1)) >= layers:
        return {}  # text_projection, logit_scale, the last block (SD 2.x conditions on the penultimate one)
    block, rest = f"text_model.encoder.layers.{found.group(1)}.", found.group(2)
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = rest.rsplit("_", 1)[1]
        if value.shape[0] % 3:
            return {block + rest: value}  # left for load_state_dict to name as unexpected
        q, k, v = value.chunk(3, dim=0)
        return {f"{block}self_attn.{n}_proj.{kind}": t for n, t in (("q", q), ("k", k), ("v", v))}
    for a, b in _OPENCLIP_NAMES:
        if rest.startswith(a):
            return {block + b + rest[len(a):]: value}
    return {block + rest: value}


def find_source(path: str | Path, config: str = "") -> Source:
    """Check a pipeline folder or a single file before anything loads; errors name the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ManifestError("no such file or folder", path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            raise WeightsError("a pickle checkpoint: the app never loads pickles. Convert it first: "
                               f"latent-studio import {path.name} --sd (writes a .safetensors beside it)", path)
        if suffix != ".safetensors":
            raise WeightsError("expected a .safetensors Stable Diffusion checkpoint or a diffusers pipeline folder",
                               path)
        arch = config or checkpoint_architecture(path)
        if config and config not in ARCHITECTURES and not (Path(config) / PIPELINE_INDEX).is_file():
            raise ManifestError(f"{config!r} is neither a shipped architecture ({', '.join(ARCHITECTURES)}) nor a "
                                f"config folder with {PIPELINE_INDEX}", path, "architecture.config")
        return Source(path, "file", arch, (path,))
    index = path / PIPELINE_INDEX
    if not index.exists() and not index.is_symlink():
        raise ManifestError(f"not a diffusers pipeline folder: {PIPELINE_INDEX} is missing", path)
    try:
        data = read_config(index)
    except ManifestError as exc:
        raise ManifestError(f"{PIPELINE_INDEX} is not readable JSON: {exc.problem}", index, exc.field) from None
    if data.get("_class_name") not in ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", None,
                                       *sdxl.PIPELINES):
        raise ManifestError(f"a {str(data.get('_class_name'))[:80]} folder: the app opens Stable Diffusion (1.x, "
                            "2.x, XL base) pipelines", index, "_class_name")
    problems, weights = [], []
    for part in PARTS + (sdxl.EXTRA_PARTS if sdxl.is_xl_index(data) else ()):
        folder = path / part
        if not folder.is_dir():
            problems.append(f"{part}/ is missing")
            continue
        if part in ("tokenizer", "tokenizer_2"):
            if layout_problem(folder, part):  # transformers 5 saves tokenizer.json alone, 4 vocab.json + merges.txt
                problems.append(layout_problem(folder, part))
            continue
        configs = ["scheduler_config.json"] if part == "scheduler" else ["config.json"]
        if not any((folder / c).is_file() for c in configs):
            problems.append(f"{part}/{configs[0]} is missing")
        if part == "scheduler":
            continue
        found = sorted(folder.glob("*.safetensors"))
        plain = [p for p in found if ".fp16." not in p.name] or found
        for weights_path in plain:  # a FIFO or a link to /dev/zero named *.safetensors is refused here
            check_regular(weights_path, WeightsError, what="weights file")
        if plain:
            weights.extend(plain)
        else:
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
            problems.append(f"{part}/ has no safetensors weights" + (
                f" (only {', '.join(pickles)}: pickles are never loaded; save the pipeline again with "
                "safe_serialization=True)" if pickles else ""))
    if problems:
        raise ManifestError("incomplete diffusers pipeline folder: " + "; ".join(problems), path)
    return Source(path, "folder", "", tuple(weights))


def read_config(path: Path, error: type[StudioError] = ManifestError) -> dict:
    """A pipeline's JSON part (model_index.json, a config): a regular file of at most MAX_JSON_BYTES, nested at most
    MAX_JSON_DEPTH deep, holding an object; `error` naming the file otherwise."""
    data = read_json(path, error, what="JSON file")
    if not isinstance(data, dict):
        raise error(f"not a JSON object (it holds {type(data).__name__})", path)
    return data


def check_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer folder as transformers will read it: tokenizer.json, where there is one, a bounded BPE
    model (`tokenizers.check_tokenizer_json`); vocab.json, where there is one or no tokenizer.json, an object of at
    most MAX_VOCABULARY tokens, each text → a whole number id, and merges.txt at most MAX_VOCABULARY lines of two
    symbols after its `#version` header; every other JSON part a readable object. WeightsError naming the file
    otherwise."""
    if has_tokenizer_json(folder):
        check_tokenizer_json(folder / TOKENIZER_JSON)
    if has_tokenizer_json(folder) and not has_bpe_files(folder):
        for extra in sorted(folder.glob("*.json")):
            if extra.name != TOKENIZER_JSON:
                read_config(extra, WeightsError)
        return
    vocab_path = folder / "vocab.json"
    vocab = read_config(vocab_path, WeightsError)
    if len(vocab) > MAX_VOCABULARY:
        raise WeightsError(f"{len(vocab):,} tokens is over the limit of {MAX_VOCABULARY:,}", vocab_path)
    for token, index in vocab.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_VOCABULARY:
            raise WeightsError(f"the id of token {quote(token, 60)} must be a whole number in 0..{MAX_VOCABULARY - 1},"
                               f" got {quote(index, 60)}", vocab_path)
    merges_path = folder / "merges.txt"
    lines = read_text(merges_path, WeightsError, max_bytes=MAX_JSON_BYTES, what="merges file").split("\n")
    if len(lines) > MAX_VOCABULARY + 2:
        raise WeightsError(f"{len(lines):,} lines is over the limit of {MAX_VOCABULARY:,} merges", merges_path)
    for number, line in enumerate(lines, 1):
        if line.strip() and not (number == 1 and line.startswith("#")) and len(line.split()) != 2:
            raise WeightsError(f"line {number} is not a merge of two symbols: {quote(line, 80)}", merges_path)
    for extra in sorted(folder.glob("*.json")):
        if extra.name not in ("vocab.json", TOKENIZER_JSON):
            read_config(extra, WeightsError)


def _count(make) -> int:
    import torch

    with torch.device("meta"):
        net = make()
    return sum(p.numel() for p in net.parameters())


def check_parts(root: Path, with_weights_configs: bool = True) -> None:
    """Every part file of a pipeline or config folder read through studio.files before diffusers or transformers
    opens it: configs (regular files, size- and depth-checked objects), the tokenizer (`check_tokenizer`), and the
    networks the configs describe counted on the meta device (no memory allocated): at most MAX_PARAMETERS in all,
    no channel count over MAX_WIDTH. ManifestError / WeightsError naming the file."""
    require_diffusers()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    xl = sdxl.is_xl_index(read_config(root / PIPELINE_INDEX))
    configs = {part: read_config(root / part / "config.json")
               for part in ("unet", "vae", "text_encoder", *(["text_encoder_2"] if xl else []))}
    read_config(root / "scheduler" / "scheduler_config.json")
    check_tokenizer(root / "tokenizer")
    if xl:
        check_tokenizer(root / "tokenizer_2")
    for part in ("unet", "vae"):
        channels = configs[part].get("block_out_channels", [])
        if not isinstance(channels, list) or len(channels) > 16 or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 < c <= MAX_WIDTH for c in channels):
            raise ManifestError(f"must be at most 16 whole numbers from 1 to {MAX_WIDTH:,}, got {quote(channels)}",
                                root / part / "config.json", "block_out_channels")
    makers = {"unet": lambda: UNet2DConditionModel.from_config(configs["unet"]),
              "vae": lambda: AutoencoderKL.from_config(configs["vae"]),
              "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))}
    if xl:
        makers["text_encoder_2"] = lambda: CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"]))
    total = 0
    for part, make in makers.items():
        where = root / part / "config.json"
        try:
            total += _count(make)
        except StudioError:
            raise
        except Exception as exc:  # a config diffusers/transformers cannot build: name the file, never crash
            raise ManifestError(f"cannot build the {part.replace('_', ' ')} it describes: "
                                f"{quote(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)}",
                                where) from None
        if total > MAX_PARAMETERS:
            raise ManifestError(f"the model would have over {total:,} parameters, over the limit of "
                                f"{MAX_PARAMETERS:,}", where)


def check_side(unet: dict, vae: dict, where: Path) -> tuple[int, int, int]:
    """(native side in pixels, the VAE's scale, latent channels) from the UNet and VAE configs, each checked: the
    side at most MAX_SIDE, the channels at most MAX_WIDTH. ManifestError naming the file otherwise."""
    try:
        blocks = vae["block_out_channels"]
        sample = unet["sample_size"]
        channels = vae.get("latent_channels", 4)
        if not isinstance(blocks, list) or not 1 <= len(blocks) <= 16:
            raise ValueError(f"vae block_out_channels must be a list of 1 to 16 numbers, got {quote(blocks, 80)}")
        for name, value in (("sample_size", sample), ("latent_channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive whole number, got {quote(value, 80)}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"the UNet / VAE configs lack what sizes the model: {exc}", where) from None
    scale = 2 ** (len(blocks) - 1)
    side = min(sample, MAX_SIDE + 1) * scale
    if side > MAX_SIDE:
        raise ManifestError(f"a native side of {quote(sample)} × {scale} pixels is over the limit of {MAX_SIDE:,}",
                            where, "unet.sample_size")
    if channels > MAX_WIDTH:
        raise ManifestError(f"{quote(channels)} latent channels is over the limit of {MAX_WIDTH:,}", where,
                            "vae.latent_channels")
    return side, scale, channels


def looks_like_sd(path: str | Path) -> bool:
    """Whether `path` is meant as a Stable Diffusion model (a pipeline folder, or a .safetensors file that is not a
    package's own weights): decides which checks a path gets, not whether it is valid."""
    path = Path(path)
    if path.is_dir():
        return (path / PIPELINE_INDEX).is_file() and not (path / "model.toml").is_file()
    return path.suffix.lower() == ".safetensors" and not (path.parent / "model.toml").is_file()


_HASHES: dict[tuple, str] = {}


def source_sha256(source: Source) -> str:
    """The model's identity: the sha256 of the file, or for a folder the sha256 of its parts' names and hashes.
    Hashing gigabytes takes seconds, so results are kept per (path, size, time) for the session and in the cache."""
    from studio.io.weights import sha256_file

    if source.kind == "file":
        return _cached_sha(source.path, sha256_file)
    digest = hashlib.sha256()
    for path in source.weights:
        digest.update(f"{path.relative_to(source.path).as_posix()}\0{_cached_sha(path, sha256_file)}\n".encode())
    return digest.hexdigest()


def _cached_sha(path: Path, compute) -> str:
    from studio.paths import user_cache_dir

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    store = user_cache_dir() / "sha256.json"
    try:
        table = json.loads(store.read_text(encoding="utf-8")) if store.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        table = {}
    text = "\0".join(map(str, key))
    sha = table.get(text) if isinstance(table, dict) else None
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        sha = compute(path)
        if st.st_size > 64 * 2**20:  # only big files are worth remembering between sessions
            try:
                table = table if isinstance(table, dict) else {}
                table[text] = sha
                store.parent.mkdir(parents=True, exist_ok=True)
                _write_json(store, table)
            except OSError:
                pass
    _HASHES[key] = sha
    return sha

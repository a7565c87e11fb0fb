"""Stable Diffusion through diffusers (the optional `diffusers` extra): a user's pipeline folder or single-file
checkpoint, opened offline (see `studio.families.stable_diffusion.files`), driven by the app's own samplers.

The parts come from diffusers and transformers (UNet, VAE, CLIP text encoder, tokenizer); the walk is the app's, the
same as its own diffusion family's: the latent an artist edits is the initial noise (4 × H/8 × W/8), so seeds,
variation seeds (a slerp toward another seed's noise), interpolation and saved noises work unchanged; sampler, steps,
guidance and η are the request's; image-to-image starts from the picture encoded by the VAE and noised to the step
`strength` picks. Every step is a cancel point and yields a preview of the current estimate of the finished image,
made by a linear map from the four latent channels to RGB that is fitted to the model's own VAE when it loads (the
full VAE decode runs once, at the end).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, TypeVar, cast

import numpy as np
import torch
from torch import nn

from studio.errors import ManifestError, RequestError, StudioError, WeightsError
from studio.families.base import Family, LoadedModel, latent_specs
from studio.steps import Output, Preview, Progress, RenderSteps
from studio.families.stable_diffusion.noise import A1111_VARIATION, a1111_first_noise, ensd_spec, rng_spec, step_noise
from studio.families.sampling import SamplerDefaults, init_specs, sampler_settings, sampler_specs, start_strength
from studio.params import SAMPLER, Capability, Kind, ParamSpec
from studio.io.images import decode_init_image
from studio.nets.samplers import Schedule
from studio.families.stable_diffusion.schedulers import (SD_SAMPLERS, SamplerConfig, read_sampler_config,
                                                         schedule_spec, sd_sampler)
from studio.families.stable_diffusion.files import (ARCHITECTURES, PIPELINE_INDEX, Source, check_parts, check_side,
                                                    config_folder, find_source, looks_like_sd, read_config,
                                                    require_diffusers, source_sha256, text_encoder_state)
from studio.families.stable_diffusion import inpaint
from studio.families.stable_diffusion.tokenizers import load_tokenizer
from studio.families.stable_diffusion import sdxl
from studio.families.stable_diffusion.embeddings import EmbeddingBook, model_folders, settings_folders
from studio.families.stable_diffusion.prompts import (MAX_CLIP_SKIP, Parsed, check_clip_skip, encode_prompt, pair,
                                                      parse_prompt)
from studio.limits import MAX_TRAIN_TIMESTEPS, quote
from studio.families.stable_diffusion import lora
from studio.families.stable_diffusion.prompt_schedule import prompt_timeline, step_conditions
from studio.families.stable_diffusion.previews import known_preview_map
from studio.families.stable_diffusion.gpu import place
from studio.families.stable_diffusion.vae import VAE_PARAM, chosen_vae, decode_latents, vae_spec

if TYPE_CHECKING:  # the defining modules: to a type checker diffusers' top-level names are its torch-less dummies
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextModel

FAMILY = "stable-diffusion"
DEFAULTS: SamplerDefaults = {"sampler": "dpmpp", "steps": 25, "guidance": 7.5, "eta": 0.0}
GUIDANCE_RANGE = (0.0, 30.0)
MAX_SIDE = 2048
TEXT_CACHE = 16  # prompts whose embeddings are kept: moving a slider re-renders without re-encoding the text


class SDNetwork(nn.Module):
    """The parts of one Stable Diffusion model, moved and cast together (LoadedModel.to)."""

    preview_map: torch.Tensor  # buffer: latent channels (and 1) → RGB, see fit_preview_map
    sampler_config = SamplerConfig()  # the scheduler config's walk settings (schedulers.py), set by load_parts

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer,
                 schedule: Schedule, prediction: str, scaling_factor: float):
        super().__init__()
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.tokenizer, self.schedule, self.prediction = tokenizer, schedule, prediction
        self.scaling_factor = scaling_factor
        self.latent_channels = int(vae.config["latent_channels"])
        self.vae_scale = 2 ** (len(vae.config["block_out_channels"]) - 1)
        self.image_size = int(unet.config["sample_size"]) * self.vae_scale
        self.register_buffer("preview_map", torch.zeros(self.latent_channels + 1, 3), persistent=False)
        self._texts: OrderedDict = OrderedDict()
        self.xl: sdxl.SDXLText | None = None  # SDXL's second text encoder and added conditions (sdxl.py)
        self.embeddings: EmbeddingBook | None = None  # textual inversions (load_parts finds their folders)

    def forward(self, *args, **kwargs):  # pragma: no cover - the family drives the parts
        raise RuntimeError("SDNetwork is driven by the stable-diffusion family, not called")

    def to(self, *args, **kwargs):  # on a GPU: SDPA, channels-last, compile, low-VRAM offload (gpu.py)
        return place(self, super().to, args, kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._texts.clear()  # embeddings live on the old device / dtype
        return super()._apply(fn, *args, **kwargs)

    def text_embeddings(self, prompt: str, clip_skip: int = 1) -> tuple[torch.Tensor, Parsed]:
        """CLIP's hidden states for `prompt` read the AUTOMATIC1111 way (prompts.py: brackets, BREAK, 77 per chunk of
        75 tokens, clip skip, embeddings), (1, 77·chunks, D) on the model's device, and the parsed prompt (its
        `<lora:…>` tags, the embeddings it used)."""
        if self.xl is not None:  # SDXL: both encoders read the A1111 way, side by side (sdxl.py, xl_prompts.py)
            hidden, _pooled, parsed = self.xl.encode(self, prompt)
            return hidden, parsed
        book = self.embeddings
        key = (prompt, clip_skip, book.refresh() if book is not None else ())
        if key in self._texts:
            self._texts.move_to_end(key)
            return self._texts[key]
        layers = int(self.text_encoder.config.num_hidden_layers)
        parsed = parse_prompt(prompt, self.tokenizer, book.find if book is not None else None)
        with torch.inference_mode():
            hidden = encode_prompt(self.text_encoder, self.tokenizer, parsed, check_clip_skip(clip_skip, layers),
                                   book.vectors if book is not None else None)
        self._texts[key] = (hidden, parsed)
        while len(self._texts) > TEXT_CACHE:
            self._texts.popitem(last=False)
        return hidden, parsed


# --- loading -----------------------------------------------------------------------------------------------------


def _scheduler_settings(config: dict, where: Path) -> tuple[Schedule, str]:
    kind = config.get("beta_schedule", "scaled_linear")
    if config.get("trained_betas"):
        raise ManifestError("schedulers with trained_betas are not supported", where, "trained_betas")
    if kind not in ("linear", "scaled_linear"):
        raise ManifestError(f"unsupported beta_schedule {kind!r} (linear or scaled_linear)", where, "beta_schedule")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction"):
        raise ManifestError(f"unsupported prediction_type {prediction!r} (epsilon or v_prediction)", where,
                            "prediction_type")
    steps = config.get("num_train_timesteps", 1000)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_TRAIN_TIMESTEPS:
        raise ManifestError(f"must be a whole number from 2 to {MAX_TRAIN_TIMESTEPS:,}, got {quote(steps)}", where,
                            "num_train_timesteps")
    try:
        schedule = Schedule.make(kind, steps, float(config.get("beta_start", 0.00085)),
                                 float(config.get("beta_end", 0.012)))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ManifestError(f"not a usable noise schedule: {quote(str(exc))}", where, "beta_start") from None
    return schedule, prediction


def _read_json(path: Path) -> dict:
    """A pipeline's JSON part through studio.files: a regular file, size- and depth-checked, holding an object."""
    return read_config(path)


_variant = sdxl._variant  # diffusers' weights variant to ask for (one definition, in sdxl.py)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Offline(TypedDict):
    """What every part is loaded with: local files only, in float32."""

    local_files_only: bool
    torch_dtype: torch.dtype


def load_parts(source: Source) -> SDNetwork:
    """The model's parts on the CPU in float32, offline; WeightsError / ManifestError naming the file that failed."""
    require_diffusers()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if source.kind == "folder":
        root, weights_file = source.path, None
    else:
        root = Path(source.config) if source.config not in ARCHITECTURES else config_folder(source.config)
        weights_file = source.path
    if source.kind == "folder" or source.config not in ARCHITECTURES:  # the shipped configs are known good
        check_parts(root)  # every part file read safely, the networks counted on the meta device, before loading
    xl = sdxl.is_xl_folder(root)
    common: _Offline = {"local_files_only": True, "torch_dtype": torch.float32}
    part = "unet"
    try:
        if weights_file is None:
            unet = UNet2DConditionModel.from_pretrained(str(root), subfolder="unet", use_safetensors=True,
                                                        variant=_variant(root / "unet", "diffusion_pytorch_model"),
                                                        **common)
            part = "vae"
            vae = AutoencoderKL.from_pretrained(str(root), subfolder="vae", use_safetensors=True,
                                                variant=_variant(root / "vae", "diffusion_pytorch_model"), **common)
            part = "text_encoder"
            text = CLIPTextModel.from_pretrained(str(root / "text_encoder"), use_safetensors=True,
                                                 variant=_variant(root / "text_encoder", "model"), **common)
        else:
            unet = UNet2DConditionModel.from_single_file(str(weights_file), config=str(root), subfolder="unet",
                                                         **common)
            part = "vae"
            vae = AutoencoderKL.from_single_file(str(weights_file), config=str(root), subfolder="vae", **common)
            part = "text_encoder"
            text = (sdxl.first_encoder_from_file if xl else _text_encoder_from_file)(weights_file, CLIPTextModel(
                CLIPTextConfig.from_pretrained(str(root / "text_encoder"), local_files_only=True)))
        part = "tokenizer"
        tokenizer = load_tokenizer(root / "tokenizer")  # vocab.json + merges.txt, or transformers 5's tokenizer.json
        if xl:
            part = "text_encoder_2"
            second = sdxl.load_second_encoder(root, weights_file)
            sdxl.check_added_embedding(unet, second.text_encoder_2, weights_file or root / "unet")
    except StudioError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, EnvironmentError) as exc:
        where = weights_file or (root / part)
        raise WeightsError(f"cannot load the {part.replace('_', ' ')}: {_first_line(exc)}", where) from None
    schedule, prediction = _scheduler_settings(_read_json(root / "scheduler" / "scheduler_config.json"),
                                               root / "scheduler" / "scheduler_config.json")
    scaling = float(getattr(vae.config, "scaling_factor", 0.18215) or 0.18215)
    net = SDNetwork(unet.eval(), vae.eval(), text.eval(), tokenizer, schedule, prediction, scaling)
    if xl:
        net.xl = second
    known = known_preview_map(vae.config)  # published latent → RGB factors: no VAE encode at load (previews.py)
    net.preview_map.copy_(known if known is not None else fit_preview_map(net))
    net.sampler_config = read_sampler_config(_read_json(root / "scheduler" / "scheduler_config.json"),
                                             root / "scheduler" / "scheduler_config.json")
    net.embeddings = EmbeddingBook(settings_folders() + model_folders(source.path, source.kind == "folder"),
                                   tokenizer, int(text.config.hidden_size))
    return net


_Text = TypeVar("_Text", bound=nn.Module)


def _text_encoder_from_file(path: Path, model: _Text) -> _Text:
    """The text encoder of a single file: CLIP under cond_stage_model.transformer.* (SD 1.x; with or without
    `text_model.`, as diffusers' converter writes it under transformers 4 or 5), or OpenCLIP under
    cond_stage_model.model.* (SD 2.x), named as transformers names CLIPTextModel (files.text_encoder_state)."""
    layers = int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0)
    state = text_encoder_state(path, layers)
    # transformers 4 names the parameters text_model.*, transformers 5 drops the prefix
    wants_prefix = any(k.startswith("text_model.") for k in model.state_dict())
    state = {(f"text_model.{k.removeprefix('text_model.')}" if wants_prefix else k.removeprefix("text_model.")): v
             for k, v in state.items() if not k.endswith("position_ids")}  # a buffer older files carry
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise WeightsError(f"the CLIP text encoder does not fit: {len(missing)} missing (e.g. "
                           f"{', '.join(missing[:3]) or '-'}), {len(unexpected)} unexpected (e.g. "
                           f"{', '.join(unexpected[:3]) or '-'})", path)
    return model


@torch.inference_mode()
def fit_preview_map(net: SDNetwork, size: int | None = None) -> torch.Tensor:
    """A (C + 1, 3) affine map from latent channels to RGB in −1 … 1, fitted by least squares to what the model's
    own VAE encodes: smooth random colour fields go through the encoder, and each latent cell is paired with the
    mean colour of the pixels it covers. Per-step previews then cost a matrix product instead of a VAE decode."""
    s = size or min(256, net.image_size)
    s -= s % net.vae_scale
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(6, 3, 4, 4, generator=gen) * 2 - 1
    pictures = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=False).clamp(-1, 1)
    dev, dt = next(net.vae.parameters()).device, next(net.vae.parameters()).dtype
    latent = net.vae.encode(pictures.to(dev, dt)).latent_dist.mean.float().cpu() * net.scaling_factor
    colours = torch.nn.functional.avg_pool2d(pictures, net.vae_scale)
    x = latent.permute(0, 2, 3, 1).reshape(-1, net.latent_channels)
    y = colours.permute(0, 2, 3, 1).reshape(-1, 3)
    x = torch.cat([x, torch.ones(len(x), 1)], 1)
    return torch.linalg.lstsq(x.double(), y.double()).solution.float()


def preview_image(net: SDNetwork, x0: torch.Tensor) -> np.ndarray:
    """The cheap preview of a latent estimate (1, C, h, w): uint8 (h·8, w·8, 3), nearest-upscaled."""
    lat = x0[0].float().cpu().permute(1, 2, 0)
    rgb = torch.cat([lat, torch.ones(*lat.shape[:2], 1)], -1) @ net.preview_map.float().cpu()
    img = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(img.repeat_interleave(net.vae_scale, 0).repeat_interleave(net.vae_scale, 1).numpy())


# --- image-to-image ---------------------------------------------------------------------------------------------


def fit_picture(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """Any picture → RGB uint8 (height, width, 3), its centre cropped to the aspect and resized."""
    from PIL import Image, ImageOps

    img = Image.fromarray(np.ascontiguousarray(picture))
    return np.asarray(ImageOps.fit(img.convert("RGB"), (width, height), Image.Resampling.LANCZOS))


# --- the family ---------------------------------------------------------------------------------------------------


def source_of(manifest) -> Source:
    """The pipeline folder or file a stable-diffusion manifest names (`architecture.source`, relative to the
    manifest's folder, and `architecture.config` for single files)."""
    arch = manifest.architecture
    raw = arch.get("source")
    if not isinstance(raw, str) or not raw:
        raise ManifestError("required field is missing (the pipeline folder or .safetensors file)", manifest.path,
                            "architecture.source")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else manifest.folder / path
    config = arch.get("config", "")
    if not isinstance(config, str):
        raise ManifestError(f"expected a string, got {config!r}", manifest.path, "architecture.config")
    return find_source(path, config)


def source_manifest(source: Source, model_id: str | None = None, name: str | None = None):
    """An in-memory manifest for a pipeline folder or single file opened directly (no model.toml needed)."""
    from studio.manifest import ConditionSpec, LatentSpec, Manifest, OutputSpec, package_id_from

    if source.kind == "folder":
        unet = _read_json(source.path / "unet" / "config.json")
        vae = _read_json(source.path / "vae" / "config.json")
        manifest_path = source.path / PIPELINE_INDEX
    else:
        cfg = ARCHITECTURES[source.config].configs if source.config in ARCHITECTURES else None
        root = Path(source.config)
        unet = cfg["unet"] if cfg else _read_json(root / "unet" / "config.json")
        vae = cfg["vae"] if cfg else _read_json(root / "vae" / "config.json")
        manifest_path = source.path
    side, scale, channels = check_side(unet, vae, manifest_path)
    slug = package_id_from(source.title, "stable-diffusion")
    title = source.config if source.kind == "file" and source.config in ARCHITECTURES else "diffusers folder"
    return Manifest(
        path=manifest_path, format=1, id=model_id or slug, name=name or source.title, family=FAMILY,
        version="(your file)",
        license="the model's own licence (see where it came from)",
        description=f"Stable Diffusion ({title}) from {source.path}",
        output=OutputSpec("image", {"width": side, "height": side, "channels": 3}),
        latent=LatentSpec((channels, side // scale, side // scale)),
        conditions=ConditionSpec("text", (), ""),
        architecture={"source": str(source.path), "config": source.config if source.kind == "file" else "",
                      "unet_in_channels": unet.get("in_channels", 4)},
        weights_file=source.path.name if source.kind == "file" else PIPELINE_INDEX,
    )


def _unet_in_channels(manifest) -> int:
    """The UNet's input channels (9 for an inpainting model): recorded by `source_manifest`, else (a model.toml
    naming a file or folder) read from its configs; 4 when they cannot be read (loading then says why)."""
    known = manifest.architecture.get("unet_in_channels")
    if isinstance(known, int) and not isinstance(known, bool):
        return known
    try:
        source = source_of(manifest)
        if source.kind == "file" and source.config in ARCHITECTURES:
            value = ARCHITECTURES[source.config].configs["unet"].get("in_channels", 4)
        else:
            root = source.path if source.kind == "folder" else Path(source.config)
            value = _read_json(root / "unet" / "config.json").get("in_channels", 4)
    except StudioError:
        return 4
    return value if isinstance(value, int) and not isinstance(value, bool) else 4


class StableDiffusionFamily(Family):
    name = FAMILY
    output_kinds = ("image",)
    capabilities = Capability.SAMPLE | Capability.ITERATE | Capability.IMG2IMG | Capability.ANY_SIZE

    def size_step(self, manifest) -> int:
        """Pixels per latent cell: the VAE's scale (8 for Stable Diffusion 1.x), from the native size and the
        latent's."""
        return max(1, int(manifest.output["width"]) // int(manifest.latent.shape[-1]))

    def parameters(self, manifest) -> tuple[ParamSpec, ...]:
        native = int(manifest.output["width"])
        step = self.size_step(manifest)  # the limits `size` checks: whole cells, at least 8 of them
        size = [ParamSpec(name, Kind.INT, name.capitalize(), default=native, range=(step * 8, MAX_SIDE), step=step,
                          group=SAMPLER, help=f"The picture's {name} in pixels (a multiple of {step}; the model's own "
                                              f"size, {native}, draws best)")
                for name in ("width", "height")]
        return (ParamSpec("prompt", Kind.TEXT, "Prompt", default="", render_only=True, help="Describe the picture"),
                ParamSpec("negative_prompt", Kind.TEXT, "Negative", default="", render_only=True,
                          help="What to steer away from (negative prompt)"),
                *sampler_specs(DEFAULTS, GUIDANCE_RANGE, SD_SAMPLERS), schedule_spec(), rng_spec(), ensd_spec(), *size,
                ParamSpec("clip_skip", Kind.INT, "Clip skip", default=1, range=(1, MAX_CLIP_SKIP), step=1,
                          group=SAMPLER, render_only=True,
                          help="Read the prompt from CLIP's layer this many from the end (1: the last; many anime "
                               "models want 2). SDXL reads its layers before last whatever this says, as A1111 does"),
                *lora.lora_specs(),
                *init_specs("The picture to start from (its centre cropped to the picture's shape): the model "
                            "redraws it as the prompt says"),
                *([inpaint.mask_spec()] if inpaint.takes_mask(_unet_in_channels(manifest),
                                                              manifest.latent.shape[0]) else []),
                vae_spec(),
                *latent_specs(manifest, strengths=(0.0, 1.0), directions=0),
                *sdxl.size_specs(manifest))  # SDXL's size and crop conditioning

    opens_files = True

    def claims(self, path) -> bool:
        return looks_like_sd(path)

    def manifest_for(self, path):
        return source_manifest(find_source(path))

    def import_file(self, path: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
        """A pickled SD checkpoint (.ckpt) written as the .safetensors file the app opens (weights-only reading)."""
        from studio.families.stable_diffusion.importer import import_sd_checkpoint

        return import_sd_checkpoint(path, out, force=force)

    def validate(self, manifest) -> None:
        super().validate(manifest)
        if manifest.conditions.kind != "text":
            raise ManifestError("Stable Diffusion takes a text prompt: conditions.kind must be \"text\"",
                                manifest.path, "conditions.kind")
        if len(manifest.latent.shape) != 3:
            raise ManifestError(f"the latent is the initial noise (channels, height/8, width/8), got "
                                f"{list(manifest.latent.shape)}", manifest.path, "latent.shape")

    def check_files(self, manifest) -> None:
        source_of(manifest)

    def weights_sha256(self, manifest) -> str:
        return source_sha256(source_of(manifest))

    def build(self, manifest) -> nn.Module:
        raise ManifestError("a Stable Diffusion model is loaded from its files, not built", manifest.path, "family")

    def load_network(self, manifest) -> SDNetwork:
        self.validate(manifest)
        return load_parts(source_of(manifest))

    # --- requests -------------------------------------------------------------------------------------------------
    def size(self, model: LoadedModel, request) -> tuple[int, int]:
        """(width, height) in pixels: the request's, else the model's native size; whole latent cells (8 pixels for
        Stable Diffusion), at least 8 cells and at most MAX_SIDE."""
        native = model.manifest.output["width"]
        width, height = request.width or native, request.height or native
        step = cast(SDNetwork, model.network).vae_scale
        for name, value in (("width", width), ("height", height)):
            if value % step or not step * 8 <= value <= MAX_SIDE:
                raise RequestError(f"{name} must be a multiple of {step} from {step * 8} to {MAX_SIDE}, got {value}",
                                   field=name)
        return width, height

    def latent_shape(self, model: LoadedModel, request) -> tuple[int, int, int]:
        net = cast(SDNetwork, model.network)
        width, height = self.size(model, request)
        return net.latent_channels, height // net.vae_scale, width // net.vae_scale

    def latent(self, model: LoadedModel, request) -> torch.Tensor:
        """The initial noise: the request's explicit latent or its seed's draw, at the request's size; a mix seed
        slerps it toward another seed's noise (a straight blend would shrink the noise and blur the result)."""
        from studio.latent.edits import apply_edits
        from studio.latent.seeds import sample_prior
        from studio.latent.seeds import slerp

        request = model.checked(request)
        shape = self.latent_shape(model, request)
        params = request.params
        if request.latent is not None:
            size = math.prod(shape)
            if len(request.latent) != size:
                raise RequestError(f"the latent has {len(request.latent)} values but {model.id} at this size needs "
                                   f"{size} ({'×'.join(map(str, shape))})", field="latent")
            z = torch.tensor(request.latent, dtype=torch.float32).reshape(shape)
        elif (a1111 := a1111_first_noise(model, request, shape)) is not None:  # A1111's noise (`rng`), its variation
            z, params = a1111, {k: v for k, v in params.items() if k not in A1111_VARIATION}
        else:
            z = sample_prior(request.seed, shape, "normal")
        if "mix_seed" in params:
            z = slerp(z, sample_prior(params["mix_seed"], shape), model.table.value(request, "mix_strength"))
        rest = {k: v for k, v in params.items() if k not in ("mix_seed", "mix_strength")}
        try:
            return apply_edits(z, rest, "normal", model.directions)
        except (ValueError, IndexError) as exc:
            raise RequestError(str(exc), field="params") from None

    def init_size(self, manifest, request) -> tuple[int, int]:
        native = manifest.output["width"]
        return request.width or native, request.height or native

    def init_picture_for(self, manifest, request, picture: np.ndarray) -> np.ndarray:
        """Any picture, its centre cropped to the request's aspect and resized to its size, in colour."""
        return fit_picture(picture, *self.init_size(manifest, request))

    def render(self, model: LoadedModel, request) -> RenderSteps:
        net = cast(SDNetwork, model.network)
        request = model.checked(request)
        vae, vae_info = chosen_vae(net, request.param(VAE_PARAM, ""), model.device, model.dtype)  # vae.py
        sampler_name, steps, guidance, eta = sampler_settings(model, request)
        width, height = self.size(model, request)
        sampler, sampler_note = sd_sampler(net.schedule, net.sampler_config, sampler_name, steps, eta,
                                           model.params(request).get("schedule") or "auto")  # schedulers.py
        strength = start_strength(request)
        start = sampler.start_index(strength) if strength is not None else 0
        noise = self.latent(model, request)
        total = len(sampler.timesteps) - start
        yield Progress(0, total + 1, "reading the prompt")
        dev, dt = model.device, model.dtype
        prompt, lora_info = lora.prepare(model, request)  # the request's LoRAs hooked in (none: the base network)
        clip_skip = request.param("clip_skip", 1)
        # A1111's prompt editing [a:b:n] and alternation [a|b]: each step's prompt and negative (prompt_schedule.py)
        timeline = prompt_timeline(prompt, request.param("negative_prompt", ""), steps)
        prompt, negative = timeline.at(0)
        cond, parsed = net.text_embeddings(prompt, clip_skip)
        guided = guidance != 1.0
        added = None  # SDXL's pooled text and size conditions (sdxl.py); an empty negative is zeros there
        if net.xl is not None:  # prompt and negative paired, pooled text, size conditions (sdxl.py)
            context, added = net.xl.request_conditions(net, request, guided, (height, width), prompt)
            parsed_negative = net.text_embeddings(negative)[1] if guided else None
        elif guided:  # a long prompt and a short negative (or the reverse) padded to the same number of chunks
            uncond, parsed_negative = net.text_embeddings(negative, clip_skip)
            context = torch.cat(pair(cond, uncond, net.text_embeddings("", clip_skip)[0]))
        else:
            context, parsed_negative = cond, None
        noise = noise[None].to(dev, dt)
        scheduled = step_conditions(timeline, net, request, clip_skip, guided, (height, width))  # None: one prompt
        with torch.inference_mode():
            # inpainting UNets (9 channels) also take the mask and the masked picture's latent (inpaint.py)
            extra = inpaint.conditioning(net, request, width, height, dev, dt) if inpaint.network_takes_mask(net) \
                else None
            if strength is not None and not (extra is not None and strength >= 1.0):
                picture = decode_init_image(request.params["init_image"], "RGB")
                if picture.shape[:2] != (height, width):
                    raise RequestError(f"the init image is {picture.shape[1]}×{picture.shape[0]} pixels; this request "
                                       f"renders {width}×{height}: fit it first", field="params.init_image")
                pixels = torch.from_numpy(picture.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
                x0 = vae.encode(pixels.to(dev, dt)).latent_dist.mean * net.scaling_factor
                x = sampler.add_noise(x0, noise, start)
            else:
                x = sampler.initial(noise)
            fresh_noise = step_noise(model, request, tuple(noise.shape))  # diffusers' way or A1111's (noise.py)
            for k, i in enumerate(range(start, len(sampler.timesteps))):
                if scheduled is not None:  # this step's prompt and negative
                    context, added = scheduled.unet_inputs(k)
                inp = sampler.scale_input(x, i)
                t = torch.full((2 if guided else 1,), sampler.model_timestep(i), device=dev)
                out = net.unet(inpaint.unet_input(torch.cat([inp, inp]) if guided else inp, extra), t,
                               encoder_hidden_states=context, added_cond_kwargs=added).sample
                if guided:
                    out_c, out_u = out.chunk(2)
                    out = out_u + guidance * (out_c - out_u)
                if net.prediction == "v_prediction":  # v = √ᾱ·ε − √(1−ᾱ)·x₀  ⇒  ε = √ᾱ·v + √(1−ᾱ)·x_t
                    a = sampler.alpha_bar(i)
                    out = math.sqrt(a) * out + math.sqrt(1 - a) * inp
                fresh = fresh_noise().to(dev, dt) if sampler.stochastic else None
                x, x0 = sampler.step(out, i, x, None, noise=fresh)
                if not torch.isfinite(x0).all():
                    raise RequestError(f"the walk diverged at step {k + 1} (not-a-number values); in float16 try "
                                       "float32, or lower the guidance", field="dtype")
                yield Preview(k + 1, total + 1, f"step {k + 1}/{total}",
                              Output("image", preview_image(net, x0), {"step": k + 1, "preview": True}))
            image = decode_latents(vae, x / net.scaling_factor)  # in tiles at large sizes (vae.py)
        image = ((image[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        yield Progress(total + 1, total + 1, "done")
        info = {"sampler": sampler_name, "steps": steps, "guidance": guidance, "start_step": start, **lora_info,
                **vae_info}
        if sampler.karras:  # the σs A1111 calls "Schedule type: Karras" (the request's choice or the model's config)
            info["schedule"] = "karras"
        if sampler_note:
            info["note"] = "; ".join(filter(None, [cast(str, info.get("note", "")), sampler_note]))
        every = (parsed, parsed_negative, *(scheduled.parsed() if scheduled is not None else ()))
        used = {e.name: e for p in every if p is not None for c in p.chunks for _, e in c.fixes}
        if used and net.embeddings is not None:  # name → file, and A1111's `TI hashes` (name → short SHA-256)
            info["embeddings"] = {name: str(e.path) for name, e in used.items()}
            info["ti_hashes"] = {name: net.embeddings.short_hash(e) for name, e in used.items()}
        return Output("image", np.ascontiguousarray(image), info)

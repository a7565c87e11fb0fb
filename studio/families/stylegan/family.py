"""The `stylegan` family: NVIDIA StyleGAN2 / StyleGAN2-ADA / StyleGAN3 generators imported from network pickles.

A package holds what a network pickle's ``G_ema`` holds, as data (studio.families.stylegan.importer writes it):

    [architecture]
    class_name = "training.networks_stylegan2.Generator"     # or training.networks_stylegan3.Generator
    init_kwargs = '{"z_dim": 512, "c_dim": 0, ..., "mapping_kwargs": {"num_layers": 8}}'

``init_kwargs`` is the constructor's keyword arguments as a JSON text, exactly as pickled: TOML has no None (a
conv_clamp of None, say) and the arguments nest (stylegan2-ada-pytorch's mapping_kwargs / synthesis_kwargs), JSON
holds both faithfully. The network is rebuilt by studio.nets.stylegan_nv (our own PyTorch, NVIDIA's state-dict names)
and its weights are the pickle's tensors in weights.safetensors. The manifest's latent is w (w_dim values); its output
is img_resolution² × img_channels; a conditional model (c_dim > 0) has the classes "0" … "c_dim-1".

What the artist edits (the request's seed or latent, and the params `parameters` declares):
  seed / latent           z = NVIDIA's draw for the seed (studio.nets.stylegan_nv.z_from_seed, as gen_images.py), mapped
                          to w; or explicit values: one w (w_dim) or one w per layer (w+, num_ws × w_dim)
  label                   the class of a conditional model (c = one-hot, as NVIDIA's tools)
  truncation, truncation_cutoff   ψ toward w̄ (the pickle's mapping.w_avg) on the layers before the cutoff
  mix_seed, mix_layer, mix_strength   style mixing: layers from mix_layer on take the mix seed's w
  variation_seed/strength slerp of z toward another seed's z
  d<k>, layer_start/end   principal directions (GANSpace's, or the package's own directions.safetensors) on a layer range
  z<k>                    add to dimension k of w
  noise_mode              StyleGAN2: const (the trained noise), random (drawn from the request's seed) or none
  translate_x/y, rotate   StyleGAN3: the visualizer's input transform
Encoding a picture is a projection into w+ (studio.nets.stylegan_projection); the principal directions are GANSpace's
(studio.nets.stylegan_directions), written into the package when a pickle is imported and recomputed at load when
missing or made for other weights.
Everything gives NVIDIA's picture for NVIDIA's settings: the image is converted as gen_images.py does,
(img · 127.5 + 128).clamp(0, 255) as uint8.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from collections.abc import Generator
from typing import Any, cast

import numpy as np
import torch

from studio.errors import ManifestError, RequestError, WeightsError
from studio.families.base import (Family, LoadedModel, check_parameter_count, condition_specs, direction_count,
                                  edit_ws, explicit_ws, latent_specs)
from studio.latent.kinds import LatentKind
from studio.limits import MAX_WIDTH, quote
from studio.params import DIRECTIONS, SHAPING, Capability, Kind, ParamSpec
from studio.steps import Output, Progress, RenderSteps

CLASS_NAMES = {"training.networks_stylegan2.Generator": "stylegan2",
               "training.networks_stylegan3.Generator": "stylegan3"}
POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
PSI_RANGE = (-1.0, 2.0)  # truncation ψ the app accepts (0 = the average w, 1 = unchanged)
NOISE_MODES = (("const", "Const"), ("random", "Random"), ("none", "None"))
TRANSFORM = "Input transform"
TRANSLATE_RANGE = (-16.0, 16.0)
ROTATE_RANGE = (-360.0, 360.0)

# Numbers among the constructor arguments: their kind and least value, checked before anything is built so that a
# wrong one is named (a field the constructor does not know is named from its TypeError).
_NUMBERS: dict[str, tuple[type | tuple[type, ...], float]] = {
    "channel_base": (int, 1), "channel_max": (int, 1), "num_fp16_res": (int, 0), "num_layers": (int, 1),
    "num_critical": (int, 0), "margin_size": (int, 0), "conv_kernel": (int, 1), "filter_size": (int, 1),
    "lrelu_upsampling": (int, 1), "embed_features": (int, 1), "layer_features": (int, 1),
    "first_cutoff": ((int, float), 0), "first_stopband": ((int, float), 0), "last_stopband_rel": ((int, float), 0),
    "output_scale": ((int, float), -math.inf), "conv_clamp": ((int, float), 0), "lr_multiplier": ((int, float), 0),
    "w_avg_beta": ((int, float), 0), "magnitude_ema_beta": ((int, float), -math.inf),
}
_LIMITS = {"channel_base": 1 << 20}  # NVIDIA's configs use 32768 (StyleGAN2/3-T) and 65536 (3-R); widths are /res


@dataclass(frozen=True)
class StyleConfig:
    """A package's generator: its generation ("stylegan2" / "stylegan3"), constructor arguments and layer count."""

    generation: str
    kwargs: dict[str, Any]

    @property
    def num_ws(self) -> int:
        """How many w the synthesis network takes (computed from the arguments, as NVIDIA's code counts them)."""
        if self.generation == "stylegan3":
            synthesis = self.kwargs
            return int(synthesis.get("num_layers", 14)) + 2
        return 2 * int(math.log2(self.kwargs["img_resolution"])) - 2

    def make(self) -> torch.nn.Module:
        from studio.nets.stylegan_nv import make_nvidia_generator

        return make_nvidia_generator(self.generation, (), self.kwargs)


def _check_numbers(kwargs: dict[str, Any], manifest, prefix: str) -> None:
    for key, value in kwargs.items():
        field = f"{prefix}.{key}"
        if isinstance(value, dict):
            if key not in ("mapping_kwargs", "synthesis_kwargs"):
                raise ManifestError(f"expected a number, text or list, got a table {quote(value)}", manifest.path,
                                    field)
            _check_numbers(value, manifest, field)
            continue
        if key not in _NUMBERS or value is None:
            continue
        kinds, least = _NUMBERS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not isinstance(value, kinds) \
                or not math.isfinite(value):
            names = "a whole number" if kinds is int else "a number"
            raise ManifestError(f"expected {names}, got {quote(value)}", manifest.path, field)
        if value < least:
            raise ManifestError(f"must be at least {least}, got {quote(value)}", manifest.path, field)
        if isinstance(value, int) and value > _LIMITS.get(key, MAX_WIDTH):
            raise ManifestError(f"{value:,} is over the limit of {_LIMITS.get(key, MAX_WIDTH):,}", manifest.path,
                                field)


def style_config(manifest) -> StyleConfig:
    """The generator a manifest describes, checked against the rest of the manifest (ManifestError naming the field:
    `architecture.class_name`, `architecture.init_kwargs.<argument>`, `output.width`, `latent.shape`, …)."""
    arch = manifest.architecture
    class_name = arch.get("class_name")
    if class_name not in CLASS_NAMES:
        raise ManifestError(f"expected one of {', '.join(CLASS_NAMES)}, got {quote(class_name)}", manifest.path,
                            "architecture.class_name")
    text = arch.get("init_kwargs")
    if not isinstance(text, str):
        raise ManifestError(f"expected the constructor arguments as a JSON text, got {quote(text)}", manifest.path,
                            "architecture.init_kwargs")
    try:
        kwargs = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"not valid JSON: {quote(str(exc))}", manifest.path, "architecture.init_kwargs") from None
    if not isinstance(kwargs, dict):
        raise ManifestError(f"expected a JSON object of constructor arguments, got {quote(kwargs)}", manifest.path,
                            "architecture.init_kwargs")
    field = "architecture.init_kwargs"
    for key in POSITIONAL:
        value = kwargs.get(key)
        least = 0 if key == "c_dim" else 1
        if isinstance(value, bool) or not isinstance(value, int):
            problem = "required argument is missing" if key not in kwargs else f"expected a whole number, got " \
                                                                                f"{quote(value)}"
            raise ManifestError(problem, manifest.path, f"{field}.{key}")
        if not least <= value <= MAX_WIDTH:
            raise ManifestError(f"must be {least}..{MAX_WIDTH:,}, got {value:,}", manifest.path, f"{field}.{key}")
    _check_numbers(kwargs, manifest, field)
    generation = CLASS_NAMES[class_name]
    res = kwargs["img_resolution"]
    if generation == "stylegan2" and (res < 4 or res & (res - 1)):
        raise ManifestError(f"a StyleGAN2 resolution is a power of two ≥ 4, got {res}", manifest.path,
                            f"{field}.img_resolution")
    out = manifest.output
    if out.kind == "image":
        for key, want in (("width", res), ("height", res), ("channels", kwargs["img_channels"])):
            if out[key] != want:
                source = "img_channels" if key == "channels" else "img_resolution"
                raise ManifestError(f"must equal init_kwargs.{source} ({want}), got {out[key]}", manifest.path,
                                    f"output.{key}")
    if list(manifest.latent.shape) != [kwargs["w_dim"]]:
        raise ManifestError(f"must be [w_dim] = [{kwargs['w_dim']}], got {list(manifest.latent.shape)}",
                            manifest.path, "latent.shape")
    c_dim = kwargs["c_dim"]
    cond = manifest.conditions
    if c_dim and (cond.kind != "class" or cond.labels != tuple(str(i) for i in range(c_dim))):
        raise ManifestError(f"a conditional generator (c_dim {c_dim}) has the classes \"0\" … \"{c_dim - 1}\"",
                            manifest.path, "conditions.labels" if cond.kind == "class" else "conditions.kind")
    if not c_dim and cond.kind != "none":
        raise ManifestError(f"an unconditional generator (c_dim 0) takes no {cond.kind} condition", manifest.path,
                            "conditions.kind")
    return StyleConfig(generation, kwargs)


def _unknown_argument(exc: BaseException) -> str | None:
    found = re.search(r"unexpected keyword argument '(\w+)'|unknown StyleGAN3 mapping arguments: \['(\w+)'",
                      str(exc))
    return next((g for g in found.groups() if g), None) if found else None


def _generator(model: LoadedModel) -> Any:
    return cast(Any, model.network)


PROJECTION_STEPS = 300  # as the glyph GAN's projection: NVIDIA's projector takes 1000


class StyleGANFamily(Family):
    name = "stylegan"
    output_kinds = ("image",)
    # encode = projection of a picture into w+ by optimisation (long: progress and cancel)
    capabilities = Capability.SAMPLE | Capability.DECODE | Capability.ENCODE | Capability.PROJECT
    imports_by_content = True
    own_directions = True  # GANSpace, computed from the network and cached beside the package
    encodes_pictures = True

    # --- files -------------------------------------------------------------------------------------------------------
    def imports(self, path) -> bool:
        from studio.families.stylegan.importer import looks_like_network_pickle

        return looks_like_network_pickle(path)

    def import_file(self, path, out=None, force: bool = False):
        """An NVIDIA network pickle converted to a package (in the user models folder by default): the folder."""
        from studio.families.stylegan.importer import import_network_pickle

        return import_network_pickle(path, out, force=force)

    # --- manifest ----------------------------------------------------------------------------------------------------
    def validate(self, manifest) -> None:
        super().validate(manifest)
        config = style_config(manifest)
        try:
            with torch.device("meta"):
                net = config.make()
        except WeightsError as exc:
            cause = exc.__cause__
            name = _unknown_argument(cause) if cause is not None else None
            if name is not None:
                raise ManifestError(f"the {config.generation} Generator takes no argument {name!r}", manifest.path,
                                    f"architecture.init_kwargs.{name}") from None
            raise ManifestError(f"cannot build the network: {exc.problem}", manifest.path,
                                "architecture.init_kwargs") from None
        if int(getattr(net, "num_ws")) != config.num_ws:  # the layer controls are sized from the manifest alone
            raise ManifestError(f"the network takes {net.num_ws} w, not {config.num_ws}", manifest.path,
                                "architecture.init_kwargs")

    def build(self, manifest) -> torch.nn.Module:
        self.validate(manifest)
        config = style_config(manifest)
        check_parameter_count(manifest, config.make)  # on the meta device, before any allocation
        return config.make().eval()

    def parameters(self, manifest) -> tuple[ParamSpec, ...]:
        config = style_config(manifest)
        n = config.num_ws
        from studio.families.stylegan.importer import DIRECTION_SLIDERS

        # the package's own directions, else the GANSpace ones every load provides (computed, or from the user
        # cache when the package folder cannot be written): sliders either way
        count = direction_count(manifest) or min(DIRECTION_SLIDERS, manifest.latent.size)
        specs = [*condition_specs(manifest),
                 *latent_specs(manifest, truncation=PSI_RANGE, mix_strength=1.0, strengths=(0.0, 1.0),
                               directions=count)]
        at = [s.name for s in specs].index("truncation") + 1
        specs.insert(at, ParamSpec(
            "truncation_cutoff", Kind.INT, "Cutoff", default=n, range=(0, n), group=SHAPING,
            help="Truncation acts on the layers before this one (all of them by default; NVIDIA's "
                 "truncation_cutoff): a low cutoff keeps the fine details varied"))
        at = [s.name for s in specs].index("mix_strength") + 1
        specs.insert(at, ParamSpec(
            "mix_layer", Kind.INT, "From layer", default=n // 2, range=(0, n), group=SHAPING, when=("mix_seed", ()),
            help="Style mixing: layers from this one on take the mix seed's style (low = its shapes too, high = only "
                 "its fine details)"))
        if any(s.name == "d" for s in specs):  # a layer range for the direction sliders, when the package has them
            specs += [
                ParamSpec("layer_start", Kind.INT, "Layers", default=0, range=(0, n), group=DIRECTIONS,
                          at_most="layer_end", help="First layer the direction sliders act on (0 = the coarsest)"),
                ParamSpec("layer_end", Kind.INT, "to", default=n, range=(0, n), group=DIRECTIONS,
                          help="The direction sliders act on layers before this one (the last = every layer)"),
            ]
        if config.generation == "stylegan2":
            specs.append(ParamSpec(
                "noise_mode", Kind.CHOICE, "Noise", default="const", choices=NOISE_MODES, group=SHAPING,
                render_only=True,
                help="The per-pixel noise: const as trained (NVIDIA's default), random (drawn from the seed), or "
                     "none"))
        else:
            specs += [
                ParamSpec("translate_x", Kind.FLOAT, "Translate x", default=0.0, range=TRANSLATE_RANGE,
                          span=(-1.0, 1.0), group=TRANSFORM, render_only=True,
                          help="Move the picture sideways (StyleGAN3's input transform, as in NVIDIA's visualizer)"),
                ParamSpec("translate_y", Kind.FLOAT, "Translate y", default=0.0, range=TRANSLATE_RANGE,
                          span=(-1.0, 1.0), group=TRANSFORM, render_only=True,
                          help="Move the picture up or down (StyleGAN3's input transform)"),
                ParamSpec("rotate", Kind.FLOAT, "Rotate", default=0.0, range=ROTATE_RANGE, span=(-180.0, 180.0),
                          group=TRANSFORM, render_only=True,
                          help="Rotate the picture, in degrees (StyleGAN3's input transform)"),
            ]
        # the class enters the mapping network (c → w), and a variation slerps the seed's z: an explicit latent (a
        # saved or projected w) already holds both
        return tuple(replace(s, seeded_only=True, render_only=False)
                     if s.name == "label" or s.name.startswith("variation_") else s for s in specs)

    def latent_kinds(self, manifest) -> tuple[LatentKind, ...]:
        """One w (the same style on every layer: what a seed gives) and w+ (one w per layer); w → w+."""
        d, n = manifest.latent.size, style_config(manifest).num_ws
        return (LatentKind("w", d, help="one style for every layer"),
                LatentKind("w+", n * d, widens="w", help=f"one style per layer ({n} layers)"))

    # --- latents -----------------------------------------------------------------------------------------------------
    def _c(self, model: LoadedModel, request) -> torch.Tensor | None:
        g = _generator(model)
        if not g.c_dim:
            return None
        label = model.table.value(request, "label")
        c = torch.zeros([1, g.c_dim], dtype=torch.float32)
        c[0, model.manifest.conditions.labels.index(label)] = 1  # one-hot, as NVIDIA's gen_images.py
        return c

    def _w_of_seed(self, model: LoadedModel, seed: int, c: torch.Tensor | None,
                   varied: tuple[int, float] | None = None) -> torch.Tensor:
        from studio.latent.seeds import slerp
        from studio.nets.stylegan_nv import z_from_seed

        g = _generator(model)
        z = z_from_seed(seed, g.z_dim)
        if varied is not None:
            z = slerp(z, z_from_seed(varied[0], g.z_dim), varied[1])
        with torch.no_grad():
            ws = g.mapping(z.to(model.device), c.to(model.device) if c is not None else None)
        return ws[0].float().cpu()  # (num_ws, w_dim)

    def latent_ws(self, model: LoadedModel, request) -> torch.Tensor:
        """The request's per-layer w (num_ws, w_dim) on the CPU in float32, every latent edit applied."""
        g = _generator(model)
        request = model.checked(request)
        p, value = request.params, lambda name: model.table.value(request, name)
        n, d = int(g.num_ws), int(g.w_dim)
        c = self._c(model, request)
        if request.latent is not None:
            ws = explicit_ws(model.id, request.latent, n, d)
        else:
            varied = (p["variation_seed"], value("variation_strength")) \
                if "variation_seed" in p and value("variation_strength") else None
            ws = self._w_of_seed(model, request.seed, c, varied)
        w_avg = g.mapping.w_avg.float().cpu()
        psi, cutoff = value("truncation"), value("truncation_cutoff")

        def truncate(x: torch.Tensor) -> torch.Tensor:
            if psi != 1:  # NVIDIA's mapping: x[:, :cutoff] = w_avg.lerp(x[:, :cutoff], psi)
                x = x.clone()
                x[:cutoff] = w_avg.lerp(x[:cutoff], psi)
            return x

        ws = truncate(ws)
        if "mix_seed" in p:
            w_b = truncate(self._w_of_seed(model, p["mix_seed"], c))
            start = value("mix_layer")
            ws[start:] = torch.lerp(ws[start:], w_b[start:], value("mix_strength"))
        # the layer range is declared with the directions
        return edit_ws(model, p, ws, lambda: (value("layer_start"), value("layer_end")))

    def latent(self, model: LoadedModel, request) -> torch.Tensor:
        """One w when every layer has the same style, else w+ (num_ws × w_dim): what renders the same picture as an
        explicit latent (with the render-only params kept)."""
        ws = self.latent_ws(model, request)
        return ws[0].clone() if bool((ws == ws[:1]).all()) else ws

    # --- rendering ---------------------------------------------------------------------------------------------------
    def synthesise(self, model: LoadedModel, request, ws: torch.Tensor) -> torch.Tensor:
        """NVIDIA's raw synthesis output (1, C, H, W) in float32 on the CPU for per-layer w `ws`, with the request's
        noise mode (StyleGAN2) or input transform (StyleGAN3)."""
        g = _generator(model)
        request = model.checked(request)
        value = lambda name: model.table.value(request, name)  # noqa: E731
        x = ws[None].to(model.device, model.dtype)
        with torch.no_grad():
            if hasattr(g, "set_input_transform"):  # StyleGAN3 (a shared network: set on every render)
                g.set_input_transform((value("translate_x"), value("translate_y")), value("rotate"))
                img = g.synthesis(x)
            else:
                # random noise from the request's seed on a CPU generator: the same noise on every device
                gen = torch.Generator().manual_seed(request.seed)
                img = g.synthesis(x, noise_mode=value("noise_mode"), generator=gen)
        return img.float().cpu()

    def render(self, model: LoadedModel, request) -> RenderSteps:
        yield Progress(0, 1, "synthesising")
        ws = self.latent_ws(model, request)
        img = self.synthesise(model, request, ws)
        pixels = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0)  # as NVIDIA's gen_images.py
        yield Progress(1, 1, "done")
        return Output("image", np.ascontiguousarray(pixels.numpy()), {"num_ws": int(ws.shape[0])})

    # --- principal directions (GANSpace) and projection -------------------------------------------------------------
    def directions(self, manifest, network: torch.nn.Module, sha256: str):
        """GANSpace: the principal components of w over NVIDIA-seeded z (classes in turn for a conditional model),
        computed once and cached beside the package (or in the user cache when the folder is read-only)."""
        from studio.families.stylegan.importer import DIRECTION_SLIDERS
        from studio.nets.stylegan_directions import cached_directions

        return cached_directions(manifest.folder, sha256, network, k=DIRECTION_SLIDERS)

    def encode(self, model: LoadedModel, images: np.ndarray, labels: list[str] | None = None,
               steps: int = PROJECTION_STEPS) -> Generator[Progress, None, torch.Tensor]:
        """Project the first picture of `images` (H, W[, C] uint8, any size: fitted to the model's resolution) into
        w+ (num_ws × w_dim) by optimisation, as the current class for a conditional model (`labels[0]`). Yields
        progress; every step is a cancel point."""
        from studio.nets.stylegan_projection import project

        g = _generator(model)
        c = None
        if g.c_dim:
            names = model.manifest.conditions.labels
            label = labels[0] if labels else (model.manifest.conditions.default or names[0])
            if label not in names:
                raise RequestError(f"{model.id} knows the classes {', '.join(names)}, not {label!r}", field="label")
            c = torch.zeros([1, g.c_dim], dtype=torch.float32)
            c[0, names.index(label)] = 1
        try:
            ws = yield from project(g, images[0], steps=steps, mode="w+", c=c, device=model.device)
        except ValueError as exc:
            raise RequestError(f"cannot project this picture: {exc}", field="image") from None
        return ws

"""The family protocol: what every model family provides.

A family turns a manifest into a network and renders requests with it. It declares what an artist can set on its
models (`parameters`, typed specs from `studio.params`) and what it can do (`capabilities`); the window, the command
line and the engine read those and know no family by name.

What a new family writes (one folder under studio/families/, plus its line in `registry.BUILTIN`):
  name, output_kinds, capabilities          what it is and can do
  validate(manifest)                        ManifestError naming the field when a manifest does not suit it
  build(manifest) / load_network(manifest)  its network on the CPU (weights are loaded by the library)
  parameters(manifest)                      its ParamSpecs (conditions, sampler settings, latent edits …)
  render(model, request)                    a generator of Progress/Preview returning an Output
  and where it applies: latent, encode, init_size/init_picture_for, claims/manifest_for (foreign files),
  import_file (checkpoints converted to what it opens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generator

import numpy as np
import torch

from studio.errors import ManifestError, RequestError, WeightsError
from studio.limits import MAX_PARAMETERS, MAX_WIDTH, quote
from studio.latent.kinds import LatentKind
from studio.params import DIRECTIONS, RAW, SHAPING, Capability, Kind, ParamSpec, ParamTable
from studio.steps import Progress, RenderSteps

if TYPE_CHECKING:
    from pathlib import Path

    from studio.latent.directions import Directions
    from studio.manifest import Manifest
    from studio.request import RenderRequest


@dataclass
class LoadedModel:
    """A package whose network is built, loaded and placed on a device."""

    manifest: "Manifest"
    family: "Family"
    network: torch.nn.Module
    sha256: str
    device: torch.device
    dtype: torch.dtype
    directions: "Directions | None" = None
    _table: ParamTable | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def table(self) -> ParamTable:
        """The model's parameter specs (computed once)."""
        if self._table is None:
            self._table = ParamTable(self.family.parameters(self.manifest))
        return self._table

    def checked(self, request: "RenderRequest") -> "RenderRequest":
        """The request with its params checked against this model's specs (RequestError naming the param)."""
        return self.table.check(request)

    def params(self, request: "RenderRequest") -> dict[str, Any]:
        """The request's params checked against this model's specs, with the defaults of those it leaves unset."""
        return self.table.values(self.table.check(request))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.network.state_dict().values())

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "LoadedModel":
        device = torch.device(device)
        dtype = dtype or self.dtype
        self.network.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        return self


class Family:
    """One model family: builds its network from the manifest and renders requests.

    Subclasses set `name` (the manifest's `family`), `output_kinds`, and implement `build` and `render`.
    """

    name: ClassVar[str] = ""
    output_kinds: ClassVar[tuple[str, ...]] = ("image",)
    capabilities: ClassVar[Capability] = Capability.SAMPLE
    # Its network is a program from the model file (TorchScript, ONNX): the engine runs it in a worker process
    # (studio.engine.sandbox), never in the app's.
    runs_code: ClassVar[bool] = False

    # --- foreign files: families that open models without a model.toml (diffusers folders, checkpoint files) ---
    opens_files: ClassVar[bool] = False

    def claims(self, path: "Path") -> bool:
        """Whether `path` (a folder or file without a model.toml) is meant as one of this family's models. Cheap:
        decides which checks a path gets, not whether it is valid."""
        return False

    def manifest_for(self, path: "Path") -> "Manifest":
        """An in-memory manifest for a claimed foreign model (raises ManifestError/WeightsError naming the file)."""
        raise ManifestError(f"family {self.name!r} does not open foreign files", path)

    # --- files converted by content: families whose import_file recognises its files without being told ---
    imports_by_content: ClassVar[bool] = False

    def imports(self, path: "Path") -> bool:
        """Whether `import_file` converts `path`, judged cheaply from its content (no weights read). What lets
        `latent-studio import FILE` and the window's import take a file without being told its family."""
        return False

    def import_file(self, path: "str | Path", out: "str | Path | None" = None, force: bool = False) -> "Path":
        """A checkpoint file converted to the file this family opens (beside it by default): the path written."""
        raise WeightsError(f"models of family {self.name!r} are not imported from checkpoint files", path)

    def validate(self, manifest: "Manifest") -> None:
        """Raise ManifestError naming the field when the manifest does not suit this family."""
        if manifest.output.kind not in self.output_kinds:
            raise ManifestError(f"family {self.name!r} makes {', '.join(self.output_kinds)} output, not "
                                f"{manifest.output.kind!r}", manifest.path, "output.kind")

    def build(self, manifest: "Manifest") -> torch.nn.Module:
        raise NotImplementedError

    def check_files(self, manifest: "Manifest") -> None:
        """Cheap checks that the model's files are there (no loading); raise WeightsError naming what is wrong."""
        if not manifest.weights_path.exists():
            folder = manifest.folder
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in {".pt", ".pth", ".ckpt", ".pkl",
                                                                                        ".bin"}) \
                if folder.is_dir() else []
            hint = f" (found {', '.join(pickles)}: pickles are never loaded; convert to safetensors)" if pickles else ""
            raise WeightsError(f"weights file is missing{hint}", manifest.weights_path)

    def weights_sha256(self, manifest: "Manifest") -> str:
        """The identity of the model's weights (requests record it): the sha256 of the weights file."""
        from studio.io.weights import sha256_file

        return sha256_file(manifest.weights_path)

    # Its principal directions come from `directions(...)` rather than the package's directions.safetensors as the
    # library reads it (a family that computes and caches them itself: GANSpace at load).
    own_directions: ClassVar[bool] = False
    # Its encoder takes a whole picture in colour, at any size (it fits it itself), not a strip of glyph cells.
    encodes_pictures: ClassVar[bool] = False

    def directions(self, manifest: "Manifest", network: torch.nn.Module, sha256: str) -> "Directions | None":
        """The model's principal directions, for a family with `own_directions` (its network on the CPU)."""
        return None

    def load_network(self, manifest: "Manifest") -> torch.nn.Module | None:
        """A family whose weights file is not safetensors (a TorchScript module, say) loads its network here, on
        the CPU; None (the default) means build() and load the safetensors weights."""
        return None

    def parameters(self, manifest: "Manifest") -> tuple[ParamSpec, ...]:
        """What an artist can set on this manifest's model: its conditions and the latent edits every family with a
        normal-prior latent takes (mix, variation, truncation, directions, raw dimensions)."""
        return (*condition_specs(manifest), *latent_specs(manifest))

    def latent_kinds(self, manifest: "Manifest") -> tuple[LatentKind, ...]:
        """The forms this model's latent takes as flat values (what its saved latents hold): by default one, the
        manifest's latent. A family with more (a GAN's w and w+) says which convert into which (studio.latent.kinds)."""
        return (LatentKind("z", manifest.latent.size, help="the latent the seed draws"),)

    def size_step(self, manifest: "Manifest") -> int:
        """ANY_SIZE families: the pixels a width or height snaps to."""
        return 8

    def render(self, model: LoadedModel, request: "RenderRequest") -> RenderSteps:
        raise NotImplementedError

    def init_size(self, manifest: "Manifest", request: "RenderRequest") -> tuple[int, int]:
        """Image-to-image: the (width, height) the request's init image must have."""
        raise RequestError(f"models of family {self.name!r} cannot start from an image", field="init_image")

    def init_picture_for(self, manifest: "Manifest", request: "RenderRequest", picture: np.ndarray) -> np.ndarray:
        """Image-to-image: any picture (H, W[, C]) uint8 fitted to what the request starts from."""
        raise RequestError(f"models of family {self.name!r} cannot start from an image", field="init_image")

    def encode(self, model: LoadedModel, images: np.ndarray,
               labels: list[str] | None = None) -> "torch.Tensor | Generator[Progress, None, torch.Tensor]":
        """The latent of `images`; a family whose encoding is long work returns a generator that yields Progress
        (each a cancel point) and returns the latent."""
        raise RequestError(f"models of family {self.name!r} cannot encode images")

    def latent(self, model: LoadedModel, request: "RenderRequest") -> torch.Tensor:
        """The request's latent on CPU in float32: its explicit values or the prior draw of its seed, then its
        edits."""
        from studio.latent.edits import apply_edits
        from studio.latent.seeds import sample_prior

        spec = model.manifest.latent
        if request.latent is not None:
            if len(request.latent) != spec.size:
                raise RequestError(f"the latent has {len(request.latent)} values but {model.id} needs {spec.size}",
                                   field="latent")
            z = torch.tensor(request.latent, dtype=torch.float32).reshape(spec.shape)
        else:
            z = sample_prior(request.seed, spec.shape, spec.prior)
        try:
            return apply_edits(z, model.checked(request).params, spec.prior, model.directions)
        except (ValueError, IndexError) as exc:
            raise RequestError(str(exc), field="params") from None


# --- style-based generators' w and w+ (the gan and stylegan families) -----------------------------------------------


def explicit_ws(model_id: str, latent, num_ws: int, w_dim: int) -> torch.Tensor:
    """A request's explicit latent as per-layer styles (num_ws, w_dim) in float32: one w for every layer, or w+."""
    values = torch.tensor(latent, dtype=torch.float32)
    if values.numel() == w_dim:
        return values[None].expand(num_ws, -1).clone()
    if values.numel() == num_ws * w_dim:
        return values.reshape(num_ws, w_dim).clone()
    raise RequestError(f"the latent has {values.numel()} values but {model_id} takes a w of {w_dim} values "
                       f"or one w per layer ({num_ws} × {w_dim} = {num_ws * w_dim})", field="latent")


def edit_ws(model: LoadedModel, params: dict, ws: torch.Tensor, layers: Callable[[], tuple[int, int]]) -> torch.Tensor:
    """Apply a request's latent edits to per-layer styles `ws` (num_ws, w_dim), in place: `d<k>` moves along
    principal direction k over the layers `layers()` gives (asked only when there is such an edit), `z<k>` adds to
    dimension k of every layer's w."""
    w_dim = ws.shape[1]
    for name, amount in sorted(params.items()):
        if name.startswith("d") and name[1:].isdigit():
            if model.directions is None:
                raise RequestError(f"edit {name!r} needs principal directions, and {model.id} ships none",
                                   field=f"params.{name}")
            start, end = layers()
            try:
                ws[start:end] += model.directions.offset(int(name[1:]), amount)
            except IndexError as exc:
                raise RequestError(str(exc), field=f"params.{name}") from None
        elif name.startswith("z") and name[1:].isdigit():
            k = int(name[1:])
            if k >= w_dim:
                raise RequestError(f"edit {name!r}: w has {w_dim} dimensions (z0..z{w_dim - 1})",
                                   field=f"params.{name}")
            ws[:, k] += float(amount)
    return ws


# --- the parameters most families share ------------------------------------------------------------------------------


def direction_count(manifest: "Manifest") -> int:
    """How many principal directions the package ships (from the directions file's header; 0 when none)."""
    from studio.io.weights import tensor_shapes

    path = manifest.directions_path
    if not path.is_file():
        return 0
    try:
        return int((tensor_shapes(path).get("stds") or [0])[0])
    except WeightsError:
        return 0


def condition_specs(manifest: "Manifest", prompt_help: str = "") -> list[ParamSpec]:
    """The manifest's condition as a param: a text prompt (drawing only its alphabet) or a class picker."""
    cond = manifest.conditions
    if cond.kind == "text":
        return [ParamSpec("prompt", Kind.TEXT, "Prompt", default=cond.default or (cond.labels[0] if cond.labels else ""),
                          charset="".join(cond.labels), render_only=True,
                          help=prompt_help or "What to draw: this text, in the current latent style")]
    if cond.kind == "class":
        return [ParamSpec("label", Kind.CHOICE, "Class", default=cond.default or cond.labels[0],
                          choices=tuple((label, label) for label in cond.labels), render_only=True,
                          help="The class to draw")]
    return []


def latent_specs(manifest: "Manifest", *, truncation: tuple[float, float] | None = None,
                 truncation_span: tuple[float, float] = (0.0, 1.5), mix_strength: float = 0.5,
                 strengths: tuple[float, float] | None = None, directions: int | None = None) -> list[ParamSpec]:
    """The latent edits (applied by `studio.latent.edits.apply_edits`, or by a family's own latent code with the same
    names): mix with another seed, slerp toward a variation seed, truncation ψ, principal directions d0…, raw
    dimensions z0…. `truncation` and `strengths` are the hard limits a family checks (None: any number)."""
    n = direction_count(manifest) if directions is None else directions
    specs = [
        ParamSpec("truncation", Kind.FLOAT, "ψ", default=1.0, range=truncation, span=truncation or truncation_span,
                  group=SHAPING, help="Truncation ψ: 1 keeps the latent, lower values pull it toward the average "
                  "style (cleaner, less varied)"),
        ParamSpec("mix_seed", Kind.SEED, "Mix seed", group=SHAPING,
                  help="Mix the latent with the latent of this seed (empty: no mixing)"),
        ParamSpec("mix_strength", Kind.FLOAT, "Mix", default=mix_strength, range=strengths, span=(0.0, 1.0),
                  group=SHAPING, when=("mix_seed", ()),
                  help="How far to blend toward the mix seed's latent (0 = none, 1 = all)"),
        ParamSpec("variation_seed", Kind.SEED, "Variation", group=SHAPING,
                  help="A nearby variation: slerp toward this seed's latent by the strength"),
        ParamSpec("variation_strength", Kind.FLOAT, "Strength", default=0.0, range=strengths, span=(0.0, 1.0),
                  group=SHAPING, when=("variation_seed", ()),
                  help="Variation strength (0 = the latent itself, 1 = the variation seed's)"),
    ]
    if n:
        specs.append(ParamSpec("d", Kind.FLOAT, "Dir", default=0.0, span=(-3.0, 3.0), count=n, group=DIRECTIONS,
                               help="A principal direction of the model (by variance), in standard deviations"))
    specs.append(ParamSpec("z", Kind.FLOAT, "z", default=0.0, span=(-3.0, 3.0), count=manifest.latent.size, group=RAW,
                           help="Add to a raw latent dimension"))
    return specs


def arch_value(manifest: "Manifest", key: str, kind: type, default: Any = None, minimum: Any = None,
               maximum: Any = None) -> Any:
    """Read architecture.<key> with a ManifestError naming the field on a wrong type or range. A whole number (a
    width, a layer count, a size) is at most MAX_WIDTH unless `maximum` says otherwise."""
    arch = manifest.architecture
    if key not in arch:
        if default is None:
            raise ManifestError("required field is missing", manifest.path, f"architecture.{key}")
        return default
    value = arch[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"expected {kind.__name__}, got {type(value).__name__} {quote(value)}", manifest.path,
                            f"architecture.{key}")
    if minimum is not None and value < minimum:
        raise ManifestError(f"must be at least {minimum}, got {quote(value)}", manifest.path, f"architecture.{key}")
    if maximum is None and kind is int:
        maximum = MAX_WIDTH
    if maximum is not None and value > maximum:
        raise ManifestError(f"{quote(value)} is over the limit of {maximum:,}", manifest.path, f"architecture.{key}")
    return value


def arch_widths(manifest: "Manifest", key: str, default: list[int], max_count: int = 64) -> tuple[int, ...]:
    """architecture.<key>: a non-empty list of at most `max_count` positive whole numbers, each at most MAX_WIDTH
    (channel counts per level, multipliers); ManifestError naming the field otherwise."""
    values = manifest.architecture.get(key, default)
    if not isinstance(values, list) or not values or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ManifestError(f"expected a list of positive whole numbers, got {quote(values)}", manifest.path,
                            f"architecture.{key}")
    if len(values) > max_count:
        raise ManifestError(f"{len(values)} entries is over the limit of {max_count}", manifest.path,
                            f"architecture.{key}")
    for i, v in enumerate(values):
        if v > MAX_WIDTH:
            raise ManifestError(f"{quote(v)} is over the limit of {MAX_WIDTH:,}", manifest.path,
                                f"architecture.{key}[{i}]")
    return tuple(values)


def check_parameter_count(manifest: "Manifest", make: "Callable[[], torch.nn.Module]") -> int:
    """The parameter count of the network `make()` builds, counted on the meta device (no memory is allocated);
    ManifestError naming the architecture when it is over MAX_PARAMETERS. Families call it in build() before they
    build for real."""
    try:
        with torch.device("meta"):
            net = make()
        count = sum(p.numel() for p in net.parameters()) + sum(b.numel() for b in net.buffers())
    except (ValueError, TypeError, RuntimeError, OverflowError, MemoryError) as exc:
        raise ManifestError(f"cannot build the network: {quote(str(exc))}", manifest.path, "architecture") from None
    if count > MAX_PARAMETERS:
        raise ManifestError(f"the network would have {count:,} parameters, over the limit of {MAX_PARAMETERS:,}",
                            manifest.path, "architecture")
    return count

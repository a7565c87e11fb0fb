"""The family protocol: what every model family provides, and what a render yields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generator

import numpy as np
import torch

from studio.errors import ManifestError, RequestError
from studio.steps import Output, Preview, Progress, RenderSteps, run_steps

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

    @property
    def id(self) -> str:
        return self.manifest.id

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
    capabilities: ClassVar[frozenset[str]] = frozenset({"sample"})  # of sample, encode, decode, iterate

    # --- foreign files: families that open models without a model.toml (diffusers folders, checkpoint files) ---
    opens_files: ClassVar[bool] = False

    def claims(self, path: "Path") -> bool:
        """Whether `path` (a folder or file without a model.toml) is meant as one of this family's models. Cheap:
        decides which checks a path gets, not whether it is valid."""
        return False

    def manifest_for(self, path: "Path") -> "Manifest":
        """An in-memory manifest for a claimed foreign model (raises ManifestError/WeightsError naming the file)."""
        raise ManifestError(f"family {self.name!r} does not open foreign files", path)

    def validate(self, manifest: "Manifest") -> None:
        """Raise ManifestError naming the field when the manifest does not suit this family."""
        if manifest.output.kind not in self.output_kinds:
            raise ManifestError(f"family {self.name!r} makes {', '.join(self.output_kinds)} output, not "
                                f"{manifest.output.kind!r}", manifest.path, "output.kind")

    def build(self, manifest: "Manifest") -> torch.nn.Module:
        raise NotImplementedError

    def check_files(self, manifest: "Manifest") -> None:
        """Cheap checks that the model's files are there (no loading); raise WeightsError naming what is wrong."""
        from studio.errors import WeightsError

        if not manifest.weights_path.exists():
            folder = manifest.folder
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in {".pt", ".pth", ".ckpt", ".pkl",
                                                                                        ".bin"}) \
                if folder.is_dir() else []
            hint = f" (found {', '.join(pickles)}: pickles are never loaded; convert to safetensors)" if pickles else ""
            raise WeightsError(f"weights file is missing{hint}", manifest.weights_path)

    def weights_sha256(self, manifest: "Manifest") -> str:
        """The identity of the model's weights (requests record it): the sha256 of the weights file."""
        from studio.weights import sha256_file

        return sha256_file(manifest.weights_path)

    def load_network(self, manifest: "Manifest") -> torch.nn.Module | None:
        """A family whose weights file is not safetensors (a TorchScript module, say) loads its network here, on
        the CPU; None (the default) means build() and load the safetensors weights."""
        return None

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
        from studio.latent import apply_edits, sample_prior

        spec = model.manifest.latent
        if request.latent is not None:
            if len(request.latent) != spec.size:
                raise RequestError(f"the latent has {len(request.latent)} values but {model.id} needs {spec.size}",
                                   field="latent")
            z = torch.tensor(request.latent, dtype=torch.float32).reshape(spec.shape)
        else:
            z = sample_prior(request.seed, spec.shape, spec.prior)
        try:
            return apply_edits(z, request.edits, spec.prior, model.directions)
        except (ValueError, IndexError) as exc:
            raise RequestError(str(exc), field="edits") from None


def edit_value(table: dict, name: str, lo: float, hi: float, default: float) -> float:
    """Edit `name` of an edits table (or its default), RequestError when outside lo … hi."""
    value = float(table.get(name, default))
    if not lo <= value <= hi:
        raise RequestError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}", field="edits")
    return value


def edit_seed_value(table: dict, name: str) -> int:
    """A seed carried in an edits table as a float → the whole number, RequestError otherwise."""
    from studio.latent.edits import edit_seed

    try:
        return edit_seed(table[name], name)
    except ValueError as exc:
        raise RequestError(str(exc), field="edits") from None


def arch_value(manifest: "Manifest", key: str, kind: type, default: Any = None, minimum: Any = None) -> Any:
    """Read architecture.<key> with a ManifestError naming the field on a wrong type or range."""
    arch = manifest.architecture
    if key not in arch:
        if default is None:
            raise ManifestError("required field is missing", manifest.path, f"architecture.{key}")
        return default
    value = arch[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}", manifest.path,
                            f"architecture.{key}")
    if minimum is not None and value < minimum:
        raise ManifestError(f"must be at least {minimum}, got {value}", manifest.path, f"architecture.{key}")
    return value

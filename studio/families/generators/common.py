"""Bring-your-own generators, the parts the TorchScript and ONNX adapters share: a module file named in model.toml
(`weights = "generator.pt"` or `"generator.onnx"`) takes a latent (1, *latent.shape) and, for class conditions, the
class index (1,) as a second input, and returns an image (1, C, H, W) in `architecture.range` ("-1..1" by default, or
"0..1") or a sound (1, samples) / (1, channels, samples) in [-1, 1]. The output's shape is checked against the
manifest. The same panels drive them: seeds, directions, variations, interpolation.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from studio.errors import ManifestError, RequestError
from studio.families.base import Family, LoadedModel, condition_specs, latent_specs
from studio.steps import Output, Progress, RenderSteps
from studio.params import Capability, ParamSpec

RANGES = ("-1..1", "0..1")


class GeneratorFile(Family):
    """A family whose network is a module file run as it is (subclasses load it)."""

    output_kinds = ("image", "audio")
    capabilities = Capability.SAMPLE
    runs_code = True

    def parameters(self, manifest) -> tuple[ParamSpec, ...]:
        classes = condition_specs(manifest) if manifest.conditions.kind == "class" else []
        return (*classes, *latent_specs(manifest))
    suffixes: ClassVar[tuple[str, ...]] = ()
    kind_name: ClassVar[str] = ""  # "TorchScript", "ONNX": for messages

    def validate(self, manifest) -> None:
        super().validate(manifest)
        if not manifest.weights_file.lower().endswith(self.suffixes):
            raise ManifestError(f"a {self.kind_name} package names its module file ({', '.join(self.suffixes)}), "
                                f"got {manifest.weights_file!r}", manifest.path, "weights")
        value = manifest.architecture.get("range", "-1..1")
        if value not in RANGES:
            raise ManifestError(f"must be one of {', '.join(RANGES)}, got {value!r}", manifest.path,
                                "architecture.range")

    def build(self, manifest) -> torch.nn.Module:
        raise ManifestError(f"a {self.kind_name} package is loaded from its module file, not built", manifest.path,
                            "family")

    def render(self, model: LoadedModel, request) -> RenderSteps:
        params = model.params(request)
        yield Progress(0, 1, "generating")
        z = self.latent(model, request).to(model.device, model.dtype)[None]
        args = [z]
        cond = model.manifest.conditions
        if cond.kind == "class":
            args.append(torch.tensor([cond.labels.index(params["label"])], device=model.device))
        try:
            out = model.network(*args)
        except RuntimeError as exc:
            raise RequestError(f"the {self.kind_name} module failed on a latent of shape {tuple(z.shape)}: "
                               f"{str(exc).strip().splitlines()[0]}", field="latent") from None
        if not isinstance(out, torch.Tensor):
            raise RequestError(f"the {self.kind_name} module returned {type(out).__name__}, not a tensor",
                               field="model_id")
        out = out.detach().float().cpu()
        yield Progress(1, 1, "done")
        if model.manifest.output.kind == "image":
            return Output("image", _image(model, out))
        return Output("audio", _sound(model, out), {"sample_rate": model.manifest.output["sample_rate"]})


def _image(model: LoadedModel, out: torch.Tensor) -> np.ndarray:
    spec = model.manifest.output
    want = (1, spec["channels"], spec["height"], spec["width"])
    if tuple(out.shape) != want:
        raise ManifestError(f"the module returned shape {tuple(out.shape)} but model.toml says {want} "
                            "(output.channels, height, width)", model.manifest.path, "output")
    if model.manifest.architecture.get("range", "-1..1") == "-1..1":
        out = (out + 1) / 2
    return np.ascontiguousarray((out[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())


def _sound(model: LoadedModel, out: torch.Tensor) -> np.ndarray:
    spec = model.manifest.output
    if out.dim() == 2:  # (1, samples): mono
        out = out[:, None]
    want = (1, spec["channels"], spec["length"])
    if tuple(out.shape) != want:
        raise ManifestError(f"the module returned shape {tuple(out.shape)} but model.toml says {want} "
                            "(output.channels, length)", model.manifest.path, "output")
    return np.ascontiguousarray(out[0].clamp(-1, 1).T.numpy(), dtype=np.float32)

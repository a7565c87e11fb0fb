"""Bring-your-own generators saved with `torch.jit.save`: a TorchScript module and a small `model.toml` beside it
that says what goes in and what comes out. The same panels drive it: seeds, directions, variations, interpolation.

The manifest names the module file (`weights = "generator.pt"`), the latent shape, the condition (none, or classes
whose index is passed as a second argument) and the output: an image (the module returns (1, C, H, W) in
`architecture.range`, "-1..1" by default, or "0..1") or a sound (it returns (1, samples) or (1, channels, samples) in
[-1, 1]). A TorchScript module is TorchScript code and constants, not a Python pickle: loading it runs no Python.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from studio.errors import ManifestError, RequestError, WeightsError
from studio.families import register_family
from studio.families.base import Family, LoadedModel, Output, Progress, RenderSteps

RANGES = ("-1..1", "0..1")
MODULE_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


@register_family
class TorchScriptFamily(Family):
    name = "torchscript"
    output_kinds = ("image", "audio")
    capabilities = frozenset({"sample"})

    def validate(self, manifest) -> None:
        super().validate(manifest)
        if not manifest.weights_file.lower().endswith(MODULE_SUFFIXES):
            raise ManifestError(f"a TorchScript package names its module file ({', '.join(MODULE_SUFFIXES)}), got "
                                f"{manifest.weights_file!r}", manifest.path, "weights")
        value = manifest.architecture.get("range", "-1..1")
        if value not in RANGES:
            raise ManifestError(f"must be one of {', '.join(RANGES)}, got {value!r}", manifest.path,
                                "architecture.range")

    def load_network(self, manifest) -> torch.nn.Module:
        self.validate(manifest)
        path = manifest.weights_path
        try:
            with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated in favour of torch.export
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu")
        except FileNotFoundError:
            raise WeightsError("the TorchScript module file is missing", path) from None
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"not a TorchScript module (save it with torch.jit.save): {first}", path) from None

    def build(self, manifest) -> torch.nn.Module:
        raise ManifestError("a TorchScript package is loaded from its module file, not built", manifest.path,
                            "family")

    def render(self, model: LoadedModel, request) -> RenderSteps:
        if request.prompt:
            raise RequestError(f"{model.id} takes no text prompt", field="prompt")
        yield Progress(0, 1, "generating")
        z = self.latent(model, request).to(model.device, model.dtype)[None]
        args = [z]
        cond = model.manifest.conditions
        if cond.kind == "class":
            label = request.label or cond.default or cond.labels[0]
            if label not in cond.labels:
                raise RequestError(f"unknown class {label!r} for {model.id} (known: {', '.join(cond.labels)})",
                                   field="label")
            args.append(torch.tensor([cond.labels.index(label)], device=model.device))
        try:
            out = model.network(*args)
        except RuntimeError as exc:
            raise RequestError(f"the TorchScript module failed on a latent of shape {tuple(z.shape)}: "
                               f"{str(exc).strip().splitlines()[0]}", field="latent") from None
        if not isinstance(out, torch.Tensor):
            raise RequestError(f"the TorchScript module returned {type(out).__name__}, not a tensor", field="model_id")
        out = out.detach().float().cpu()
        yield Progress(1, 1, "done")
        if model.manifest.output.kind == "image":
            return Output("image", self._image(model, out))
        return Output("audio", self._sound(model, out), {"sample_rate": model.manifest.output["sample_rate"]})

    def _image(self, model: LoadedModel, out: torch.Tensor) -> np.ndarray:
        spec = model.manifest.output
        want = (1, spec["channels"], spec["height"], spec["width"])
        if tuple(out.shape) != want:
            raise ManifestError(f"the module returned shape {tuple(out.shape)} but model.toml says {want} "
                                "(output.channels, height, width)", model.manifest.path, "output")
        if model.manifest.architecture.get("range", "-1..1") == "-1..1":
            out = (out + 1) / 2
        pixels = (out[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(pixels)

    def _sound(self, model: LoadedModel, out: torch.Tensor) -> np.ndarray:
        spec = model.manifest.output
        if out.dim() == 2:  # (1, samples): mono
            out = out[:, None]
        want = (1, spec["channels"], spec["length"])
        if tuple(out.shape) != want:
            raise ManifestError(f"the module returned shape {tuple(out.shape)} but model.toml says {want} "
                                "(output.channels, length)", model.manifest.path, "output")
        return np.ascontiguousarray(out[0].clamp(-1, 1).T.numpy(), dtype=np.float32)

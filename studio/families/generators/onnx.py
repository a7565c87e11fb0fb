"""ONNX generators, run by onnxruntime (an optional extra: `pip install latent-studio[onnx]`): see
`studio.families.generators` for the package layout. The file's inputs are checked against the manifest when the
model loads: one input for the latent (1, *latent.shape), and a second for the class index when the model has
classes. Runs on the CPU provider (onnxruntime's CUDA build adds CUDAExecutionProvider, used when present).
"""

from __future__ import annotations

import numpy as np
import torch

from studio.errors import ManifestError, WeightsError
from studio.families.generators.common import GeneratorFile


class OnnxGenerator(torch.nn.Module):
    """An onnxruntime session behind the nn.Module call the families use (tensors in, a tensor out)."""

    def __init__(self, session, inputs: list[str]):
        super().__init__()
        self.session, self.inputs = session, inputs

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        feed = {name: arg.detach().cpu().numpy().astype(np.int64 if i else np.float32)
                for i, (name, arg) in enumerate(zip(self.inputs, args))}
        try:
            out = self.session.run(None, feed)[0]
        except Exception as exc:  # onnxruntime's own error types
            raise RuntimeError(str(exc)) from None
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


class OnnxFamily(GeneratorFile):
    name = "onnx"
    suffixes = (".onnx",)
    kind_name = "ONNX"

    def load_network(self, manifest) -> torch.nn.Module:
        self.validate(manifest)
        path = manifest.weights_path
        try:
            import onnxruntime
        except ImportError:
            raise WeightsError("ONNX models need onnxruntime: pip install 'latent-studio[onnx]'", path) from None
        if not path.exists():
            raise WeightsError("the ONNX file is missing", path)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in onnxruntime.get_available_providers()]
        try:
            session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / …
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"not a readable ONNX model: {first}", path) from None
        inputs = session.get_inputs()
        wanted = 2 if manifest.conditions.kind == "class" else 1
        if len(inputs) != wanted:
            names = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ManifestError(f"the ONNX file takes {len(inputs)} input(s) ({names}) but the model needs {wanted}: "
                                "the latent" + (" and the class index" if wanted == 2 else ""), manifest.path,
                                "conditions" if len(inputs) == 3 - wanted else "latent")
        shape = list(inputs[0].shape)
        expected = [1, *manifest.latent.shape]
        if len(shape) != len(expected) or any(isinstance(s, int) and s != e for s, e in zip(shape, expected)):
            raise ManifestError(f"the ONNX file's latent input {inputs[0].name!r} is shaped {shape} but model.toml "
                                f"says {expected}", manifest.path, "latent.shape")
        return OnnxGenerator(session, [i.name for i in inputs])

"""TorchScript generators (`torch.jit.save`): see `studio.families.generators` for the package layout. A TorchScript
module is TorchScript code and constants, not a Python pickle: loading it runs no Python.
"""

from __future__ import annotations

import warnings

import torch

from studio.errors import WeightsError
from studio.families.generators.common import GeneratorFile


class TorchScriptFamily(GeneratorFile):
    name = "torchscript"
    suffixes = (".pt", ".pth", ".ts", ".torchscript")
    kind_name = "TorchScript"

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

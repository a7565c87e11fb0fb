"""Reading checkpoints from outside the studio without running their code: safetensors files, and PyTorch pickles
through torch's weights-only unpickler only (a pickle that needs any other global is refused, naming it)."""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from studio.errors import WeightsError

WRAPPER_KEYS = ("state_dict", "model", "ema", "params_ema", "g_ema")
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|unrecognized function <?([^>\s]+)", re.IGNORECASE)
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def _is_safetensors(path: Path) -> bool:
    """The safetensors shape: an 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensor leaves of nested dicts, keyed by dotted paths; other leaves are ignored."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            flat[name] = value.detach()
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
    return flat


def _refused(exc: BaseException, path: Path) -> WeightsError:
    found = _REFUSED_GLOBAL.search(str(exc))
    reason = _UNPICKLER_REASON.search(str(exc))
    what = (f" (it refers to {found.group(1) or found.group(2)})" if found
            else f" ({reason.group(1).strip()})" if reason else "")
    return WeightsError(f"this checkpoint needs code to load{what}, which safe loading refuses; it was not "
                        "executed. Ask for a plain state dict or a .safetensors file", path)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, never executing it: a state dict, or one under a usual wrapper key
    (state_dict, model, ema, params_ema, g_ema), flattened with dots. Safetensors files are read as such."""
    path = Path(path)
    try:
        if not path.is_file():
            raise WeightsError("no such checkpoint file", path)
        if _is_safetensors(path):
            try:
                return load_file(str(path), device="cpu")
            except SafetensorError as exc:
                raise WeightsError(f"not a readable safetensors file (truncated or corrupt: {exc})", path) from None
        with warnings.catch_warnings():  # torch warns about pickle protocols it did not write
            warnings.simplefilter("ignore")
            data: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except WeightsError:
        raise
    except pickle.UnpicklingError as exc:
        raise _refused(exc, path) from None
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None
    except Exception as exc:  # torch raises KeyError, EOFError, RuntimeError, ValueError… for non-checkpoints
        if path.stat().st_size == 0:
            raise WeightsError("not a PyTorch checkpoint: the file is empty", path) from None
        detail = type(exc).__name__ + (f": {str(exc).split('. ')[0].strip()[:160]}" if str(exc).strip() else "")
        raise WeightsError(f"not a PyTorch checkpoint (not a pickle or torch zip, or truncated; {detail})",
                           path) from None
    if not isinstance(data, Mapping):
        raise WeightsError(f"expected a dict of tensors (a state dict), found {type(data).__name__}", path)
    for key in WRAPPER_KEYS:
        if isinstance(data.get(key), Mapping) and _flatten(data[key]):
            return _flatten(data[key])
    tensors = _flatten(data)
    if not tensors:
        raise WeightsError(f"no tensors found (top-level keys: {', '.join(map(str, list(data)[:8]))})", path)
    return tensors

"""Weights on disk: safetensors only, hashed, checked against the architecture. Nothing is ever unpickled.

Every weights file is opened through studio.files (a FIFO, a device, a link to one or a link loop is refused naming
the file, never waited on) and its header is checked against the file's size before a byte of tensor data is read
(studio.io.safetensors.read_header). Loaded tensors are checked too: a tensor the architecture holds as floating
point must be stored as one (an int32 or bool tensor would be converted without a word), and every value must be
finite (one NaN or Inf spreads through the whole picture). The finiteness check costs one summing pass over the
weights (`all_finite`): a sum is finite only when every term is; only when the sum is not (a NaN, an Inf, or finite
values too large to add up) is a second pass made (the smallest and largest value, which NaN and Inf show in).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save_file

from studio.errors import WeightsError
from studio.files import check_regular, exists_at, open_regular, read_bytes
from studio.io.safetensors import read_header

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin"}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open_regular(path, WeightsError, what="weights file") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _sniff(path: Path) -> str | None:
    """Name the container if the bytes say it is a pickle or a torch zip archive.

    A safetensors file starts with its JSON header's length (8 bytes, little-endian) and then '{'; that length
    may begin with the same byte as a pickle (0x80), so the safetensors shape is checked first.
    """
    with open_regular(path, WeightsError, what="weights file") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= path.stat().st_size:
        return None
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (PyTorch's pickle-based .pt format)"
    return None


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file on CPU. Pickles are refused by name and by content."""
    return read_tensors_and_hash(path, want_hash=False)[0]


def read_tensors_and_hash(path: str | Path, want_hash: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """Load a safetensors file on CPU and its sha256 from one read of the file ("" when not wanted)."""
    path = Path(path)
    if not exists_at(path) and path.suffix.lower() not in PICKLE_SUFFIXES:
        raise WeightsError("weights file is missing", path)
    check_weights_file(path)  # before any open: a FIFO would block it; a truncated file is named as such
    try:
        if not want_hash:
            check_regular(path, WeightsError, what="weights file")
            return load_file(str(path), device="cpu"), ""
        data = read_bytes(path, WeightsError, what="weights file")
        return load(data), hashlib.sha256(data).hexdigest()
    except SafetensorError as exc:
        raise WeightsError(f"not a readable safetensors file (truncated or corrupt: {exc})", path) from None
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None


def check_weights_file(path: str | Path) -> None:
    """The checks a weights file passes when its model folder is added, from its first bytes only: a regular file
    (not a FIFO, a device, a folder or a link loop), not a pickle, a safetensors header whose every tensor lies
    inside the file. WeightsError naming the file otherwise."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightsError(f"'{path.suffix}' files are Python pickles, which can run arbitrary code and are never "
                           "loaded; convert the weights to .safetensors", path)
    check_regular(path, WeightsError, what="weights file")
    try:
        kind = _sniff(path)
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None
    if kind:
        raise WeightsError(f"this is {kind}, not safetensors; pickles are never loaded", path)
    read_header(path)


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every value of `tensor` is finite (True for non-float tensors), in one reduction pass and no copy.

    Fast path: a sum (IEEE arithmetic carries a NaN or an Inf through, so a finite sum proves every term finite).
    When the sum is not finite (a NaN or an Inf in the tensor, or finite values whose sum overflows, as float16
    weights easily do past 65 504), the exact test is the smallest and largest value (torch.aminmax propagates NaN;
    an infinity is the largest or the smallest value). Both are single passes; `torch.isfinite(t).all()` would
    write a bool per value first and costs several times more."""
    if tensor.numel() == 0:
        return True
    if tensor.is_complex():
        return all_finite(torch.view_as_real(tensor))
    if not tensor.is_floating_point():
        return True
    if tensor.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        tensor = tensor.float()  # float8 and other narrow types: few tensors, no reductions of their own
    if bool(torch.isfinite(tensor.sum())):
        return True
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def check_finite(tensors: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """WeightsError naming the first tensor (in name order) holding a NaN or an infinity."""
    for name in sorted(tensors):
        tensor = tensors[name]
        if not all_finite(tensor):
            nan = bool(torch.isnan(tensor).any()) if tensor.is_floating_point() else False
            what = "NaN (not-a-number) values" if nan else "infinite values"
            raise WeightsError(f"tensor {name[:120]!r} holds {what}; the weights are damaged (a failed training "
                               "step or a corrupt file) and would render garbage", path)


def nonfinite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the tensors holding a NaN or an infinity, in name order."""
    return [name for name in sorted(tensors) if not all_finite(tensors[name])]


def tensor_shapes(path: str | Path) -> dict[str, list[int]]:
    """The tensor names and shapes from a safetensors header, without reading the data (cheap, torch-free)."""
    return read_header(path).shapes()


def write_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=metadata)


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Copy `tensors` into `module`, or raise one WeightsError listing every mismatch."""
    expected = module.state_dict()
    problems: list[str] = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:5])}"
                        + (" …" if len(unexpected) > 5 else ""))
    for key in sorted(set(expected) & set(tensors)):
        want, got = tuple(expected[key].shape), tuple(tensors[key].shape)
        if want != got:
            problems.append(f"{key} has shape {list(got)} but the architecture needs {list(want)}")
        elif expected[key].is_floating_point() and not tensors[key].is_floating_point():
            stored = str(tensors[key].dtype).replace("torch.", "")
            problems.append(f"{key} is stored as {stored} but the architecture needs floating point")
    if problems:
        shown = "; ".join(problems[:6]) + ("; …" if len(problems) > 6 else "")
        raise WeightsError(f"weights do not fit the architecture in model.toml: {shown}", path)
    check_finite({k: v for k, v in tensors.items() if k in expected}, path)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})

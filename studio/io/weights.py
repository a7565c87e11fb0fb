"""Weights on disk: safetensors only, hashed, checked against the architecture. Nothing is ever unpickled."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save_file

from studio.errors import WeightsError
from studio.io.safetensors import read_header

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin"}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _sniff(path: Path) -> str | None:
    """Name the container if the bytes say it is a pickle or a torch zip archive.

    A safetensors file starts with its JSON header's length (8 bytes, little-endian) and then '{'; that length
    may begin with the same byte as a pickle (0x80), so the safetensors shape is checked first.
    """
    with open(path, "rb") as f:
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
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightsError(f"'{path.suffix}' files are Python pickles, which can run arbitrary code and are never "
                           "loaded; convert the weights to .safetensors", path)
    if not path.exists():
        raise WeightsError("weights file is missing", path)
    try:
        kind = _sniff(path)
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None
    if kind:
        raise WeightsError(f"this is {kind}, not safetensors; pickles are never loaded", path)
    try:
        if not want_hash:
            return load_file(str(path), device="cpu"), ""
        data = path.read_bytes()
        return load(data), hashlib.sha256(data).hexdigest()
    except SafetensorError as exc:
        raise WeightsError(f"not a readable safetensors file (truncated or corrupt: {exc})", path) from None
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None


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
    if problems:
        shown = "; ".join(problems[:6]) + ("; …" if len(problems) > 6 else "")
        raise WeightsError(f"weights do not fit the architecture in model.toml: {shown}", path)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})

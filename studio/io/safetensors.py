"""The one reader of safetensors headers: tensor names, dtypes and shapes, and the `__metadata__` texts, from the
header alone (no tensor data read, no torch). The library sizes direction sliders with it, Stable Diffusion files are
recognised by it, and the training dialog reads a checkpoint's step and recipe with it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import WeightsError

MAX_HEADER = 100 << 20  # bytes: far more than any real header, small enough to read at once


@dataclass(frozen=True)
class Header:
    """A safetensors header: each tensor's dtype and shape by name, and the file's metadata texts."""

    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def shapes(self) -> dict[str, list[int]]:
        return {name: list(shape) for name, (_, shape) in self.tensors.items()}


def read_header(path: str | Path) -> Header:
    """The header of a safetensors file; WeightsError naming the file when it is not one (too short, an impossible
    header length, a header that is not a JSON object)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise WeightsError("not a safetensors file (shorter than its header)", path)
            size = int.from_bytes(head, "little")
            if not 2 <= size <= min(MAX_HEADER, path.stat().st_size - 8):
                raise WeightsError("not a safetensors file (its header length is impossible)", path)
            raw = json.loads(f.read(size).decode("utf-8"))
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise WeightsError("not a safetensors file (its header is not JSON)", path) from None
    if not isinstance(raw, dict):
        raise WeightsError("not a safetensors file (its header is not a table)", path)
    meta = raw.get("__metadata__") or {}
    metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
    tensors = {}
    for name, info in raw.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        shape = info.get("shape", [])
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
            raise WeightsError(f"not a safetensors file (tensor {name[:60]!r} has no valid shape)", path)
        tensors[name] = (str(info.get("dtype", "")), tuple(shape))
    return Header(tensors, metadata)

"""The one reader of safetensors headers: tensor names, dtypes and shapes, and the `__metadata__` texts, from the
header alone (no tensor data read, no torch). The library sizes direction sliders with it, Stable Diffusion files are
recognised by it, and the training dialog reads a checkpoint's step and recipe with it.

Every header is checked in full against the file it came from before anything else trusts it: the header length
(at most limits.MAX_HEADER_BYTES, inside the file), the tensor count (limits.MAX_TENSORS), each tensor's dtype (one
safetensors knows), shape (non-negative integers) and byte range (`data_offsets` inside the file, its length the
dtype's size × the number of elements, no two tensors overlapping). A truncated or doctored weights file is thus
refused when a model folder is added, by a read of its first bytes, not when a render first loads it. The file is
opened through studio.files: a FIFO, a device or a link loop is refused naming the file, never waited on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import WeightsError
from studio.files import open_regular
from studio.limits import MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_TENSORS, json_depth, quote

MAX_HEADER = MAX_HEADER_BYTES  # (the name this module exported before limits.py held every limit)

# bytes per element of each dtype the safetensors format defines (the 4- and 6-bit float types pack below a byte:
# they are listed in bits, see `_nbytes`)
DTYPE_BYTES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8, "C64": 8, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,
}
_DTYPE_BITS: dict[str, int] = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                          "F4", "F6_E2M3", "F6_E3M2"})


@dataclass(frozen=True)
class Header:
    """A safetensors header: each tensor's dtype and shape by name, and the file's metadata texts; `offsets` holds
    each tensor's byte range in the data part (which starts at `data_start` in the file)."""

    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    data_start: int = 0

    def shapes(self) -> dict[str, list[int]]:
        return {name: list(shape) for name, (_, shape) in self.tensors.items()}


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int | None:
    count = math.prod(shape)
    if dtype in DTYPE_BYTES:
        return count * DTYPE_BYTES[dtype]
    bits = count * _DTYPE_BITS[dtype]
    return bits // 8 if bits % 8 == 0 else None


def read_header(path: str | Path) -> Header:
    """The header of a safetensors file, checked against the file's size; WeightsError naming the file (and the
    tensor) when it is not a whole safetensors file: too short, an impossible header length, a header that is not a
    JSON table, too many tensors, an unknown dtype, a byte range outside the file or not the size of its tensor,
    tensors that overlap. Reads the header only (at most MAX_HEADER_BYTES), never the tensor data."""
    path = Path(path)
    with open_regular(path, WeightsError, what="weights file") as f:
        try:
            file_size = f.seek(0, 2)
            f.seek(0)
            head = f.read(8)
            if len(head) < 8:
                raise WeightsError("not a safetensors file (shorter than its header: truncated or corrupt)", path)
            size = int.from_bytes(head, "little")
            if size > MAX_HEADER_BYTES:
                raise WeightsError(f"not a safetensors file (its header length is impossible: {size:,} bytes, over "
                                   f"the limit of {MAX_HEADER_BYTES:,})", path)
            if not 2 <= size <= file_size - 8:
                raise WeightsError(f"not a safetensors file (its header length is impossible: {size:,} bytes in a "
                                   f"file of {file_size:,}: truncated or corrupt)", path)
            text = f.read(size)
        except OSError as exc:
            raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None
    if len(text) < size:
        raise WeightsError("not a safetensors file (it ends inside its header: truncated or corrupt)", path)
    if json_depth(text) > MAX_JSON_DEPTH:
        raise WeightsError("not a safetensors file (its header nests too deeply)", path)
    try:
        raw = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise WeightsError("not a safetensors file (its header is not JSON)", path) from None
    if not isinstance(raw, dict):
        raise WeightsError("not a safetensors file (its header is not a table)", path)
    count = len(raw) - ("__metadata__" in raw)
    if count > MAX_TENSORS:
        raise WeightsError(f"{count:,} tensors is over the limit of {MAX_TENSORS:,}", path)
    meta = raw.get("__metadata__") or {}
    metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
    data_start, data_size = 8 + size, file_size - 8 - size
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    offsets: dict[str, tuple[int, int]] = {}
    for name, info in raw.items():
        if name == "__metadata__":
            continue
        shown = quote(name, 60)
        if not isinstance(info, dict):
            raise WeightsError(f"not a safetensors file (tensor {shown} is not described by a table)", path)
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                  for s in shape):
            raise WeightsError(f"not a safetensors file (tensor {shown} has no valid shape)", path)
        dtype = info.get("dtype")
        if not isinstance(dtype, str) or (dtype not in DTYPE_BYTES and dtype not in _DTYPE_BITS):
            raise WeightsError(f"not a safetensors file (tensor {shown} has an unknown dtype {quote(dtype, 40)})",
                               path)
        span = info.get("data_offsets")
        if (not isinstance(span, list) or len(span) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in span)):
            raise WeightsError(f"not a safetensors file (tensor {shown} has no valid data_offsets)", path)
        begin, end = span
        if not 0 <= begin <= end:
            raise WeightsError(f"not a safetensors file (tensor {shown} has data_offsets {span} that run backwards)",
                               path)
        if end > data_size:
            raise WeightsError(f"truncated: tensor {shown} ends at byte {data_start + end:,} but the file has "
                               f"{file_size:,} bytes", path)
        want = _nbytes(dtype, tuple(shape))
        if want != end - begin:
            raise WeightsError(f"not a safetensors file (tensor {shown} is {dtype} of shape {shape}: "
                               f"{want if want is not None else 'a fraction of'} bytes, but its data_offsets span "
                               f"{end - begin:,})", path)
        tensors[name] = (dtype, tuple(shape))
        offsets[name] = (begin, end)
    last_end, last_name = 0, ""
    for name, (begin, end) in sorted(offsets.items(), key=lambda item: item[1]):
        if begin < last_end:
            raise WeightsError(f"not a safetensors file (tensors {quote(last_name, 60)} and {quote(name, 60)} "
                               "overlap)", path)
        if end > begin:
            last_end, last_name = end, name
    return Header(tensors, metadata, offsets, data_start)

"""The worker process's wire format: frames of a JSON header and raw array bytes, with no pickle and no torch.

    frame = length (4 bytes, big-endian) | header (UTF-8 JSON object) | the bytes of each array the header lists

The header is an object with a "type" string and, when arrays follow, "arrays": a list of {"dtype", "shape"}. The
worker process runs code from a model file, so what it sends is untrusted: `FrameReader` checks the header's length
and nesting before parsing it, and every array's dtype, shape and size before a byte of it is kept; it never holds
more than the frame it has validated, and it never unpickles. Any violation is a `FrameError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from studio.limits import MAX_JSON_DEPTH, MAX_PIXELS, json_depth, quote

DTYPES = ("uint8", "float32", "int64")  # what may cross: pictures, sounds and latents, class indices
MAX_ARRAYS = 4  # arrays in one frame
MAX_DIMS = 5
MAX_ARRAY_BYTES = MAX_PIXELS * 4 * 4  # one array: a float32 RGBA picture of MAX_PIXELS (1 GiB)
CHUNK = 1 << 20  # bytes read at a time


class FrameError(Exception):
    """A frame that breaks the protocol (too long, not JSON, an array of a wrong type or size)."""


@dataclass
class Frame:
    header: dict[str, Any]
    arrays: list[np.ndarray] = field(default_factory=list)

    @property
    def type(self) -> str:
        return str(self.header.get("type", ""))


def encode(header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> list[bytes | memoryview]:
    """The parts of one frame, in order (written with `write_frame`, or joined)."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    for a in arrays:
        if a.dtype.name not in DTYPES:
            raise FrameError(f"arrays of {a.dtype.name} are not sent (only {', '.join(DTYPES)})")
    body = dict(header, arrays=[{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays])
    text = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return [len(text).to_bytes(4, "big"), text, *(a.data.cast("B") for a in arrays if a.nbytes)]


def write_frame(fd: int, header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
    """Write one frame to the file descriptor `fd` (blocking; partial writes are continued)."""
    import os

    for part in encode(header, arrays):
        view = memoryview(part)
        while view.nbytes:
            written = os.write(fd, view)
            view = view[written:]


def _array_spec(spec: Any, max_bytes: int) -> tuple[np.dtype, tuple[int, ...], int]:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape"}:
        raise FrameError(f"an array is described by its dtype and shape, got {quote(spec)}")
    dtype, shape = spec["dtype"], spec["shape"]
    if dtype not in DTYPES:
        raise FrameError(f"arrays of {quote(dtype)} are not accepted (only {', '.join(DTYPES)})")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or any(
            type(n) is not int or n < 0 for n in shape):
        raise FrameError(f"an array's shape is up to {MAX_DIMS} whole numbers, got {quote(shape)}")
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes > max_bytes:
        raise FrameError(f"an array of shape {quote(shape)} ({nbytes:,} bytes) is over the limit of {max_bytes:,}")
    return dt, tuple(shape), nbytes


class FrameReader:
    """Frames from a byte stream fed in pieces: `want()` says how many bytes are worth reading next, `feed` takes
    them and `next()` returns a whole frame, or None until one is there. Headers over `max_header` bytes, nested
    deeper than MAX_JSON_DEPTH, or arrays over `max_array_bytes` (in all) are refused before they are kept."""

    def __init__(self, max_header: int, max_array_bytes: int = MAX_ARRAY_BYTES):
        self.max_header, self.max_array_bytes = max_header, max_array_bytes
        self._buf = bytearray()
        self._header: dict[str, Any] | None = None
        self._specs: list[tuple[np.dtype, tuple[int, ...], int]] = []
        self._need = 4  # bytes the part being read needs (the length, the header, or the arrays)

    def want(self) -> int:
        """How many more bytes the frame being read needs (at most CHUNK): never more than it may hold."""
        return max(1, min(CHUNK, self._need - len(self._buf)))

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> Frame | None:
        """The next whole frame, or None; FrameError when the stream breaks the protocol."""
        if self._header is None:
            if len(self._buf) < 4:
                self._need = 4
                return None
            size = int.from_bytes(self._buf[:4], "big")
            if size > self.max_header:
                raise FrameError(f"a frame header of {size:,} bytes is over the limit of {self.max_header:,}")
            if len(self._buf) < 4 + size:
                self._need = 4 + size
                return None
            text = bytes(self._buf[4:4 + size])
            del self._buf[:4 + size]
            self._header, self._specs = self._parse(text)
            self._need = sum(n for _, _, n in self._specs)
        if len(self._buf) < self._need:
            return None
        arrays = []
        offset = 0
        for dt, shape, nbytes in self._specs:
            data = bytearray(self._buf[offset:offset + nbytes])  # a copy: the array owns its bytes
            arrays.append(np.frombuffer(data, dtype=dt).reshape(shape))
            offset += nbytes
        del self._buf[:offset]
        header, self._header, self._specs, self._need = self._header, None, [], 4
        return Frame(header, arrays)

    def _parse(self, text: bytes) -> tuple[dict[str, Any], list[tuple[np.dtype, tuple[int, ...], int]]]:
        if json_depth(text) > MAX_JSON_DEPTH:
            raise FrameError(f"a frame header nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            header = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise FrameError(f"a frame header is not JSON: {quote(str(exc))}") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise FrameError("a frame header is a JSON object with a type")
        specs = header.pop("arrays", [])
        if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
            raise FrameError(f"a frame carries a list of at most {MAX_ARRAYS} arrays, got {quote(specs)}")
        parsed = [_array_spec(spec, self.max_array_bytes) for spec in specs]
        total = sum(n for _, _, n in parsed)
        if total > self.max_array_bytes:
            raise FrameError(f"a frame's arrays ({total:,} bytes) are over the limit of {self.max_array_bytes:,}")
        return header, parsed

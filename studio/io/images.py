"""Pictures from files and inside requests, opened safely.

Every picture the app decodes (an init image, a `render --from` picture, a dropped or imported file, a glyph strip, an
init image inside a request) is opened by `open_picture`: only a regular file (`studio.files`), its size checked from
the header against `limits.MAX_IMAGE_PIXELS` before any pixel is decoded, and PNG text chunks capped so that a
compressed text chunk cannot unpack into gigabytes. Every failure is a one-line error naming the file.

An image-to-image start picture travels in a request as the text of a base64 PNG (`encode_init_image`).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from studio import limits
from studio.errors import RequestError, StudioError
from studio.files import open_regular

# PNG text chunks: the most one chunk may unpack to (bytes), and to all of them together. A stored request is at most
# MAX_METADATA_TEXT characters of ASCII JSON; the slack is for the `parameters` text and other programs' chunks.
MAX_TEXT_CHUNK_BYTES = limits.MAX_METADATA_TEXT + (64 << 10)
MAX_TEXT_MEMORY_BYTES = 4 * MAX_TEXT_CHUNK_BYTES

_configured = False


def pillow_limits() -> None:
    """Pillow's own guards set from `studio.limits` (once, when this module is imported; idempotent): its
    decompression-bomb check at MAX_IMAGE_PIXELS (`open_picture` refuses first, naming the size), and its PNG
    text-chunk caps."""
    global _configured
    if _configured:
        return
    from PIL import Image, PngImagePlugin

    Image.MAX_IMAGE_PIXELS = limits.MAX_IMAGE_PIXELS
    PngImagePlugin.MAX_TEXT_CHUNK = MAX_TEXT_CHUNK_BYTES
    PngImagePlugin.MAX_TEXT_MEMORY = MAX_TEXT_MEMORY_BYTES
    _configured = True


pillow_limits()  # at import: every Pillow read in the process (datasets, videos, the window) gets the same caps


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR (the first 24 bytes), or None when `data` is not a PNG's start."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _too_big(size: tuple[int, int] | None, pixels: int | None) -> str:
    shown = f"{size[0]}×{size[1]} ({size[0] * size[1]:,} pixels)" if size else f"{pixels:,} pixels" if pixels \
        else "too many pixels"
    return f"the picture is {shown}, over the limit of {limits.MAX_IMAGE_PIXELS:,} pixels"


def check_picture_size(size: tuple[int, int], path: str | Path | None, field: str | None = None,
                       error: type[StudioError] = RequestError) -> None:
    """Refuse a picture whose header says more than MAX_IMAGE_PIXELS (before its pixels are decoded)."""
    width, height = size
    if width <= 0 or height <= 0:
        raise error(f"the picture has no pixels ({width}×{height})", path, field)
    if width * height > limits.MAX_IMAGE_PIXELS:
        raise error(_too_big(size, None), path, field)


def _pil_problem(exc: BaseException, head: bytes) -> str:
    """A one-line problem for an error Pillow raised while opening or decoding a picture."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return _too_big(_png_header_size(head), int(found.group(1)) if found else None)
    text = str(exc) or type(exc).__name__
    if "MAX_TEXT_CHUNK" in text:
        return f"metadata text too large: a compressed text chunk unpacks to over {MAX_TEXT_CHUNK_BYTES:,} bytes"
    if "MAX_TEXT_MEMORY" in text:
        return f"metadata text too large: the text chunks hold over {MAX_TEXT_MEMORY_BYTES:,} bytes"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file"
    return f"not a readable image ({text[:limits.QUOTE_CHARS]})"


@contextmanager
def open_picture(source: str | Path | bytes, error: type[StudioError] = RequestError, field: str | None = None,
                 name: str | Path | None = None) -> Iterator:
    """The picture at `source` (a path, or the bytes of an image file) opened with Pillow, header only: a regular
    file, its size checked against MAX_IMAGE_PIXELS, PNG text chunks capped. `error` names `name` (default: the
    path) and `field`. Decode pixels inside the block (`load`, `convert`); failures there are `error` too."""
    from PIL import Image, UnidentifiedImageError

    pillow_limits()
    where = name if name is not None else (None if isinstance(source, bytes) else source)
    stream: IO[bytes]
    if isinstance(source, bytes):
        stream = io.BytesIO(source)
    else:
        stream = open_regular(source, error, field, what="picture")
    with stream:
        head = stream.read(24)
        stream.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused just below, with its size
                image = Image.open(stream)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError,
                struct.error, IndexError, TypeError, EOFError) as exc:
            raise error(_pil_problem(exc, head), where, field) from None
        with image:
            check_picture_size(image.size, where, field, error)
            try:
                yield image
            except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError,
                    struct.error, IndexError, EOFError, MemoryError) as exc:
                if isinstance(exc, StudioError):
                    raise
                raise error(_pil_problem(exc, head), where, field) from None


def encode_init_image(image: np.ndarray) -> str:
    """An init image (H, W[, C]) uint8 → the request's `init_image` text (a base64 PNG)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_init_image(text: str, mode: str = "L") -> np.ndarray:
    """The request's `init_image` → uint8 (H, W) grey (mode "L") or (H, W, 3) colour (mode "RGB"); RequestError when it
    is not a readable PNG, or is bigger than MAX_IMAGE_PIXELS (checked from its header, before decoding)."""
    field = "params.init_image"
    if not isinstance(text, str):
        raise RequestError("init_image must be the text of a base64 PNG", field=field)
    if len(text) > limits.MAX_METADATA_TEXT:
        raise RequestError(f"init_image is {len(text):,} characters, over the limit of "
                           f"{limits.MAX_METADATA_TEXT:,}", field=field)
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error) as exc:  # UnicodeEncodeError is a ValueError
        raise RequestError(f"init_image is not a base64 PNG: {str(exc)[:limits.QUOTE_CHARS]}", field=field) from None

    with open_picture(data, RequestError, field) as img:
        img.load()
        return np.asarray(img.convert(mode))

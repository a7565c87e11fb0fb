"""Pictures inside requests: an image-to-image start picture travels in a request as the text of a base64 PNG."""

from __future__ import annotations

import base64
import io

import numpy as np

from studio.errors import RequestError


def encode_init_image(image: np.ndarray) -> str:
    """An init image (H, W[, C]) uint8 → the request's `init_image` text (a base64 PNG)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_init_image(text: str, mode: str = "L") -> np.ndarray:
    """The request's `init_image` → uint8 (H, W) grey (mode "L") or (H, W, 3) colour (mode "RGB"); RequestError when it
    is not a readable PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert(mode))
    except (ValueError, UnidentifiedImageError, OSError) as exc:
        raise RequestError(f"init_image is not a base64 PNG: {exc}", field="params.init_image") from None

"""The output size of an export: the model's pictures scaled ×1–×16 (nearest: crisp pixels; smooth: Lanczos) or to a
width × height. Applied in the export path only: the request a file carries stays the model's own; the `parameters`
text records the scale ("Export size: 1024x256 (×4 nearest)").

    OutputSize(scale=4, filter="nearest").apply(image)   # a 256×64 glyph strip becomes 1024×256
    OutputSize.parse("4", "nearest", None)               # the command line's --scale / --filter / --size
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from studio.errors import ExportError
from studio.limits import MAX_PIXELS, MAX_SIDE

MAX_SCALE = 16
FILTERS = ("nearest", "smooth")
_SCALED = re.compile(r"(\d{1,5})x(\d{1,5}) \(×(\d{1,2}) (nearest|smooth)\)")
_SIZED = re.compile(r"(\d{1,5})x(\d{1,5}) \((nearest|smooth)\)")
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "smooth": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class OutputSize:
    """×`scale` with `filter`, or, when `size` (width, height) is given, that size (with `filter`)."""

    scale: int = 1
    filter: str = "nearest"
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or not 1 <= self.scale <= MAX_SCALE:
            raise ExportError(f"the scale must be a whole number from 1 to {MAX_SCALE}, got {self.scale!r}")
        if self.filter not in FILTERS:
            raise ExportError(f"the filter must be {' or '.join(FILTERS)}, got {self.filter!r}")
        if self.size is not None:
            if self.scale != 1:
                raise ExportError("give a scale or a size, not both")
            width, height = self.size
            self._check(width, height)

    @staticmethod
    def _check(width: int, height: int) -> None:
        if min(width, height) < 1 or max(width, height) > MAX_SIDE:
            raise ExportError(f"an output of {width}x{height} px: each side must be 1 to {MAX_SIDE} px")
        if width * height > MAX_PIXELS:
            raise ExportError(f"an output of {width}x{height} px is over the limit of {MAX_PIXELS:,} pixels")

    @classmethod
    def parse(cls, scale: str | int | None, filter: str | None, size: str | None) -> "OutputSize":
        """From the command line's texts (`size` "WIDTHxHEIGHT"); ExportError naming the option otherwise."""
        chosen = filter or "nearest"
        if size:
            width, sep, height = size.lower().partition("x")
            try:
                pair = (int(width), int(height))
            except ValueError:
                raise ExportError(f"--size takes WIDTHxHEIGHT in pixels (e.g. 1024x256), got {size!r}") from None
            if not sep:
                raise ExportError(f"--size takes WIDTHxHEIGHT in pixels (e.g. 1024x256), got {size!r}")
            return cls(1 if scale in (None, "", 1, "1") else _whole(scale), chosen, pair)
        return cls(1 if scale is None else _whole(scale), chosen)

    @classmethod
    def from_description(cls, text: str) -> "OutputSize | None":
        """The OutputSize `describe` wrote ("1024x256 (×4 nearest)", "500x100 (smooth)"), or None for other (or
        out of range) text."""
        scaled, sized = _SCALED.fullmatch(text.strip()), _SIZED.fullmatch(text.strip())
        try:
            if scaled:
                return cls(int(scaled.group(3)), scaled.group(4))
            if sized:
                return cls(size=(int(sized.group(1)), int(sized.group(2))), filter=sized.group(3))
        except ExportError:  # a note out of range: no scale
            return None
        return None

    @property
    def identity(self) -> bool:
        return self.size is None and self.scale == 1

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The output size of a `width` × `height` picture; ExportError when it would pass the limits."""
        out = self.size if self.size is not None else (width * self.scale, height * self.scale)
        self._check(*out)
        return out

    def describe(self, width: int, height: int) -> str:
        """"1024x256 (×4 nearest)" for a 256×64 picture."""
        out = self.target(width, height)
        how = f"×{self.scale} {self.filter}" if self.size is None else f"{self.filter}"
        return f"{out[0]}x{out[1]} ({how})"

    def apply(self, image: np.ndarray) -> np.ndarray:
        """`image` (H, W[, C]) uint8 at its output size."""
        if self.identity:
            return image
        width, height = self.target(image.shape[1], image.shape[0])
        if (width, height) == (image.shape[1], image.shape[0]):
            return image
        if self.filter == "nearest" and self.size is None:  # whole multiples: exact repetition, no resampler
            return np.ascontiguousarray(image.repeat(self.scale, axis=0).repeat(self.scale, axis=1))
        grey = image.ndim == 3 and image.shape[2] == 1
        picture = Image.fromarray(np.ascontiguousarray(image[..., 0] if grey else image))
        out = np.asarray(picture.resize((width, height), _RESAMPLE[self.filter]))
        return out[..., None] if grey else out

    def frames(self, frames: np.ndarray) -> np.ndarray:
        """A batch (N, H, W, C) of frames at their output size."""
        if self.identity:
            return frames
        return np.stack([self.apply(frame) for frame in frames])


def _whole(value: str | int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExportError(f"--scale takes a whole number from 1 to {MAX_SCALE}, got {value!r}") from None

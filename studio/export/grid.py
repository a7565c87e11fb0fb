"""Labelled grids of outputs (AUTOMATIC1111's X/Y plot): rows × columns of images, a label for every row and
column, an optional title; one uint8 RGB image, ready for `save_image` (which stores the request inside)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PAPER = (255, 255, 255)
INK = (20, 20, 20)
GAP = 4  # pixels between cells
PAD = 8  # around labels


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own scalable face: present on every install, nothing to find on the system."""
    return ImageFont.load_default(size=size)


def _rgb(cell: np.ndarray) -> np.ndarray:
    if cell.dtype != np.uint8:
        raise ValueError(f"grid cells must be uint8 images, got {cell.dtype}")
    if cell.ndim == 2:
        cell = cell[:, :, None]
    if cell.ndim != 3 or cell.shape[2] not in (1, 3, 4):
        raise ValueError(f"grid cells must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {cell.shape}")
    if cell.shape[2] == 1:
        return np.repeat(cell, 3, axis=2)
    return cell[:, :, :3]


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)  # whole pixels from (0, 0)
    return int(right - left), int(bottom - top)


def labelled_grid(cells: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str], column_labels: Sequence[str],
                  title: str = "", font_size: int = 14) -> np.ndarray:
    """`cells[r][c]` (all the same size) laid out with `row_labels` on the left, `column_labels` on top and `title`
    above them; RGB uint8."""
    rows = len(cells)
    if rows == 0 or any(len(row) == 0 for row in cells):
        raise ValueError("a grid needs at least one row and one column")
    cols = len(cells[0])
    if any(len(row) != cols for row in cells):
        raise ValueError("every row of a grid needs the same number of cells")
    if len(row_labels) != rows or len(column_labels) != cols:
        raise ValueError(f"a {rows} × {cols} grid needs {rows} row labels and {cols} column labels, got "
                         f"{len(row_labels)} and {len(column_labels)}")
    images = [[_rgb(np.asarray(c)) for c in row] for row in cells]
    height, width = images[0][0].shape[:2]
    if any(img.shape[:2] != (height, width) for row in images for img in row):
        raise ValueError("every cell of a grid must have the same size")
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(_text_size(probe, str(t), font)[0] for t in row_labels) + 2 * PAD
    label_h = max(_text_size(probe, str(t), font)[1] for t in column_labels) + 2 * PAD
    title_h = _text_size(probe, title, font)[1] + 2 * PAD if title else 0
    grid_w = cols * width + (cols - 1) * GAP
    grid_h = rows * height + (rows - 1) * GAP
    canvas = Image.new("RGB", (label_w + grid_w + PAD, title_h + label_h + grid_h + PAD), PAPER)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((label_w, PAD), title, fill=INK, font=font)
    for c, text in enumerate(column_labels):
        tw, _ = _text_size(draw, str(text), font)
        x = label_w + c * (width + GAP) + (width - tw) // 2
        draw.text((x, title_h + PAD), str(text), fill=INK, font=font)
    for r, text in enumerate(row_labels):
        _, th = _text_size(draw, str(text), font)
        y = title_h + label_h + r * (height + GAP) + (height - th) // 2
        draw.text((PAD, y), str(text), fill=INK, font=font)
        for c, img in enumerate(images[r]):
            canvas.paste(Image.fromarray(np.ascontiguousarray(img)),
                         (label_w + c * (width + GAP), title_h + label_h + r * (height + GAP)))
    return np.asarray(canvas)


# --- axes of an X/Y plot ---------------------------------------------------------------------------------------------


def parse_axis(text: str) -> tuple[str, list[str]]:
    """"NAME=V1,V2,…" → (name, the values as typed); ValueError saying what is wrong. Which names a model takes, and
    what values, its parameter specs decide (`ParamTable.parse_setting`)."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise ValueError(f"an axis is NAME=V1,V2,… (e.g. seed=1,2,3 or d0=-2,0,2), got {text!r}")
    return name, [v.strip() for v in values.split(",")]


def grid_request(base: Any, *axes: tuple[str, Any]) -> Any:
    """`base` (a RenderRequest) with each (name, value) of `axes` applied: core fields (seed, width, height, dtype)
    by name, the rest as params."""
    from studio.params import apply_settings

    return apply_settings(base, axes)


def axis_labels(name: str, values: Sequence[Any]) -> list[str]:
    return [f"{name} = {v:g}" if isinstance(v, float) else f"{name} = {v}" for v in values]


def grid_title(model_name: str, row_name: str, col_name: str) -> str:
    return f"{model_name}: {row_name} by row, {col_name} by column"

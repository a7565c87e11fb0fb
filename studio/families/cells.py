"""Character-cell helpers shared by the image families that draw one cell per character or class.

A text prompt becomes rows of class indices (None = a blank cell); finished cells are laid out in a sheet, inverted
for ink-on-paper models, resized to the request's size and quantised. Images given to encode or project are brought
to the model's cell size with ink as 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from studio.errors import ManifestError, RequestError

if TYPE_CHECKING:
    from studio.families.base import LoadedModel


def check_cell_manifest(manifest, family: str, flat_latent: bool = True) -> None:
    """What every character-cell family needs of its manifest: square cells, the labels it was trained on, and
    (for flat-latent families) a flat latent; ManifestError naming the field otherwise."""
    out = manifest.output
    if out["width"] != out["height"]:
        raise ManifestError(f"the {family} family makes square images; got {out['width']}x{out['height']}",
                            manifest.path, "output.height")
    if flat_latent and len(manifest.latent.shape) != 1:
        raise ManifestError(f"the {family} family has a flat latent; got shape {list(manifest.latent.shape)}",
                            manifest.path, "latent.shape")
    if manifest.conditions.kind in ("class", "text") and not manifest.conditions.labels:
        raise ManifestError("needs the labels (or alphabet) it was trained on", manifest.path, "conditions")


def label_rows(model: "LoadedModel", request) -> list[list[int | None]]:
    """Rows of class indices (None = blank cell) for the request's condition (its `prompt` or `label` param, checked
    against the model's specs first)."""
    cond = model.manifest.conditions
    params = model.params(request)
    if cond.kind == "none":
        return [[0]]
    index = {label: i for i, label in enumerate(cond.labels)}
    if cond.kind == "class":
        return [[index[params["label"]]]]
    text = params["prompt"] or cond.default or cond.labels[0]
    rows: list[list[int | None]] = []
    for line in text.split("\n"):
        row: list[int | None] = []
        for ch in line:
            if ch in index:
                row.append(index[ch])
            elif ch.isspace():
                row.append(None)
            else:
                raise RequestError(f"{model.id} cannot draw {ch!r}; it draws: {''.join(cond.labels)} and spaces",
                                   field="params.prompt")
        rows.append(row)
    if not any(i is not None for row in rows for i in row):
        raise RequestError("the prompt has nothing to draw", field="params.prompt")
    return rows


def sheet_size(rows: list[list[int | None]], cell: int) -> tuple[int, int]:
    """(width, height) in pixels of the sheet for these rows at the model's native cell size."""
    return cell * max(len(r) for r in rows), cell * len(rows)


def compose_sheet(model: "LoadedModel", request, rows: list[list[int | None]], cells: torch.Tensor) -> np.ndarray:
    """Cells (N, C, S, S) with 1 = ink, one per non-blank label in `rows` → the image, uint8 (H, W, C)."""
    sheet = layout(rows, cells)
    if model.manifest.architecture.get("ink_on_paper", False):
        sheet = 1.0 - sheet
    sheet = sheet.float().cpu()  # resizing and quantising on the CPU: antialiased resize is missing on some backends
    if request.width or request.height:
        h = request.height or round(sheet.shape[1] * request.width / sheet.shape[2])
        w = request.width or round(sheet.shape[2] * request.height / sheet.shape[1])
        sheet = F.interpolate(sheet[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
    image = (sheet.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(image)


def layout(rows: list[list[int | None]], cells: torch.Tensor) -> torch.Tensor:
    """Cells (N, C, S, S) placed in rows (blank cells stay 0) → (C, rows·S, cols·S)."""
    c, s = cells.shape[1], cells.shape[-1]
    width = max(len(r) for r in rows)
    sheet = torch.zeros(c, s * len(rows), s * width, device=cells.device, dtype=cells.dtype)
    k = 0
    for r, row in enumerate(rows):
        for col, label in enumerate(row):
            if label is not None:
                sheet[:, r * s:(r + 1) * s, col * s:(col + 1) * s] = cells[k]
                k += 1
    return sheet


def split_sheet(rows: list[list[int | None]], sheet: torch.Tensor, cell: int) -> torch.Tensor:
    """The inverse of `layout`: (C, rows·S, cols·S) → the non-blank cells (N, C, S, S)."""
    out = []
    for r, row in enumerate(rows):
        for col, label in enumerate(row):
            if label is not None:
                out.append(sheet[:, r * cell:(r + 1) * cell, col * cell:(col + 1) * cell])
    return torch.stack(out)


def to_ink(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1], dark-on-light or light-on-dark (told by the border) → 1 = ink."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    return 1.0 - x if border.median() > 0.5 else x


def prepare_cells(model: "LoadedModel", images: np.ndarray, labels: list[str] | None, size: int,
                  channels: int, resize: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images (N, H, W[, C]) uint8 → (N, C, size, size) float in [0, 1] with 1 = ink, and their class indices
    (None for unconditional models). With resize=False an image of another size is an error."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32) / 255.0
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]  # (N, 1, H, W)
    elif x.ndim == 4:
        x = x.permute(0, 3, 1, 2)
    else:
        raise RequestError(f"expected images of shape (N, H, W) or (N, H, W, C), got {tuple(x.shape)}",
                           field="images")
    if x.shape[1] != channels:
        x = x[:, :3].mean(1, keepdim=True) if channels == 1 else x[:, :1].expand(-1, channels, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        if not resize:
            raise RequestError(f"{model.id} needs {size}×{size} images; got {x.shape[-1]}×{x.shape[-2]}",
                               field="images")
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    x = to_ink(x)
    lab = None
    cond = model.manifest.conditions
    if cond.kind in ("class", "text"):
        if not labels or len(labels) != x.shape[0]:
            raise RequestError(f"{model.id} needs the character (label) of each image to encode it", field="labels")
        missing = [lb for lb in labels if lb not in cond.labels]
        if missing:
            raise RequestError(f"unknown label(s) {missing} for {model.id}", field="labels")
        lab = torch.tensor([cond.labels.index(lb) for lb in labels])
    return x, lab

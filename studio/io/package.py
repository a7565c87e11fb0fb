"""Write a finished model package: model.toml, weights, directions, preview, recipe — atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import torch
from PIL import Image

from studio.io.atomic import FILE_MODE, FOLDER_MODE
from studio.manifest import (DIRECTIONS_NAME, MANIFEST_NAME, PREVIEW_NAME, RECIPE_NAME, WEIGHTS_NAME,
                             read_manifest)
from studio.io.weights import write_tensors


def write_package(folder: str | Path, manifest: dict[str, Any], weights: dict[str, torch.Tensor],
                  directions: dict[str, torch.Tensor] | None = None, preview: np.ndarray | None = None,
                  recipe_text: str | None = None) -> Path:
    """Build the package in a temporary sibling folder, validate it, then swap it into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        (tmp / MANIFEST_NAME).write_text(tomli_w.dumps(manifest), encoding="utf-8")
        write_tensors(weights, tmp / WEIGHTS_NAME)
        if directions is not None:
            write_tensors(directions, tmp / DIRECTIONS_NAME)
        if preview is not None:
            Image.fromarray(preview).save(tmp / PREVIEW_NAME, optimize=True)
        if recipe_text is not None:
            (tmp / RECIPE_NAME).write_text(recipe_text, encoding="utf-8")
        read_manifest(tmp)  # never publish a package the app cannot read
        tmp.chmod(FOLDER_MODE)  # mkdtemp made it private; a package is an ordinary folder
        for item in tmp.iterdir():
            item.chmod(FILE_MODE)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old")
            if old.exists():
                shutil.rmtree(old)
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder

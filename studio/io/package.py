"""Write a finished model package: model.toml, weights, directions, preview, recipe — atomically.

A package is built in a temporary folder of its own beside the target (`.<name>.pid<pid>.<random>.part`, see
studio.io.atomic) and swapped into place. Only a model package is ever replaced: a folder that is anything else (a
user's folder that happens to have the package's name, a file, a link) is refused, naming it, and left alone.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10, as studio.manifest
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

import numpy as np
import tomli_w
import torch
from PIL import Image

from studio.errors import StudioError
from studio.io.atomic import FILE_MODE, FOLDER_MODE, forget, temporary_beside
from studio.manifest import (DIRECTIONS_NAME, MANIFEST_NAME, PREVIEW_NAME, RECIPE_NAME, WEIGHTS_NAME,
                             parse_manifest, read_manifest)
from studio.io.weights import write_tensors

NOT_A_PACKAGE = "is not a model package; refusing to replace it"


def is_model_package(folder: str | Path) -> bool:
    """Whether `folder` is a model package: a real folder (not a link) whose model.toml is a regular file that reads
    as a manifest. Never blocks (a FIFO named model.toml is not read) and never raises."""
    from studio.files import read_toml_text

    folder = Path(folder)
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        path = folder / MANIFEST_NAME
        parse_manifest(tomllib.loads(read_toml_text(path)), path)
    except (OSError, ValueError, StudioError, tomllib.TOMLDecodeError, RecursionError):
        return False
    return True


def check_replaceable(folder: str | Path, error: type[StudioError] = StudioError, field: str | None = None) -> Path:
    """`folder` when a package may be written there: nothing is there yet, or a model package is (to be replaced);
    else `error` naming it (a user's folder, a file or a link is never replaced)."""
    folder = Path(folder)
    if os.path.lexists(folder) and not is_model_package(folder):
        raise error(NOT_A_PACKAGE, folder, field)
    return folder


def swap_into_place(new: Path, target: Path, error: type[StudioError] = StudioError) -> None:
    """Move the finished folder `new` (a temporary beside `target`) to `target`. A package already there is renamed
    to a unique temporary first, then removed once `new` is in place (put back if that fails); anything else there
    is refused (check_replaceable) and left alone."""
    check_replaceable(target, error)
    old = None
    if os.path.lexists(target):
        old = temporary_beside(target, target.parent, folder=True, suffix=".old")
        forget(old)  # for a moment it holds the earlier package: never one to remove on a signal
        os.rmdir(old)  # a unique name, made by mkdtemp; renamed onto next (a folder onto a folder, on every OS)
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    forget(new)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_package(folder: str | Path, manifest: dict[str, Any], weights: dict[str, torch.Tensor],
                  directions: dict[str, torch.Tensor] | None = None, preview: np.ndarray | None = None,
                  recipe_text: str | None = None) -> Path:
    """Build the package in a temporary sibling folder, validate it, then swap it into place. A folder already at
    `folder` that is not a model package is refused before anything is written (check_replaceable)."""
    folder = check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(folder, folder.parent, folder=True)
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
        swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        forget(tmp)
        raise
    return folder

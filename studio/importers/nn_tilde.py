"""Import an nn~ TorchScript file (RAVE v1/v2, nn_tilde modules) as a sound model package.

The file is code, so this process never loads it: a worker process (`studio.engine.sandbox`) loads it through the
checked TorchScript loader and reads its methods and attributes (`NnTildeFamily.inspect_file`); from those a
model.toml is written beside a copy of the file, in a new package folder. Why a package and not a manifest made each
time the file is opened (as a Stable Diffusion checkpoint is): reading the attributes means loading the code, which
only a worker process may do, and scanning the model folders must stay cheap; the package also fixes the sound's
duration (the latent trajectory's frames), which the file does not say. Each load checks the file against model.toml
again, in the worker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import tomli_w

from studio import limits
from studio.engine.sandbox import Sandbox
from studio.errors import StudioError, WeightsError
from studio.families import get_family
from studio.files import check_name, check_regular
from studio.io.atomic import temporary_beside
from studio.io.package import check_replaceable, swap_into_place
from studio.manifest import package_id_from, read_manifest
from studio.paths import user_models_dir

SUFFIXES = (".ts", ".pt", ".pth", ".torchscript")
WEIGHTS = "model.ts"


def import_nn_tilde(source: str | Path, out: str | Path | None = None, seconds: float = 4.0,
                    model_id: str | None = None, name: str | None = None, license: str | None = None,
                    force: bool = False, timeout: float = limits.MAX_TRIAL_SECONDS) -> Path:
    """The package folder written for the nn~ file `source` (default: the user models folder / its id), whose
    sounds last about `seconds`. WeightsError naming the file and the attribute when it is not an nn~ module."""
    source = Path(source)
    if source.suffix.lower() not in SUFFIXES:
        raise WeightsError(f"expected an nn~ TorchScript file ({', '.join(SUFFIXES)})", source)
    check_regular(source, WeightsError, what="nn~ TorchScript file")  # not a FIFO, a device, a link loop
    model_id = check_name(model_id, "package id", field="--id") if model_id is not None else \
        package_id_from(source.stem, "nn-tilde")
    folder = Path(out) if out is not None else user_models_dir() / model_id
    if os.path.lexists(folder):
        if not force:
            raise StudioError("a package is already there (use --force to replace it, or --out/--id)", folder)
        check_replaceable(folder)
    sandbox = Sandbox(threads=1)
    try:
        info = sandbox.inspect("nn-tilde", source, timeout)
    finally:
        sandbox.close()
    family = get_family("nn-tilde")
    manifest = family.package_manifest(  # type: ignore[attr-defined]
        info, seconds, model_id, name or source.stem, license or "unknown (check the model's own licence)", WEIGHTS,
        source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(folder, folder.parent, folder=True)
    try:
        shutil.copyfile(source, tmp / WEIGHTS)
        (tmp / "model.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")
        family.validate(read_manifest(tmp))
        swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder

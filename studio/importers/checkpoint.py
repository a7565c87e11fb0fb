"""Import PyTorch pickle checkpoints (.ckpt, .pt, .pth, .pkl) into model packages, safely.

Pickles can run arbitrary code when loaded. They are read only with `torch.load(weights_only=True)`, whose restricted
unpickler accepts tensors, plain containers and numbers and refuses every other global (a class, a function, a reduce
to an arbitrary callable) before calling it. Anything it refuses is reported as a WeightsError and never executed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from studio.errors import ManifestError, WeightsError
from studio.families import get_family
from studio.io.checkpoints import read_checkpoint
from studio.manifest import MANIFEST_NAME, parse_manifest
from studio.io.package import write_package

COMMON_PREFIXES = ("module.", "model.", "model.module.", "module.model.", "net.", "network.", "generator.",
                   "_orig_mod.", "model._orig_mod.")
_SHOWN = 5


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in tensors.items()}


def _best_prefix(tensors: dict[str, torch.Tensor], expected: Mapping[str, Any], given: str | None) -> str:
    """`given`, or whichever common prefix (or none) makes the most keys match the network."""
    if given is not None:
        return given
    candidates = ("",) + COMMON_PREFIXES
    return max(candidates, key=lambda p: (len(set(_strip(tensors, p)) & set(expected)), p == ""))


def _listed(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (f" … ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def import_checkpoint(path: str | Path, family_manifest: dict, out_folder: str | Path,
                      strip_prefix: str | None = None) -> Path:
    """Map a checkpoint's tensors onto the network that `family_manifest` describes and write a package to
    `out_folder`. Every key and shape must fit; otherwise one WeightsError lists the problems and nothing is written."""
    path, out_folder = Path(path), Path(out_folder)
    tensors = read_checkpoint(path)
    manifest = parse_manifest(family_manifest, out_folder / MANIFEST_NAME)
    family = get_family(manifest.family)
    try:
        network = family.build(manifest)
    except (ValueError, TypeError) as exc:
        raise ManifestError(f"cannot build the network: {exc}", manifest.path, "architecture") from None
    expected = network.state_dict()
    prefix = _best_prefix(tensors, expected, strip_prefix)
    mapped = _strip(tensors, prefix)
    if len(mapped) != len(tensors):
        raise WeightsError(f"stripping {prefix!r} makes some tensor names collide", path)
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    wrong = [f"{k} {list(mapped[k].shape)} (needs {list(expected[k].shape)})"
             for k in sorted(set(expected) & set(mapped)) if mapped[k].shape != expected[k].shape]
    problems = [f"{what} {len(names)}: {_listed(names)}" for what, names in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if names]
    if problems:
        stripped = f" after stripping {prefix!r}" if prefix else ""
        raise WeightsError(f"the checkpoint does not fit the {manifest.family!r} network{stripped}: "
                           + "; ".join(problems), path)
    network.load_state_dict({k: mapped[k] for k in expected})
    weights = {k: v.detach().clone() for k, v in network.state_dict().items()}
    return write_package(out_folder, family_manifest, weights)


def import_like(source: str | Path, template, out: str | Path | None = None, model_id: str | None = None,
                name: str | None = None, license_: str | None = None, strip_prefix: str | None = None,
                force: bool = False, taken: str = "use --force to replace it, or --out/--id") -> Path:
    """`import FILE --like MODEL`, from the CLI or the app: the checkpoint mapped onto the installed package
    `template`'s architecture (its model.toml with a new id, name and description) and written as a new package,
    by default in the user models folder (a package already there is refused, `taken` saying what to do). The
    package folder."""
    from studio.files import check_name
    from studio.io.package import check_replaceable
    from studio.manifest import package_id_from, read_toml
    from studio.paths import user_models_dir

    source = Path(source)
    if model_id is not None:  # before it names any folder
        model_id = check_name(model_id, "package id", WeightsError, field="--id")
    model_id = model_id or package_id_from(source.stem, "imported")
    manifest = read_toml(template.manifest.path)
    manifest.update(id=model_id, name=name or source.stem, version="1.0.0",
                    description=f"{source.name}, imported onto the architecture of {template.id}.",
                    license=license_ or "unknown (imported: check the checkpoint's own licence)")
    manifest["training"] = {"imported_from": source.name, "architecture_of": template.id}
    target = Path(out) if out else user_models_dir() / model_id
    if os.path.lexists(target):
        if not force:
            raise WeightsError(f"a package is already there ({taken})", target)
        check_replaceable(target, WeightsError)  # --force replaces a model package, never a folder of the user's
    return import_checkpoint(source, manifest, target, strip_prefix=strip_prefix)

"""Import PyTorch pickle checkpoints (.ckpt, .pt, .pth, .pkl) into model packages, safely.

Pickles can run arbitrary code when loaded. They are read only with `torch.load(weights_only=True)`, whose restricted
unpickler accepts tensors, plain containers and numbers and refuses every other global (a class, a function, a reduce
to an arbitrary callable) before calling it. Anything it refuses is reported as a WeightsError and never executed.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from studio.errors import ManifestError, WeightsError
from studio.families import get_family
from studio.manifest import MANIFEST_NAME, parse_manifest
from studio.train.package import write_package

WRAPPER_KEYS = ("state_dict", "model", "ema", "params_ema", "g_ema")
COMMON_PREFIXES = ("module.", "model.", "model.module.", "module.model.", "net.", "network.", "generator.",
                   "_orig_mod.", "model._orig_mod.")
_SHOWN = 5
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|unrecognized function <?([^>\s]+)", re.IGNORECASE)
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def _is_safetensors(path: Path) -> bool:
    """The safetensors shape: an 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensor leaves of nested dicts, keyed by dotted paths; other leaves are ignored."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            flat[name] = value.detach()
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
    return flat


def _refused(exc: BaseException, path: Path) -> WeightsError:
    found = _REFUSED_GLOBAL.search(str(exc))
    reason = _UNPICKLER_REASON.search(str(exc))
    what = (f" (it refers to {found.group(1) or found.group(2)})" if found
            else f" ({reason.group(1).strip()})" if reason else "")
    return WeightsError(f"this checkpoint needs code to load{what}, which safe loading refuses; it was not "
                        "executed. Ask for a plain state dict or a .safetensors file", path)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, never executing it: a state dict, or one under a usual wrapper key
    (state_dict, model, ema, params_ema, g_ema), flattened with dots. Safetensors files are read as such."""
    path = Path(path)
    try:
        if not path.is_file():
            raise WeightsError("no such checkpoint file", path)
        if _is_safetensors(path):
            try:
                return load_file(str(path), device="cpu")
            except SafetensorError as exc:
                raise WeightsError(f"not a readable safetensors file (truncated or corrupt: {exc})", path) from None
        with warnings.catch_warnings():  # torch warns about pickle protocols it did not write
            warnings.simplefilter("ignore")
            data: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except WeightsError:
        raise
    except pickle.UnpicklingError as exc:
        raise _refused(exc, path) from None
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None
    except Exception as exc:  # torch raises KeyError, EOFError, RuntimeError, ValueError… for non-checkpoints
        if path.stat().st_size == 0:
            raise WeightsError("not a PyTorch checkpoint: the file is empty", path) from None
        detail = type(exc).__name__ + (f": {str(exc).split('. ')[0].strip()[:160]}" if str(exc).strip() else "")
        raise WeightsError(f"not a PyTorch checkpoint (not a pickle or torch zip, or truncated; {detail})",
                           path) from None
    if not isinstance(data, Mapping):
        raise WeightsError(f"expected a dict of tensors (a state dict), found {type(data).__name__}", path)
    for key in WRAPPER_KEYS:
        if isinstance(data.get(key), Mapping) and _flatten(data[key]):
            return _flatten(data[key])
    tensors = _flatten(data)
    if not tensors:
        raise WeightsError(f"no tensors found (top-level keys: {', '.join(map(str, list(data)[:8]))})", path)
    return tensors


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


def import_sd_checkpoint(path: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """A pickled Stable Diffusion 1.x checkpoint (.ckpt) rewritten as the .safetensors file the app opens (beside it
    by default), read with the weights-only loader: nothing in it is executed, and checkpoints whose pickle needs
    code (training callbacks, say) are refused."""
    from safetensors.torch import save_file

    from studio.families.sd_files import SD1_TEXT_KEY, UNET_KEY, checkpoint_architecture

    path = Path(path)
    out = Path(out) if out else path.with_suffix(".safetensors")
    if out.exists() and not force:
        raise WeightsError("a file is already there (use --force to replace it, or --out)", out)
    tensors = read_checkpoint(path)
    if UNET_KEY not in tensors:
        raise WeightsError("not a Stable Diffusion checkpoint (no model.diffusion_model.* weights)", path)
    if SD1_TEXT_KEY not in tensors:
        raise WeightsError("not a full SD 1.x checkpoint (no cond_stage_model.transformer.* text encoder)", path)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"converted_from": path.name, "by": "latent-studio import --sd"})
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"cannot write: {exc.strerror or exc}", out) from None
    checkpoint_architecture(out)
    return out


def import_like(source: str | Path, template, out: str | Path | None = None, model_id: str | None = None,
                name: str | None = None, license_: str | None = None, strip_prefix: str | None = None,
                force: bool = False, taken: str = "use --force to replace it, or --out/--id") -> Path:
    """`import FILE --like MODEL`, from the CLI or the app: the checkpoint mapped onto the installed package
    `template`'s architecture (its model.toml with a new id, name and description) and written as a new package,
    by default in the user models folder (a package already there is refused, `taken` saying what to do). The
    package folder."""
    from studio.manifest import package_id_from, read_toml
    from studio.paths import user_models_dir

    source = Path(source)
    model_id = model_id or package_id_from(source.stem, "imported")
    manifest = read_toml(template.manifest.path)
    manifest.update(id=model_id, name=name or source.stem, version="1.0.0",
                    description=f"{source.name}, imported onto the architecture of {template.id}.",
                    license=license_ or "unknown (imported: check the checkpoint's own licence)")
    manifest["training"] = {"imported_from": source.name, "architecture_of": template.id}
    target = Path(out) if out else user_models_dir() / model_id
    if target.exists() and not force:
        raise WeightsError(f"a package is already there ({taken})", target)
    return import_checkpoint(source, manifest, target, strip_prefix=strip_prefix)

"""The family registry: which code renders a manifest's `family`, loaded only when a package of it is used.

Built-in families are listed here, one line each (name → "module:Class"); a third-party package adds its own through
the entry-point group `latent_studio.families` (name = "package.module:FamilyClass"). Nothing is imported until a
family is asked for, so importing one family never imports the others and the families form no import cycle.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import FamilyError

if TYPE_CHECKING:
    from studio.families.base import Family
    from studio.manifest import Manifest

ENTRY_POINT_GROUP = "latent_studio.families"

# The families the app ships: the manifest's `family` → where its Family class lives. Adding a family is a folder
# under studio/families/ plus its line here.
BUILTIN: dict[str, str] = {
    "vae": "studio.families.vae:VAEFamily",
    "gan": "studio.families.gan:GANFamily",
    "diffusion": "studio.families.diffusion:DiffusionFamily",
    "audio-vae": "studio.families.audio_vae:AudioVAEFamily",
    "stable-diffusion": "studio.families.stable_diffusion:StableDiffusionFamily",
    "torchscript": "studio.families.generators.torchscript:TorchScriptFamily",
    "onnx": "studio.families.generators.onnx:OnnxFamily",
    "stylegan": "studio.families.stylegan:StyleGANFamily",
    "nn-tilde": "studio.families.nn_tilde:NnTildeFamily",
}

_targets: dict[str, str] = dict(BUILTIN)
_instances: dict[str, "Family"] = {}
_errors: dict[str, str] = {}  # family name → why it failed to load
_entry_points_read = False


def register_family(family: "type[Family] | Family") -> "type[Family] | Family":
    """Register a family class (or instance) under its `name` now (tests, scripts); returns what it was given."""
    instance = family() if isinstance(family, type) else family
    if not instance.name:
        raise ValueError(f"{family!r} has no name")
    _instances[instance.name] = instance
    _errors.pop(instance.name, None)
    return family


def unregister_family(name: str) -> None:
    """Forget a family registered with `register_family` (tests); built-in and plug-in entries stay listed."""
    _instances.pop(name, None)


def _read_entry_points() -> None:
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _targets:  # a plug-in never replaces a built-in family
            _targets[ep.name] = ep.value


def _load(name: str) -> "Family":
    target = _targets[name]
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
        instance = obj() if isinstance(obj, type) else obj
    except Exception as exc:  # a broken plug-in (or a missing optional package) must not break the app
        _errors[name] = f"{type(exc).__name__}: {exc}"
        raise FamilyError(f"model family {name!r} failed to load ({_errors[name]})", field="family") from None
    if getattr(instance, "name", None) != name:
        raise FamilyError(f"{target} is registered as family {name!r} but names itself "
                          f"{getattr(instance, 'name', None)!r}", field="family")
    _instances[name] = instance
    return instance


def get_family(name: str) -> "Family":
    """The family registered as `name` (loaded on first use); FamilyError naming the installed ones otherwise."""
    if name in _instances:
        return _instances[name]
    _read_entry_points()
    if name not in _targets:
        raise FamilyError(f"unknown model family {name!r}; installed: {', '.join(family_names())}", field="family")
    return _load(name)


def family_names() -> list[str]:
    _read_entry_points()
    return sorted(set(_targets) | set(_instances))


def claim_path(path: Path) -> "Family | None":
    """The family that opens `path` as a model without a model.toml (a diffusers folder, a checkpoint file), if any.
    Only families that say they open foreign files (`Family.opens_files`) are asked, cheaply (no weights read)."""
    for name in family_names():
        try:
            family = get_family(name)
        except FamilyError:
            continue
        if family.opens_files and family.claims(path):
            return family
    return None


def importing_family(path: Path) -> "Family | None":
    """The family whose `import_file` converts `path`, recognised by its content (an NVIDIA network pickle, say), if
    any. Only families that say they import files by content (`Family.imports_by_content`) are asked, cheaply."""
    for name in family_names():
        try:
            family = get_family(name)
        except FamilyError:
            continue
        if family.imports_by_content and family.imports(path):
            return family
    return None


def foreign_manifest(path: Path) -> "Manifest | None":
    """A manifest made for a foreign model file or folder by the family that claims it (None when none does)."""
    family = claim_path(path)
    return family.manifest_for(path) if family is not None else None

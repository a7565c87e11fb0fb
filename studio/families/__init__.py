"""Model families, registered by the manifest's `family` name.

Built-in families register on import; a third party adds one through the entry-point group
`latent_studio.families` whose objects are Family subclasses (or instances).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from studio.errors import FamilyError
from studio.families.base import Family, LoadedModel, Output, Preview, Progress, RenderSteps

ENTRY_POINT_GROUP = "latent_studio.families"
_REGISTRY: dict[str, Family] = {}
_entry_points_loaded = False
_entry_point_errors: dict[str, str] = {}


def register_family(family: type[Family] | Family) -> Family:
    """Register a family class (or instance) under its `name`; returns what it was given, so it works as a
    class decorator."""
    instance = family() if isinstance(family, type) else family
    if not instance.name:
        raise ValueError(f"{family!r} has no name")
    _REGISTRY[instance.name] = instance
    return family  # type: ignore[return-value]


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            register_family(obj)
        except Exception as exc:  # a broken plug-in must not break the app
            _entry_point_errors[ep.name] = f"{type(exc).__name__}: {exc}"


def get_family(name: str) -> Family:
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = f" (plug-in failed to load: {_entry_point_errors[name]})" if name in _entry_point_errors else ""
        raise FamilyError(f"unknown model family {name!r}{hint}; installed: {', '.join(sorted(_REGISTRY))}",
                          field="family") from None


def family_names() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


from studio.families import audio_vae as _audio_vae  # noqa: E402,F401  (built-in families register themselves)
from studio.families import diffusion as _diffusion  # noqa: E402,F401
from studio.families import gan as _gan  # noqa: E402,F401
from studio.families import onnx as _onnx  # noqa: E402,F401
from studio.families import stable_diffusion as _stable_diffusion  # noqa: E402,F401
from studio.families import torchscript as _torchscript  # noqa: E402,F401
from studio.families import vae as _vae  # noqa: E402,F401

__all__ = ["Family", "LoadedModel", "Output", "Preview", "Progress", "RenderSteps", "register_family",
           "get_family", "family_names", "ENTRY_POINT_GROUP"]

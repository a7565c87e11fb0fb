"""Parameters shared by the families that walk a sampler from noise to a picture (the glyph diffusion model, Stable
Diffusion): the sampler settings, image-to-image, and the request's values of them with the family's defaults."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from studio.errors import RequestError
from studio.nets.samplers import MAX_STEPS, SAMPLER_NAMES, SAMPLERS
from studio.params import INIT, SAMPLER, Kind, ParamSpec

if TYPE_CHECKING:
    from studio.families.base import LoadedModel

STRENGTH_RANGE = (0.01, 1.0)


class SamplerDefaults(TypedDict):
    """A family's sampler settings where a request leaves them unset."""

    sampler: str
    steps: int
    guidance: float
    eta: float


def sampler_specs(defaults: SamplerDefaults, guidance: tuple[float, float],
                  names: tuple[str, ...] = SAMPLERS) -> list[ParamSpec]:
    """Sampler (one of `names`), steps, classifier-free guidance and DDIM's η, with the family's defaults."""
    return [
        ParamSpec("sampler", Kind.CHOICE, "Sampler", default=defaults["sampler"],
                  choices=tuple((name, SAMPLER_NAMES[name]) for name in names), group=SAMPLER, render_only=True,
                  help="The sampler that walks from noise to the picture: DPM-Solver++ and Euler are good in few "
                       "steps, DDIM is deterministic (or noisy with η), DDPM needs many steps"),
        ParamSpec("steps", Kind.INT, "Steps", default=defaults["steps"], range=(1, MAX_STEPS), group=SAMPLER,
                  render_only=True, help="Sampler steps: more is slower and usually cleaner"),
        ParamSpec("guidance", Kind.FLOAT, "Guidance", default=defaults["guidance"], range=guidance, step=0.5,
                  group=SAMPLER, render_only=True,
                  help="Classifier-free guidance: how strongly the condition steers the sample"),
        ParamSpec("eta", Kind.FLOAT, "η", default=defaults["eta"], range=(0.0, 1.0), step=0.1, group=SAMPLER,
                  render_only=True, when=("sampler", ("ddim",)),
                  help="DDIM η: 0 is deterministic, 1 adds fresh noise each step (like DDPM); only the DDIM sampler "
                       "uses it"),
    ]


def init_specs(help_image: str) -> list[ParamSpec]:
    """Image-to-image: the start picture and how much of it is redrawn."""
    return [
        ParamSpec("init_image", Kind.IMAGE, "Init image", group=INIT, render_only=True, help=help_image),
        ParamSpec("strength", Kind.FLOAT, "Strength", default=1.0, range=STRENGTH_RANGE, group=INIT,
                  render_only=True, when=("init_image", ()),
                  help="How much of the init image is redrawn: low keeps the picture, 1 ignores it"),
    ]


def sampler_settings(model: "LoadedModel", request) -> tuple[str, int, float, float]:
    """The request's (sampler, steps, guidance, η), its family's defaults where it leaves them unset."""
    values = model.params(request)
    return values["sampler"], values["steps"], values["guidance"], values["eta"]


def start_strength(request) -> float | None:
    """Image-to-image: how much of the init image is redrawn (1 when unset), or None without an init image;
    RequestError when a strength is given without one."""
    if request.param("init_image") is None:
        if request.param("strength") is not None:
            raise RequestError("strength needs an init image (image-to-image)", field="params.strength")
        return None
    return float(request.param("strength", 1.0))

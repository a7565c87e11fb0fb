"""What a family lets an artist set: typed parameter specs, the capabilities flag, and checking requests against them.

A family declares its parameters for a manifest (`Family.parameters(manifest)`), each a `ParamSpec`:

    ParamSpec("truncation", Kind.FLOAT, "ψ", default=1.0, span=(0.0, 1.5), group=SHAPING)
    ParamSpec("d", Kind.FLOAT, "Dir", default=0.0, span=(-3, 3), count=8, group=DIRECTIONS)   # d0 … d7
    ParamSpec("sampler", Kind.CHOICE, choices=(("ddim", "DDIM"), ("euler", "Euler")), default="ddim", group=SAMPLER)

From the specs alone the window builds its controls, the command line checks `--set NAME=VALUE` and grid axes, and
the engine checks a request before it renders. A spec whose name is a core field of the request (`seed`, `width`,
`height`) describes that field (its range, step, group) instead of a param.

Nothing here imports torch or Qt.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from studio.errors import RequestError
from studio.limits import MAX_PROMPT_CHARS, MAX_SIDE
from studio.request import CORE_FIELDS, MAX_SEED, ParamValue, RenderRequest, check_seed


class Kind(str, enum.Enum):
    SEED = "seed"  # a whole number in 0 … 2⁶⁴−1 (mix seed, variation seed)
    INT = "int"
    FLOAT = "float"
    CHOICE = "choice"  # one of `choices`
    TEXT = "text"  # free text, or only the characters of `charset` (and spaces)
    IMAGE = "image"  # a picture inside the request (a base64 PNG)
    SOUND = "sound"  # a sound inside the request (base64 FLAC)


class Capability(enum.Flag):
    """What a family can do beyond rendering its parameters."""

    NONE = 0
    SAMPLE = enum.auto()  # render from a seed
    ENCODE = enum.auto()  # take the latent from a picture or a sound (its output kind)
    PROJECT = enum.auto()  # … and that encoding is long work (an optimisation, with progress and cancel)
    DECODE = enum.auto()  # render explicit latent values
    ITERATE = enum.auto()  # renders in steps with a preview at each
    IMG2IMG = enum.auto()  # starts from a picture (the `init_image` param)
    ANY_SIZE = enum.auto()  # draws at any width × height (whole cells of `size_step` pixels)


# Groups: where a parameter's control goes. The conditions panel shows these three; every other group (a family may
# name its own) goes to the latent panel, in the order the family declares them.
CONDITIONS = "Conditions"
SAMPLER = "Sampler"
INIT = "Image to image"
CONDITION_GROUPS = (CONDITIONS, SAMPLER, INIT)
SEED_GROUP = "Seed"
DIRECTIONS = "Principal directions"
RAW = "Raw dimensions"
SHAPING = "Truncation, mixing, variation"

_INDEXED = re.compile(r"^([a-z_]+?)(\d+)$")
MAX_TEXT = MAX_PROMPT_CHARS  # characters of a text param (a prompt); pictures may be longer
MAX_PICTURE_TEXT = 64 * 1024 * 1024


@dataclass(frozen=True)
class ParamSpec:
    """One thing an artist can set on a model.

    `range` is what a request may hold (None: any finite number); `span` is what a slider shows (default: `range`).
    `count` > 0 makes an indexed family of params `name0` … `name{count-1}` (direction offsets, raw dimensions).
    `render_only`: the param acts while rendering, not on the latent; when a computed latent (saved, encoded,
    interpolated) replaces the seed, these are kept and the others, already inside that latent, are dropped.
    `seeded_only`: the param acts only on a latent the seed draws (ignored under explicit values): dropped, and said
    so, when an encoded latent replaces the seed.
    `when` = (other, values): the param matters only while param `other` has one of `values` (() = any value set).
    `at_most` = other: the param may not exceed param `other` (both with their defaults when unset).
    """

    name: str
    kind: Kind
    label: str = ""
    default: ParamValue | None = None  # None: unset (a seed param off, an image absent, text empty)
    range: tuple[float, float] | None = None
    span: tuple[float, float] | None = None
    step: float | None = None  # slider or spin step (INT: sizes snap to it)
    choices: tuple[tuple[str, str], ...] = ()  # CHOICE: (value, label)
    charset: str = ""  # TEXT: the characters it can draw, besides spaces ("" = any text)
    group: str = CONDITIONS
    render_only: bool = False
    seeded_only: bool = False
    count: int = 0
    when: tuple[str, tuple[ParamValue, ...]] | None = None
    at_most: str = ""  # INT/FLOAT: the name of a param this one may not exceed (a layer range's start and end)
    help: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.name):
            raise ValueError(f"parameter name {self.name!r} must be lower-case letters, digits and _")
        if self.kind is Kind.CHOICE and not self.choices:
            raise ValueError(f"choice parameter {self.name!r} needs choices")
        if self.count and self.name[-1].isdigit():
            raise ValueError(f"indexed parameter {self.name!r} must not end in a digit")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def slider_span(self) -> tuple[float, float] | None:
        return self.span or self.range

    @property
    def is_core(self) -> bool:
        return self.name in CORE_FIELDS

    def names(self) -> list[str]:
        """The param names this spec covers: itself, or name0 … name{count-1}."""
        return [f"{self.name}{k}" for k in range(self.count)] if self.count else [self.name]

    def choice_values(self) -> tuple[str, ...]:
        return tuple(value for value, _ in self.choices)

    def check(self, value: Any, name: str | None = None) -> ParamValue:
        """`value` as this param holds it (ints for seeds and ints, floats for floats), or RequestError naming
        params.<name> and what it takes."""
        name = name or self.name
        where = name if name in CORE_FIELDS else f"params.{name}"
        if self.kind is Kind.SEED:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
                raise RequestError(f"must be a whole number in 0..{MAX_SEED}, got {_shown(value)}", field=where)
            return value
        if self.kind is Kind.INT:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise RequestError(f"must be a whole number, got {_shown(value)}", field=where)
            self._check_range(value, where)
            return value
        if self.kind is Kind.FLOAT:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(f"must be a number, got {_shown(value)}", field=where)
            value = float(value)
            if not math.isfinite(value):
                raise RequestError(f"must be a finite number, got {value!r}", field=where)
            self._check_range(value, where)
            return value
        if not isinstance(value, str):
            raise RequestError(f"must be text, got {_shown(value)}", field=where)
        if self.kind is Kind.CHOICE:
            if value not in self.choice_values():
                raise RequestError(f"must be one of {', '.join(self.choice_values())}, got {_shown(value)}",
                                   field=where)
        elif self.kind is Kind.TEXT:
            if len(value) > MAX_TEXT:
                raise RequestError(f"is {len(value)} characters long; at most {MAX_TEXT} are taken", field=where)
        elif len(value) > MAX_PICTURE_TEXT:
            raise RequestError(f"is {len(value)} characters long; at most {MAX_PICTURE_TEXT} are taken", field=where)
        return value

    def _check_range(self, value: float, where: str) -> None:
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            lo, hi = self.range
            raise RequestError(f"must be between {lo:g} and {hi:g}, got {value:g}", field=where)

    def parse(self, text: str, name: str | None = None) -> ParamValue:
        """A value typed on the command line (`--set name=text`, a grid axis) → the checked value."""
        name = name or self.name
        where = name if name in CORE_FIELDS else f"params.{name}"  # the field `check` names
        text = text.strip() if self.kind not in (Kind.TEXT,) else text
        if self.kind in (Kind.SEED, Kind.INT):
            try:
                value: Any = int(text)
            except ValueError:
                raise RequestError(f"needs a whole number, got {text!r}", field=where) from None
        elif self.kind is Kind.FLOAT:
            try:
                value = float(text)
            except ValueError:
                raise RequestError(f"needs a number, got {text!r}", field=where) from None
        else:
            value = text
        return self.check(value, name)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


# --- a model's specs ---------------------------------------------------------------------------------------------------


class ParamTable:
    """The specs of one model, looked up by param name (indexed ones included)."""

    def __init__(self, specs: Iterable[ParamSpec]):
        self.specs: tuple[ParamSpec, ...] = tuple(specs)
        self._by_name = {s.name: s for s in self.specs}
        if len(self._by_name) != len(self.specs):
            raise ValueError("two parameter specs share a name")

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def find(self, name: str) -> ParamSpec | None:
        """The spec covering param `name` (`d3` → the `d` spec when 3 < its count), or None."""
        spec = self._by_name.get(name)
        if spec is not None and not spec.count:
            return spec
        m = _INDEXED.match(name)
        if m:
            spec = self._by_name.get(m.group(1))
            if spec is not None and spec.count and int(m.group(2)) < spec.count and str(int(m.group(2))) == m.group(2):
                return spec
        return None

    def get(self, name: str) -> ParamSpec | None:
        return self._by_name.get(name)

    def known_names(self) -> list[str]:
        """The names to offer in messages: plain params, and indexed ones as `d0…d7`."""
        out = []
        for s in self.specs:
            out.append(f"{s.name}0…{s.name}{s.count - 1}" if s.count else s.name)
        return out

    def spec(self, name: str) -> ParamSpec:
        """The spec of `name`, or RequestError naming the params this model takes."""
        spec = self.find(name)
        if spec is None:
            where = name if name in CORE_FIELDS else f"params.{name}"
            raise RequestError(f"this model takes no parameter {name!r} (it takes: {', '.join(self.known_names())})",
                               field=where)
        return spec

    def check_params(self, params: Mapping[str, Any]) -> dict[str, ParamValue]:
        """Every param checked against its spec (unknown names refused, naming the known ones)."""
        return {name: self.spec(name).check(value, name) for name, value in params.items()}

    def check(self, request: RenderRequest) -> RenderRequest:
        """`request` with its params checked and normalised (ints stay ints, floats become floats) and its core fields
        checked against any core spec (a width that must be a multiple of 8, say). RequestError otherwise."""
        params = self.check_params(request.params)
        for spec in self.specs:
            if spec.at_most and (spec.name in params or spec.at_most in params):
                low = params.get(spec.name, spec.default)
                other = self.find(spec.at_most)
                high = params.get(spec.at_most, other.default if other is not None else None)
                # at_most joins INT/FLOAT params, so both values are numbers once checked
                if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
                    raise RequestError(f"must be at most {spec.at_most} ({high}), got {low}",
                                       field=f"params.{spec.name}")
        for core in ("seed", "width", "height"):
            core_spec = self._by_name.get(core)
            value = getattr(request, core)
            if core_spec is not None and value is not None:
                core_spec.check(value, core)
        if params != request.params.to_dict() or any(type(params[k]) is not type(request.params[k]) for k in params):
            request = request.with_(params=params)
        return request

    def value(self, request: RenderRequest, name: str) -> Any:
        """The request's value of `name`, or the spec's default (None for an indexed or unset param)."""
        if name in request.params:
            return request.params[name]
        spec = self.find(name)
        return None if spec is None or spec.count else spec.default

    def default(self, name: str) -> Any:
        """The default of param `name` (indexed ones included), None when unknown or unset by default."""
        spec = self.find(name)
        return spec.default if spec is not None else None

    def values(self, request: RenderRequest) -> dict[str, Any]:
        """Every plain param with the request's value or the default, plus the request's indexed params."""
        out = {s.name: s.default for s in self.specs if not s.count and not s.is_core}
        out.update(request.params)
        return out

    def render_only(self, request: RenderRequest) -> dict[str, ParamValue]:
        """The request's params that act while rendering (kept when a computed latent replaces the seed)."""
        return {k: v for k, v in request.params.items() if (s := self.find(k)) is not None and s.render_only}

    def parse_setting(self, name: str, text: str) -> tuple[str, ParamValue]:
        """`--set name=text` or a grid axis value: (where it goes, value). Core fields (seed, width, height, dtype)
        come back under their own names."""
        if name == "seed":
            try:
                return name, check_seed(int(text.strip()))
            except ValueError:
                raise RequestError(f"needs a whole number, got {text!r}", field="seed") from None
        if name in ("width", "height"):
            spec = self._by_name.get(name) or ParamSpec(name, Kind.INT, range=(1, MAX_SIDE))
            return name, spec.parse(text, name)
        if name == "dtype":
            return name, text.strip()
        return name, self.spec(name).parse(text, name)

    def settable(self) -> list[str]:
        """What `--set` and grid axes take: the core fields and every declared param."""
        core = ["seed", "width", "height", "dtype"]
        return [*core, *(name for name in self.known_names() if name not in core)]  # SD's width spec: named once


def apply_settings(request: RenderRequest, settings: Sequence[tuple[str, ParamValue]]) -> RenderRequest:
    """`request` with parsed settings applied (core fields by name, the rest as params)."""
    core = {k: v for k, v in settings if k in CORE_FIELDS}
    params = {k: v for k, v in settings if k not in CORE_FIELDS}
    if core:
        request = request.with_(**core)
    return request.with_params(params) if params else request

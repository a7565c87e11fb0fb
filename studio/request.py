"""`RenderRequest`: the one record of everything that decides an output.

Equal requests give equal outputs (bit-identical on CPU). It is what the engine renders, what a panel edits and what
an exported file carries in its metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from studio.errors import RequestError
from studio.latent.edits import parse_edit_name
from studio.latent.seeds import MAX_SEED

REQUEST_VERSION = 1
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class RenderRequest:
    model_id: str
    model_hash: str = ""  # sha256 of the weights; "" renders whatever is installed under model_id
    seed: int = 0
    latent: tuple[float, ...] | None = None  # explicit latent values (flattened); when set, the seed is not used
    edits: tuple[tuple[str, float], ...] = ()  # named latent edits, see studio.latent.edits (kept sorted)
    prompt: str = ""
    negative_prompt: str = ""
    label: str | None = None  # class condition
    steps: int | None = None
    guidance: float | None = None
    eta: float | None = None
    sampler: str | None = None  # iterative families: the sampler's name (None = the family's default)
    init_image: str | None = None  # image-to-image: the starting picture, a base64 PNG at the output's native size
    strength: float | None = None  # image-to-image: how much of the picture is redrawn, 0 < strength ≤ 1
    width: int | None = None  # output size; None = the model's native size
    height: int | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id:
            raise RequestError("model_id must be a non-empty string", field="model_id")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise RequestError(f"seed must be a whole number in 0..{MAX_SEED}, got {self.seed!r}", field="seed")
        for name in ("sampler", "init_image"):
            if getattr(self, name) is not None and (not isinstance(getattr(self, name), str) or not getattr(self, name)):
                raise RequestError(f"{name} must be non-empty text, got {getattr(self, name)!r}", field=name)
        for name in ("prompt", "negative_prompt", "model_hash"):
            if not isinstance(getattr(self, name), str):
                raise RequestError(f"{name} must be text, got {getattr(self, name)!r}", field=name)
        if self.label is not None and not isinstance(self.label, str):
            raise RequestError(f"label must be text, got {self.label!r}", field="label")
        if self.latent is not None:
            try:
                if isinstance(self.latent, (str, bytes)):
                    raise TypeError
                values = tuple(float(v) for v in self.latent)
            except (TypeError, ValueError, OverflowError):
                raise RequestError("latent must be a list of numbers", field="latent") from None
            if not values or not all(math.isfinite(v) for v in values):
                raise RequestError("latent must be a non-empty list of finite numbers", field="latent")
            object.__setattr__(self, "latent", values)
        edits: dict[str, float] = {}
        for pair in self.edits:
            try:
                name, value = pair
                parse_edit_name(name)
                value = float(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise RequestError(str(exc), field="edits") from None
            if not math.isfinite(value):
                raise RequestError(f"edit {name!r} must be finite", field="edits")
            edits[name] = value
        object.__setattr__(self, "edits", tuple(sorted(edits.items())))
        for name in ("steps", "width", "height"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise RequestError(f"{name} must be a positive whole number, got {value!r}", field=name)
        for name in ("guidance", "eta", "strength"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise RequestError(f"{name} must be a finite number, got {value!r}", field=name)
                object.__setattr__(self, name, float(value))
        if self.strength is not None and not 0.0 < self.strength <= 1.0:
            raise RequestError(f"strength must be above 0 and at most 1, got {self.strength:g}", field="strength")
        if self.eta is not None and not 0.0 <= self.eta <= 1.0:
            raise RequestError(f"eta must be between 0 and 1, got {self.eta:g}", field="eta")
        if self.dtype not in DTYPES:
            raise RequestError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}", field="dtype")

    # --- edits -------------------------------------------------------------------------------------------------
    def edit(self, name: str, value: float | None) -> "RenderRequest":
        """A copy with edit `name` set to `value` (None removes it)."""
        table = dict(self.edits)
        if value is None:
            table.pop(name, None)
        else:
            table[name] = value
        return replace(self, edits=tuple(table.items()))

    def with_(self, **changes: Any) -> "RenderRequest":
        return replace(self, **changes)

    # --- JSON ----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latent"] = list(self.latent) if self.latent is not None else None
        data["edits"] = [[k, v] for k, v in self.edits]
        return {"version": REQUEST_VERSION, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RenderRequest":
        if not isinstance(data, dict):
            raise RequestError("a render request must be a JSON object")
        data = dict(data)
        version = data.pop("version", REQUEST_VERSION)
        if version != REQUEST_VERSION:
            raise RequestError(f"request version {version} is not supported (this app reads {REQUEST_VERSION})",
                               field="version")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RequestError(f"unknown field(s): {', '.join(unknown)}")
        if isinstance(data.get("latent"), list):
            data["latent"] = tuple(data["latent"])
        if "edits" in data:
            try:
                data["edits"] = tuple((str(k), v) for k, v in data["edits"])
            except (TypeError, ValueError):
                raise RequestError("edits must be a list of [name, value] pairs", field="edits") from None
        try:
            return cls(**data)
        except TypeError as exc:
            raise RequestError(str(exc)) from None

    @classmethod
    def from_json(cls, text: str) -> "RenderRequest":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RequestError(f"not valid JSON: {exc}") from None
        return cls.from_dict(data)


SETTABLE_FIELDS = {f.name: f for f in fields(RenderRequest)
                   if f.name in ("steps", "guidance", "eta", "width", "height", "dtype", "label", "seed",
                                 "negative_prompt", "sampler", "strength")}

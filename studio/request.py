"""`RenderRequest`: the one record of everything that decides an output.

Equal requests give equal outputs (bit-identical on CPU). It is what the engine renders, what a panel edits and what
an exported file carries in its metadata.

The request has a few core fields every model shares (model id and weights hash, seed, explicit latent values, output
size, dtype) and `params`: the family's own settings by name (a prompt, a class, sampler steps, a direction offset
`d3`, a mix seed …), each an int, a float or a text. Which names a model takes, their kinds, ranges and defaults are
declared by its family (`Family.parameters`, `studio.params`); a request is checked against them before it renders.
Seeds, the core one and seed params alike, are Python ints in 0 … 2⁶⁴−1 end to end (JSON keeps them exact).

This module depends on nothing but `studio.errors` and `studio.limits`: the file formats, the project and the panels read requests
without importing torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Union

from studio.errors import RequestError
from studio.limits import MAX_LATENT_SIZE, MAX_METADATA_TEXT, MAX_PIXELS, MAX_SIDE, check_json_depth, quote

REQUEST_VERSION = 2
MAX_SEED = 2**64 - 1
DTYPES = ("float32", "float16", "bfloat16")
CORE_FIELDS = ("model_id", "model_hash", "seed", "latent", "width", "height", "dtype")
SEED_MODES = ("fixed", "increment", "random")  # what the seed does after an export and on "Next"
MAX_PARAM_NAME = 64
_PARAM_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")

ParamValue = Union[int, float, str]


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: a whole number in 0 … 2⁶⁴−1 (bool refused), else RequestError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise RequestError(f"{name} must be a whole number in 0..{MAX_SEED}, got {value!r}", field=name)
    return value


class Params(Mapping[str, ParamValue]):
    """The family settings of a request: an immutable, hashable mapping name → int | float | str, kept sorted by
    name so that equal settings give equal requests and equal JSON."""

    __slots__ = ("_items", "_table")

    def __init__(self, values: Mapping[str, Any] | Iterator | tuple = ()):
        table: dict[str, ParamValue] = {}
        items = values.items() if isinstance(values, Mapping) else values
        for pair in items:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:  # a text would unpack as its characters
                raise RequestError("params must be name → value pairs", field="params")
            name, value = pair
            table[_check_name(name)] = _check_value(name, value)
        self._table = dict(sorted(table.items()))
        self._items = tuple(self._table.items())

    def __getitem__(self, name: str) -> ParamValue:
        return self._table[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Params):
            return self._items == other._items and all(type(a[1]) is type(b[1])
                                                       for a, b in zip(self._items, other._items))
        if isinstance(other, Mapping):
            return self == Params(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Params({self._table!r})"

    def to_dict(self) -> dict[str, ParamValue]:
        return dict(self._table)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _PARAM_NAME.match(name):
        shown = repr(name)[:80]
        raise RequestError(f"a parameter name must be lower-case letters, digits and _ (at most {MAX_PARAM_NAME}), "
                           f"got {shown}", field="params")
    return name


def _check_value(name: str, value: Any) -> ParamValue:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(f"must be a whole number, a number or a text, got {type(value).__name__}",
                           field=f"params.{name}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"must be a finite number, got {value!r}", field=f"params.{name}")
    return value


@dataclass(frozen=True)
class RenderRequest:
    model_id: str
    model_hash: str = ""  # sha256 of the weights; "" renders whatever is installed under model_id
    seed: int = 0
    latent: tuple[float, ...] | None = None  # explicit latent values (flattened); when set, the seed draws no latent
    width: int | None = None  # output size; None = the model's native size
    height: int | None = None
    dtype: str = "float32"
    params: Params = field(default_factory=Params)  # the family's settings by name (see studio.params)

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id:
            raise RequestError("model_id must be a non-empty string", field="model_id")
        if not isinstance(self.model_hash, str):
            raise RequestError(f"model_hash must be text, got {self.model_hash!r}", field="model_hash")
        check_seed(self.seed)
        if self.latent is not None:
            try:
                if isinstance(self.latent, (str, bytes)):
                    raise TypeError
                if hasattr(self.latent, "__len__") and len(self.latent) > MAX_LATENT_SIZE:
                    raise RequestError(f"{len(self.latent):,} values is over the limit of {MAX_LATENT_SIZE:,}",
                                       field="latent")
                values = tuple(float(v) for v in self.latent)
            except (TypeError, ValueError, OverflowError):
                raise RequestError("latent must be a list of numbers", field="latent") from None
            if not values or not all(math.isfinite(v) for v in values):
                raise RequestError("latent must be a non-empty list of finite numbers", field="latent")
            object.__setattr__(self, "latent", values)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise RequestError(f"{name} must be a positive whole number, got {quote(value)}", field=name)
            if value is not None and value > MAX_SIDE:
                raise RequestError(f"{name} {quote(value)} is over the limit of {MAX_SIDE:,} pixels", field=name)
        if self.width is not None and self.height is not None and self.width * self.height > MAX_PIXELS:
            raise RequestError(f"{self.width}×{self.height} = {self.width * self.height:,} pixels is over the limit "
                               f"of {MAX_PIXELS:,}", field="height")
        if self.dtype not in DTYPES:
            raise RequestError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}", field="dtype")
        if not isinstance(self.params, Params):
            if not isinstance(self.params, (Mapping, tuple, list)):
                raise RequestError("params must be an object of name → value", field="params")
            object.__setattr__(self, "params", Params(self.params))

    # --- params --------------------------------------------------------------------------------------------------
    def param(self, name: str, default: Any = None) -> Any:
        """The value of param `name`, or `default` when the request leaves it unset."""
        return self.params.get(name, default)

    def with_param(self, name: str, value: ParamValue | None) -> "RenderRequest":
        """A copy with param `name` set to `value` (None removes it: the family's default applies)."""
        return self.with_params({name: value})

    def with_params(self, changes: Mapping[str, ParamValue | None]) -> "RenderRequest":
        """A copy with several params set (a None value removes that param)."""
        table = self.params.to_dict()
        for name, value in changes.items():
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value
        return replace(self, params=Params(table))

    def with_(self, **changes: Any) -> "RenderRequest":
        """A copy with core fields (or `params`, a whole mapping) replaced."""
        return replace(self, **changes)

    # --- JSON ----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"version": REQUEST_VERSION, "model_id": self.model_id, "model_hash": self.model_hash,
                "seed": self.seed, "latent": list(self.latent) if self.latent is not None else None,
                "width": self.width, "height": self.height, "dtype": self.dtype, "params": self.params.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "RenderRequest":
        """A request from its JSON object: this version's, or one written by an earlier version (converted)."""
        if not isinstance(data, dict):
            raise RequestError("a render request must be a JSON object")
        data = dict(data)
        # without a version: this version's object when it has params, else an earlier one's (flat fields, edits)
        version = data.pop("version", REQUEST_VERSION if "params" in data else 1)
        if type(version) is not int or version not in (1, REQUEST_VERSION):  # true, 1.0 and "2" are not versions
            raise RequestError(f"request version {version!r} is not supported (this app reads 1 and "
                               f"{REQUEST_VERSION}; a newer app wrote it)", field="version")
        if version == 1:
            data = upgrade_v1(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RequestError(f"unknown field(s): {', '.join(str(u)[:40] for u in unknown[:10])}")
        if isinstance(data.get("latent"), list):
            data["latent"] = tuple(data["latent"])
        if "params" in data and not isinstance(data["params"], dict):
            raise RequestError("params must be an object of name → value", field="params")
        try:
            return cls(**data)
        except TypeError as exc:
            raise RequestError(str(exc)) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> "RenderRequest":
        """A request from its JSON text (as stored in a picture or a sound): at most MAX_METADATA_TEXT characters,
        nested at most MAX_JSON_DEPTH deep (checked before json.loads, which recurses)."""
        if len(text) > MAX_METADATA_TEXT:
            raise RequestError(f"the request is {len(text):,} characters long, over the limit of "
                               f"{MAX_METADATA_TEXT:,}")
        check_json_depth(text, error=RequestError)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RequestError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except (ValueError, RecursionError) as exc:  # a number too long to convert, a depth the scan missed
            raise RequestError(f"not usable JSON: {quote(str(exc))}") from None
        return cls.from_dict(data)


# --- earlier versions ------------------------------------------------------------------------------------------------

# Version 1 (up to 3b8dbe6) had flat fields for what are params now, and `edits`: [name, value] pairs of floats, seeds
# included. These were its names; each becomes the param of the same name.
V1_PARAM_FIELDS = ("prompt", "negative_prompt", "label", "steps", "guidance", "eta", "sampler", "init_image",
                   "strength")
V1_WHOLE_EDITS = ("mix_seed", "variation_seed", "mix_layer", "layer_start", "layer_end")  # whole numbers as floats


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 request object (without its "version") as this version's fields: flat settings and edits become
    params (seeds and layer numbers as ints); empty texts and unset settings are left out, as the families' defaults
    are what they meant."""
    data = dict(data)
    if "params" in data:  # never silently replaced: version 1 had no params
        raise RequestError("a version-1 request has no params (its settings are flat fields and edits)",
                           field="params")
    params: dict[str, Any] = {}
    for name in V1_PARAM_FIELDS:
        value = data.pop(name, None)
        if value is None or value == "" and name in ("prompt", "negative_prompt"):
            continue
        params[name] = value
    edits = data.pop("edits", [])
    if not isinstance(edits, (list, tuple)):
        raise RequestError("edits must be a list of [name, value] pairs", field="edits")
    for pair in edits:
        try:
            if not isinstance(pair, (list, tuple)):  # a text would unpack as its characters
                raise TypeError
            name, value = pair
            name = str(name)
            value = float(value)
        except (TypeError, ValueError, OverflowError):
            raise RequestError("edits must be a list of [name, value] pairs", field="edits") from None
        if not math.isfinite(value):
            raise RequestError(f"edit {name!r} must be finite", field="edits")
        if name in V1_WHOLE_EDITS:
            if value != int(value) or value < 0:
                raise RequestError(f"{name} must be a whole number, got {value:g}", field="edits")
            params[name] = int(value)
        else:
            params[name] = value
    data["params"] = params
    return data

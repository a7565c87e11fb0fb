"""Named directions (issue 20, part 6): a *direction set* gives names to a model's principal directions, as GANSpace
users label theirs ("bold", "slant", "serif"), and can be saved with the model and shared as a small file.

A `DirectionSet` belongs to one model (its package id, and the sha256 of the weights it was made with) and holds
entries. Each entry has a name and either or both of:

- `index` k: the principal direction d<k> of the model (what the slider d<k> moves along);
- `vector`: the unit vector (the model's direction k when it was named, or a custom direction of its own).

The vector is what a name *means*. Principal directions are computed deterministically (PCA with a fixed sign), but
another copy of a model — other weights under the same id, GANSpace recomputed with other settings — may order or
tilt them differently. A reader therefore checks each entry's vector against the model's current directions by
cosine (`match`): an entry whose own d<k> still points the same way (cosine ≥ MATCH_COSINE) keeps its slider; one
whose vector now lies along another direction moves to it (said); one that matches none is kept in the set but not
shown, with a warning that says how far off it is. An entry without a vector names d<k> by index alone (not checked).
A custom entry (a vector and no index) is shown on the principal direction it matches, if any: the sliders only
move along principal directions, and names are labels only — a direction set never changes what a render draws.

`layers` (a style GAN's layer range the direction was meant for) and `amount` (a suggested offset, in standard
deviations) are kept with the entry, shown in its tooltip and written back; nothing applies them on its own (the
window's "Apply Suggestion" sets them when asked).

The file (``.lsdirs``) is UTF-8 JSON, small and human-readable, never pickled::

    {"format": "latent-studio-directions", "version": 1, "name": "Glyph styles",
     "model": {"id": "glyph-gan", "sha256": "9f…", "dimension": 128},
     "directions": [{"index": 0, "name": "Bold", "vector": "<base64 float32 little-endian>"},
                    {"name": "Slant", "vector": [0.01, -0.2, …], "layers": [0, 4], "amount": 1.5}]}

A vector is either a list of numbers or base64 of little-endian float32 (what this app writes: about 5.4 characters
a value). Reading is strict, for a file that may come from anyone: the size is checked before a byte is read
(MAX_SET_BYTES), the JSON's depth before it is parsed, and every field by type; NaN or infinite numbers (JSON's
``NaN``/``Infinity`` too), vectors of the wrong length or of zero length, repeated indices or names, unknown keys
and a newer version are refused with a DirectionsError naming the file and the field. No torch and no Qt here.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from studio.errors import DirectionsError
from studio.files import read_bytes
from studio.limits import MAX_JSON_DEPTH, json_depth, quote

FORMAT = "latent-studio-directions"
VERSION = 1
SUFFIX = ".lsdirs"
MAX_SET_BYTES = 8 << 20  # a direction set file: 80 GANSpace directions of a 512-wide w in base64 are ~230 KB
MAX_ENTRIES = 1024  # named directions in one set
MAX_DIMENSION = 1 << 20  # values in one direction vector (a latent of up to a million values)
MAX_NAME_CHARS = 80  # characters of one direction's (or one set's) name
MATCH_COSINE = 0.95  # a stored vector "is" a model's direction when their cosine is at least this
_TOP_KEYS = {"format", "version", "name", "model", "directions"}
_MODEL_KEYS = {"id", "sha256", "dimension"}
_ENTRY_KEYS = {"index", "name", "vector", "layers", "amount"}


def clean_name(name: Any, field_name: str = "name", path: str | Path | None = None) -> str:
    """`name` as a direction (or set) name: text of 1 … MAX_NAME_CHARS characters, spaces folded, no control
    characters; DirectionsError naming `field_name` otherwise."""
    if not isinstance(name, str):
        raise DirectionsError(f"must be text, got {quote(name)}", path, field_name)
    text = " ".join(name.split())
    if not text:
        raise DirectionsError("is empty", path, field_name)
    if len(text) > MAX_NAME_CHARS:
        raise DirectionsError(f"is {len(text)} characters long; at most {MAX_NAME_CHARS} are taken", path, field_name)
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise DirectionsError(f"holds a control character: {quote(text)}", path, field_name)
    return text


def unit(vector: Any, field_name: str = "vector", path: str | Path | None = None) -> np.ndarray:
    """`vector` as a finite float32 unit vector, or DirectionsError naming the field."""
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise DirectionsError("is empty", path, field_name)
    if not np.isfinite(v).all():
        bad = int(np.flatnonzero(~np.isfinite(v))[0])
        raise DirectionsError(f"holds a NaN or infinite value (at position {bad})", path, field_name)
    norm = float(np.linalg.norm(v))
    if norm < 1e-6:
        raise DirectionsError("has (almost) zero length: it points nowhere", path, field_name)
    return (v / norm).astype(np.float32)


@dataclass(frozen=True)
class DirectionEntry:
    """One named direction: principal direction `index` and/or its unit `vector`; optional `layers` (start, end) and
    suggested `amount`."""

    name: str
    index: int | None = None
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    layers: tuple[int, int] | None = None
    amount: float | None = None

    @property
    def custom(self) -> bool:
        """A direction of its own (a vector, no index)."""
        return self.index is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.index is not None:
            out["index"] = self.index
        out["name"] = self.name
        if self.vector is not None:
            out["vector"] = base64.b64encode(np.asarray(self.vector, "<f4").tobytes()).decode("ascii")
        if self.layers is not None:
            out["layers"] = list(self.layers)
        if self.amount is not None:
            out["amount"] = self.amount
        return out

    def same_as(self, other: "DirectionEntry") -> bool:
        if self != other:
            return False
        if self.vector is None or other.vector is None:
            return self.vector is None and other.vector is None
        return bool(np.array_equal(self.vector, other.vector))


@dataclass(frozen=True)
class DirectionSet:
    """Named directions of one model: `model_id`, the `sha256` of the weights they were named on ("" when not
    known), the vectors' `dimension` (0 when no entry has a vector), a set `name`, and its entries."""

    model_id: str
    name: str
    entries: tuple[DirectionEntry, ...] = ()
    sha256: str = ""
    dimension: int = 0

    # --- names ---------------------------------------------------------------------------------------------------
    def by_index(self) -> dict[int, DirectionEntry]:
        return {e.index: e for e in self.entries if e.index is not None}

    def find(self, name: str) -> DirectionEntry | None:
        """The entry called `name` (case-insensitive), or None."""
        key = name.casefold()
        return next((e for e in self.entries if e.name.casefold() == key), None)

    def renamed(self, index: int, name: str | None, vector: np.ndarray | None = None) -> "DirectionSet":
        """This set with principal direction `index` called `name` (None or "": its name removed), recording
        `vector` (the model's direction `index` now) when given. DirectionsError when another direction already has
        that name."""
        others = [e for e in self.entries if e.index != index]
        if not name:
            return replace(self, entries=tuple(others))
        name = clean_name(name)
        if any(e.name.casefold() == name.casefold() for e in others):
            raise DirectionsError(f"another direction of this set is already called {quote(name)}", field="name")
        old = self.by_index().get(index)
        if vector is not None:
            vector = unit(vector)
        elif old is not None:
            vector = old.vector
        entry = DirectionEntry(name, index, vector, old.layers if old else None, old.amount if old else None)
        entries = sorted([*others, entry], key=lambda e: (e.index is None, e.index or 0, e.name.casefold()))
        dimension = self.dimension or (int(vector.size) if vector is not None else 0)
        return replace(self, entries=tuple(entries), dimension=dimension)

    def suggested(self, index: int, amount: float | None = None,
                  layers: tuple[int, int] | None = None) -> "DirectionSet":
        """This set with the named direction `index`'s suggested `amount` and layer range `layers` (None: none)."""
        old = self.by_index().get(index)
        if old is None:
            raise DirectionsError(f"direction d{index} has no name in this set", field="name")
        if amount is not None and (not math.isfinite(amount) or abs(amount) > 1000):
            raise DirectionsError(f"must be a finite number of standard deviations, got {amount!r}", field="amount")
        if layers is not None and not 0 <= layers[0] < layers[1]:
            raise DirectionsError(f"layer range {layers} must start before it ends", field="layers")
        entry = replace(old, amount=None if amount is None else float(amount), layers=layers)
        return replace(self, entries=tuple(entry if e is old else e for e in self.entries))

    # --- the file ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        model: dict[str, Any] = {"id": self.model_id}
        if self.sha256:
            model["sha256"] = self.sha256
        if self.dimension:
            model["dimension"] = self.dimension
        return {"format": FORMAT, "version": VERSION, "name": self.name, "model": model,
                "directions": [e.to_dict() for e in self.entries]}

    def dumps(self) -> str:
        """The set as the text of a .lsdirs file."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"

    def same_as(self, other: "DirectionSet | None") -> bool:
        """Equal sets, vectors included."""
        return (other is not None and (self.model_id, self.name, self.sha256, self.dimension)
                == (other.model_id, other.name, other.sha256, other.dimension)
                and len(self.entries) == len(other.entries)
                and all(a.same_as(b) for a, b in zip(self.entries, other.entries)))


# --- reading -----------------------------------------------------------------------------------------------------


def _refuse_constant(token: str) -> float:
    raise ValueError(f"{token} is not a number a direction set may hold")


def loads(text: str | bytes, path: str | Path | None = None) -> DirectionSet:
    """A direction set from the text of a .lsdirs file, checked field by field (DirectionsError naming `path` and
    the field)."""
    if len(text) > MAX_SET_BYTES:
        raise DirectionsError(f"is {len(text):,} bytes, over the limit of {MAX_SET_BYTES:,} for a direction set", path)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DirectionsError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise DirectionsError(f"JSON nested {depth} levels deep is over the limit of {MAX_JSON_DEPTH}", path)
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise DirectionsError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path) from None
    except (ValueError, RecursionError) as exc:
        raise DirectionsError(f"not usable JSON: {str(exc)[:200]}", path) from None
    return from_dict(data, path)


def read_set(path: str | Path) -> DirectionSet:
    """The direction set in the file `path`: a regular file of at most MAX_SET_BYTES (refused before it is read),
    checked as `loads` does."""
    data = read_bytes(path, DirectionsError, max_bytes=MAX_SET_BYTES, what="direction set")
    return loads(data, path)


def _keys(data: Any, allowed: set[str], where: str | None, path: str | Path | None) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise DirectionsError(f"must be a JSON object, got {type(data).__name__}", path, where)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DirectionsError(f"unknown key {quote(unknown[0])} (it takes: {', '.join(sorted(allowed))})", path,
                              f"{where}.{unknown[0]}" if where else unknown[0])
    return data


def _int(value: Any, where: str, path: str | Path | None, lo: int = 0, hi: int = MAX_DIMENSION) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DirectionsError(f"must be a whole number, got {quote(value)}", path, where)
    if not lo <= value <= hi:
        raise DirectionsError(f"must be between {lo} and {hi}, got {value}", path, where)
    return value


def _vector(value: Any, where: str, path: str | Path | None) -> np.ndarray:
    if isinstance(value, str):
        if len(value) > 4 * (MAX_DIMENSION * 4 + 2) // 3 + 4:
            raise DirectionsError(f"is {len(value):,} characters, longer than a vector may be", path, where)
        try:
            raw = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise DirectionsError("is neither a list of numbers nor base64 float32", path, where) from None
        if len(raw) % 4:
            raise DirectionsError(f"decodes to {len(raw)} bytes, not a whole number of float32 values", path, where)
        return unit(np.frombuffer(raw, "<f4"), where, path)
    if isinstance(value, list):
        if len(value) > MAX_DIMENSION:
            raise DirectionsError(f"has {len(value):,} values, over the limit of {MAX_DIMENSION:,}", path, where)
        for k, x in enumerate(value):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise DirectionsError(f"must hold numbers, got {quote(x)} at position {k}", path, where)
            if not math.isfinite(x):
                raise DirectionsError(f"holds a NaN or infinite value (at position {k})", path, where)
        return unit(value, where, path)
    raise DirectionsError(f"must be a list of numbers or base64 float32, got {type(value).__name__}", path, where)


def from_dict(data: Any, path: str | Path | None = None) -> DirectionSet:
    """A direction set from parsed JSON, every field checked (DirectionsError naming `path` and the field)."""
    data = _keys(data, _TOP_KEYS, None, path)
    if data.get("format") != FORMAT:
        raise DirectionsError(f"is not a direction set: format must be {FORMAT!r}, got {quote(data.get('format'))}",
                              path, "format")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DirectionsError(f"must be a whole number from 1, got {quote(version)}", path, "version")
    if version > VERSION:
        raise DirectionsError(f"was written by a newer Latent Studio (version {version}); this app reads version "
                              f"{VERSION}", path, "version")
    name = clean_name(data.get("name", ""), "name", path)
    model = _keys(data.get("model"), _MODEL_KEYS, "model", path)
    model_id = model.get("id")
    if not isinstance(model_id, str) or not model_id or len(model_id) > 128:
        raise DirectionsError(f"must name the model (its package id), got {quote(model_id)}", path, "model.id")
    sha = model.get("sha256", "")
    if not isinstance(sha, str) or (sha and not re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise DirectionsError(f"must be 64 hex digits (the weights' sha256), got {quote(sha)}", path, "model.sha256")
    dimension = _int(model.get("dimension", 0), "model.dimension", path)
    entries_data = data.get("directions")
    if not isinstance(entries_data, list):
        raise DirectionsError(f"must be a list, got {type(entries_data).__name__}", path, "directions")
    if len(entries_data) > MAX_ENTRIES:
        raise DirectionsError(f"has {len(entries_data)} entries, over the limit of {MAX_ENTRIES}", path, "directions")
    entries: list[DirectionEntry] = []
    indices: set[int] = set()
    names: set[str] = set()
    for k, item in enumerate(entries_data):
        where = f"directions[{k}]"
        item = _keys(item, _ENTRY_KEYS, where, path)
        entry_name = clean_name(item.get("name", ""), f"{where}.name", path)
        if entry_name.casefold() in names:
            raise DirectionsError(f"{quote(entry_name)} names two directions", path, f"{where}.name")
        names.add(entry_name.casefold())
        index = None
        if "index" in item:
            index = _int(item["index"], f"{where}.index", path, 0, MAX_ENTRIES * 64)
            if index in indices:
                raise DirectionsError(f"direction d{index} is named twice", path, f"{where}.index")
            indices.add(index)
        vector = _vector(item["vector"], f"{where}.vector", path) if "vector" in item else None
        if index is None and vector is None:
            raise DirectionsError("needs an index (d<k>) or a vector", path, where)
        if vector is not None:
            if not dimension:
                dimension = int(vector.size)
            if vector.size != dimension:
                raise DirectionsError(f"has {vector.size} values but the set's directions have {dimension}", path,
                                      f"{where}.vector")
        layers = None
        if "layers" in item:
            pair = item["layers"]
            if not isinstance(pair, list) or len(pair) != 2:
                raise DirectionsError(f"must be [start, end], got {quote(pair)}", path, f"{where}.layers")
            start, end = (_int(x, f"{where}.layers", path, 0, 4096) for x in pair)
            if start >= end:
                raise DirectionsError(f"start {start} must be before end {end}", path, f"{where}.layers")
            layers = (start, end)
        amount = None
        if "amount" in item:
            amount = item["amount"]
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) \
                    or abs(amount) > 1000:
                raise DirectionsError(f"must be a finite number of standard deviations, got {quote(amount)}", path,
                                      f"{where}.amount")
            amount = float(amount)
        entries.append(DirectionEntry(entry_name, index, vector, layers, amount))
    return DirectionSet(model_id, name, tuple(entries), sha, dimension)


# --- checking against a model's directions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """What a set's names mean on a model: `names` {principal index: entry} to show, and `notes` (info: a name
    moved) and `warnings` (a name that no longer fits, one line each)."""

    names: dict[int, DirectionEntry]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def match(directions: DirectionSet, vectors: np.ndarray | None, count: int) -> Match:
    """Place the set's names on a model with `count` principal directions whose unit vectors are `vectors` (count,
    dimension), or None when they cannot be read (names then go by index, unchecked). See the module's docstring."""
    names: dict[int, DirectionEntry] = {}
    notes: list[str] = []
    warnings: list[str] = []
    if vectors is not None:
        vectors = np.asarray(vectors, np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        count = min(count, vectors.shape[0]) if count else vectors.shape[0]
        if directions.dimension and directions.dimension != vectors.shape[1]:
            warnings.append(f"the set's directions have {directions.dimension} values but this model's have "
                            f"{vectors.shape[1]}: checked by index only")
            vectors = None
    pending: list[DirectionEntry] = []
    for entry in directions.entries:
        if entry.index is not None and entry.index >= count:
            warnings.append(f"{entry.name!r} names d{entry.index}, but this model has {count} directions "
                            f"(d0…d{count - 1})" if count else f"{entry.name!r} names d{entry.index}, but this "
                                                                  "model has no principal directions")
            continue
        if entry.vector is None or vectors is None:
            if entry.index is not None:
                names[entry.index] = entry
            else:
                warnings.append(f"{entry.name!r} is a custom direction that cannot be checked here: not shown")
            continue
        pending.append(entry)
    if vectors is not None:
        cosines = {id(e): vectors[:count] @ np.asarray(e.vector, np.float64) for e in pending}
        for entry in pending:  # an entry whose own direction still matches keeps it
            if entry.index is not None and cosines[id(entry)][entry.index] >= MATCH_COSINE:
                names[entry.index] = entry
        for entry in pending:
            if entry.index is not None and names.get(entry.index) is entry:
                continue
            cos = cosines[id(entry)]
            order = [int(k) for k in np.argsort(-cos) if int(k) not in names]
            best = order[0] if order else None
            label = f"{entry.name!r} ({'d' + str(entry.index) if entry.index is not None else 'custom'})"
            if best is not None and cos[best] >= MATCH_COSINE:
                names[best] = replace(entry, index=best)
                if entry.index is not None:
                    notes.append(f"{label} now lies along d{best} (cosine {cos[best]:.3f}): named there")
                continue
            own = f"cosine {cos[entry.index]:.2f} with d{entry.index}; " if entry.index is not None else ""
            near = f"best {cos[best]:.2f} with d{best}" if best is not None else "no direction left"
            flipped = (" — it points the other way" if entry.index is not None
                       and cos[entry.index] <= -MATCH_COSINE else "")
            warnings.append(f"{label} no longer matches this model's directions ({own}{near}){flipped}: not shown")
    return Match(names, tuple(notes), tuple(warnings))


def entry_for(entries: Sequence[DirectionEntry], index: int) -> DirectionEntry | None:
    return next((e for e in entries if e.index == index), None)

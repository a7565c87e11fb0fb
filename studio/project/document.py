"""The project document (`.lstudio`): the current request, a latent library, render history, the models used and the
timeline of an animation.

A project is plain UTF-8 JSON (never pickle, never eval). Reading it checks every field and reports problems as
`ProjectError(problem, path, field)` with a dotted field such as `latents[2].latent` or `history[0].request.seed`.
Unknown top-level keys are ignored so that newer files of the same format version still open.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import numbers
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

import studio
from studio.errors import ExportError, ProjectError, RequestError
from studio.files import read_bytes
from studio.io.atomic import atomic_path
from studio.limits import MAX_JSON_DEPTH, MAX_PROJECT_BYTES, json_depth
from studio.project.timeline import Timeline
from studio.request import RenderRequest

SUFFIX = ".lstudio"
FORMAT = "latent-studio-project"
# 2: requests carry `params` (version-1 requests inside are converted on reading). Optional fields a reader of the
# same version can ignore (the timeline's in/out points) do not bump it: an older app opens the file, exports all.
FORMAT_VERSION = 2
HISTORY_LIMIT = 50

_T = TypeVar("_T")


def utc_now() -> str:
    """The current time as ISO-8601 UTC, to the second (what `HistoryEntry.created` holds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- field checks: each raises ProjectError(problem, field=name) -----------------------------------------------------
def _check_text(value: Any, name: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ProjectError(f"must be text, got {_kind(value)}", field=name)
    if non_empty and not value.strip():
        raise ProjectError("must be a non-empty text", field=name)
    return value


def _check_latent(value: Any, name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ProjectError(f"must be a list of numbers, got {_kind(value)}", field=name)
    values: list[float] = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise ProjectError(f"item {i} must be a number, got {_kind(item)}", field=name)
        try:
            number = float(item)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ProjectError(f"item {i} must be a finite number, got {item!r}", field=name)
        values.append(number)
    if not values:
        raise ProjectError("must be a non-empty list of numbers", field=name)
    return tuple(values)


def _check_png(value: Any, name: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise ProjectError(f"must be bytes, got {_kind(value)}", field=name)
    return bytes(value)


def _check_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProjectError(f"must be a number of seconds, got {_kind(value)}", field=name)
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise ProjectError(f"must be a finite number >= 0, got {value!r}", field=name)
    return seconds


def _check_created(value: Any, name: str) -> str:
    text = _check_text(value, name)
    if text:
        try:
            datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise ProjectError(f"must be an ISO-8601 time such as 2026-11-28T19:02:00+00:00, got {text!r}",
                               field=name) from None
    return text


def _check_sha256(value: Any, name: str) -> str:
    text = _check_text(value, name)
    if text and (len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text)):
        raise ProjectError(f"must be a sha256 of 64 hex digits (or empty), got {text!r}", field=name)
    return text


def _kind(value: Any) -> str:
    """A short JSON-ish name for the type of `value`, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a text ({value[:40]!r})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- records -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SavedLatent:
    """An entry of the document's latent library."""

    name: str
    model_id: str
    model_hash: str
    latent: tuple[float, ...]
    thumbnail_png: bytes = b""  # PNG bytes; base64 in JSON

    def __post_init__(self) -> None:
        _check_text(self.name, "name", non_empty=True)
        _check_text(self.model_id, "model_id", non_empty=True)
        _check_text(self.model_hash, "model_hash")
        object.__setattr__(self, "latent", _check_latent(self.latent, "latent"))
        object.__setattr__(self, "thumbnail_png", _check_png(self.thumbnail_png, "thumbnail_png"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model_id": self.model_id, "model_hash": self.model_hash,
                "latent": list(self.latent), "thumbnail_png": _b64(self.thumbnail_png)}


@dataclass(frozen=True)
class HistoryEntry:
    """A finished render."""

    request: RenderRequest
    seconds: float = 0.0
    created: str = ""  # ISO-8601 UTC
    thumbnail_png: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.request, RenderRequest):
            raise ProjectError(f"must be a RenderRequest, got {_kind(self.request)}", field="request")
        object.__setattr__(self, "seconds", _check_seconds(self.seconds, "seconds"))
        _check_created(self.created, "created")
        object.__setattr__(self, "thumbnail_png", _check_png(self.thumbnail_png, "thumbnail_png"))

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request.to_dict(), "seconds": self.seconds, "created": self.created,
                "thumbnail_png": _b64(self.thumbnail_png)}


@dataclass(frozen=True)
class ModelRef:
    """A model the document uses: its id, weights hash, and the folder it was opened from (if the user opened one)."""

    id: str
    sha256: str = ""
    name: str = ""
    folder: str = ""

    def __post_init__(self) -> None:
        _check_text(self.id, "id", non_empty=True)
        object.__setattr__(self, "sha256", _check_sha256(self.sha256, "sha256"))
        _check_text(self.name, "name")
        _check_text(self.folder, "folder")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "sha256": self.sha256, "name": self.name, "folder": self.folder}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the document --------------------------------------------------------------------------------------------------
@dataclass
class Document:
    """Everything a project file holds. History is oldest first."""

    request: RenderRequest | None = None
    latents: list[SavedLatent] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    models: list[ModelRef] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)

    def add_history(self, entry: HistoryEntry) -> None:
        """Append a finished render and keep only the HISTORY_LIMIT newest."""
        if not isinstance(entry, HistoryEntry):
            raise TypeError(f"add_history takes a HistoryEntry, got {type(entry).__name__}")
        self.history.append(entry)
        del self.history[:-HISTORY_LIMIT]

    def copy(self) -> "Document":
        """A copy whose lists can be changed without touching this one (the entries are immutable)."""
        return Document(self.request, list(self.latents), list(self.history), list(self.models), self.timeline)

    def model_claims(self) -> list[tuple[str, str, str, str]]:
        """Every model the document names, as (model id, weights hash, folder, field): the models list (whose folder
        says where the model was opened from), then the ids of the current request and the keyframes. A reader
        resolves each among the installed packages: a file never chooses a folder to load (studio.library)."""
        claims = [(ref.id, ref.sha256, ref.folder, f"models[{i}].folder" if ref.folder else f"models[{i}].id")
                  for i, ref in enumerate(self.models)]
        if self.request is not None:
            claims.append((self.request.model_id, self.request.model_hash, "", "request.model_id"))
        for i, key in enumerate(self.timeline.keyframes):
            claims.append((key.request.model_id, key.request.model_hash, "",
                           f"timeline.keyframes[{i}].request.model_id"))
        return claims

    def with_model_ids(self, renamed: dict[str, str]) -> "Document":
        """A copy whose model ids `renamed` maps to others (a path a file named → the installed package's id), in
        the request, the history, the latent library, the models list and the keyframes."""
        if not renamed:
            return self.copy()

        def request(r: RenderRequest) -> RenderRequest:
            return r.with_(model_id=renamed[r.model_id]) if r.model_id in renamed else r

        latents = [replace(e, model_id=renamed[e.model_id]) if e.model_id in renamed else e for e in self.latents]
        history = [replace(h, request=request(h.request)) for h in self.history]
        models = [replace(m, id=renamed[m.id]) if m.id in renamed else m for m in self.models]
        keyframes = tuple(replace(k, request=request(k.request)) for k in self.timeline.keyframes)
        timeline = replace(self.timeline, keyframes=keyframes) if self.timeline.keyframes else self.timeline
        return Document(request(self.request) if self.request is not None else None, latents, history, models,
                        timeline)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "app_version": studio.__version__,
            "request": self.request.to_dict() if self.request is not None else None,
            "latents": [item.to_dict() for item in self.latents],
            "history": [item.to_dict() for item in self.history],
            "models": [item.to_dict() for item in self.models],
            "timeline": self.timeline.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any, path: str | Path | None = None) -> "Document":
        """Check and read a parsed project; ProjectError(problem, path, field) on the first wrong field."""
        try:
            return _read_document(data)
        except ProjectError as exc:
            raise ProjectError(exc.problem, path, exc.field) from None


def _read_document(data: Any) -> Document:
    if not isinstance(data, dict):
        raise ProjectError(f"not a Latent Studio project (the file holds {_kind(data)}, not an object)")
    if data.get("format") != FORMAT:
        found = "missing" if "format" not in data else repr(data["format"])
        raise ProjectError(f"not a Latent Studio project (format is {found}, expected {FORMAT!r})", field="format")
    _check_version(data.get("version", None), "version" in data)
    request = data.get("request")
    return Document(
        request=None if request is None else _read_request(request, "request"),
        latents=_read_list(data, "latents", _read_latent),
        history=_read_list(data, "history", _read_history),
        models=_read_list(data, "models", _read_model),
        timeline=_read_timeline(data.get("timeline")),
    )


def _check_version(version: Any, present: bool) -> None:
    if not present:
        raise ProjectError("the format version is missing", field="version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProjectError(f"the format version must be a whole number, got {_kind(version)}", field="version")
    if version > FORMAT_VERSION:
        raise ProjectError(f"made by a newer Latent Studio (format {version}); this app reads up to "
                           f"{FORMAT_VERSION}", field="version")
    if version < 1:
        raise ProjectError(f"format version {version} is not supported (this app reads 1..{FORMAT_VERSION})",
                           field="version")


def _read_timeline(value: Any) -> Timeline:
    """The document's timeline (projects written before timelines existed have none: an empty one)."""
    if value is None:
        return Timeline()
    try:
        return Timeline.from_dict(value)
    except ProjectError as exc:
        raise ProjectError(exc.problem, field="timeline" + (f".{exc.field}" if exc.field else "")) from None


def _read_list(data: dict[str, Any], key: str, read: Callable[[Any, str], _T]) -> list[_T]:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ProjectError(f"must be a list, got {_kind(items)}", field=key)
    return [read(item, f"{key}[{i}]") for i, item in enumerate(items)]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProjectError(f"must be an object, got {_kind(value)}", field=where)
    return value


def _required(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise ProjectError("is missing", field=f"{where}.{key}")
    return entry[key]


def _build(where: str, make: Callable[..., _T], **kwargs: Any) -> _T:
    """Construct a record, prefixing the field of its ProjectError with `where`."""
    try:
        return make(**kwargs)
    except ProjectError as exc:
        raise ProjectError(exc.problem, field=f"{where}.{exc.field}" if exc.field else where) from None


def _read_png(entry: dict[str, Any], where: str) -> bytes:
    text = entry.get("thumbnail_png", "")
    name = f"{where}.thumbnail_png"
    if not isinstance(text, str):
        raise ProjectError(f"must be base64 text, got {_kind(text)}", field=name)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ProjectError("is not valid base64", field=name) from None


def _read_request(value: Any, where: str) -> RenderRequest:
    data = _object(value, where)
    if isinstance(data.get("latent"), list) and data["latent"]:
        _check_latent(data["latent"], f"{where}.latent")  # also catches integers too large for float()
    try:
        return RenderRequest.from_dict(data)
    except RequestError as exc:
        raise ProjectError(exc.problem, field=f"{where}.{exc.field}" if exc.field else where) from None
    except (TypeError, ValueError, OverflowError) as exc:  # from_dict is strict, but never let a bad file crash
        raise ProjectError(f"is not a valid render request: {exc}", field=where) from None


def _read_latent(value: Any, where: str) -> SavedLatent:
    entry = _object(value, where)
    return _build(where, SavedLatent, name=_required(entry, "name", where),
                  model_id=_required(entry, "model_id", where), model_hash=entry.get("model_hash", ""),
                  latent=_required(entry, "latent", where), thumbnail_png=_read_png(entry, where))


def _read_history(value: Any, where: str) -> HistoryEntry:
    entry = _object(value, where)
    request = _read_request(_required(entry, "request", where), f"{where}.request")
    return _build(where, HistoryEntry, request=request, seconds=entry.get("seconds", 0.0),
                  created=entry.get("created", ""), thumbnail_png=_read_png(entry, where))


def _read_model(value: Any, where: str) -> ModelRef:
    entry = _object(value, where)
    return _build(where, ModelRef, id=_required(entry, "id", where), sha256=entry.get("sha256", ""),
                  name=entry.get("name", ""), folder=entry.get("folder", ""))


# --- files ---------------------------------------------------------------------------------------------------------
def save_document(doc: Document, path: str | Path) -> Path:
    """Write `doc` atomically (SUFFIX added when the name has none); the final path. ProjectError naming it on failure."""
    target = Path(path)
    if not target.suffix:
        target = target.with_name(target.name + SUFFIX)
    text = doc.to_json()
    try:
        with atomic_path(target) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
    except ExportError as exc:
        where = "" if exc.path in (None, str(target)) else f" ({exc.path})"
        raise ProjectError(f"cannot save the project: {exc.problem}{where}", target) from None
    return target


def load_document(path: str | Path) -> Document:
    """Read and check a project file; ProjectError(problem, path, field) when it cannot be used."""
    source = Path(path)
    data = _parse(_read_text(source), source)
    return Document.from_dict(data, source)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise ProjectError("no such file", path)
    if path.is_dir():
        raise ProjectError("is a folder, not a project file", path)
    # a regular file only (a FIFO would block, a device never end), at most MAX_PROJECT_BYTES
    raw = read_bytes(path, ProjectError, max_bytes=MAX_PROJECT_BYTES, what="project file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProjectError(f"not a project file: not UTF-8 text (bad byte at offset {exc.start})", path) from None


def _parse(text: str, path: Path) -> Any:
    if not text.strip():
        raise ProjectError("not a project file: the file is empty", path)
    depth = json_depth(text)  # json.loads recurses: the depth is checked first
    if depth > MAX_JSON_DEPTH:
        raise ProjectError(f"not a project file: invalid JSON (nested {depth:,} levels deep, over the limit of "
                           f"{MAX_JSON_DEPTH})", path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"not a project file: invalid JSON at line {exc.lineno} column {exc.colno} "
                           f"({exc.msg})", path) from None
    except (ValueError, RecursionError) as exc:
        raise ProjectError(f"not a project file: invalid JSON ({exc})", path) from None

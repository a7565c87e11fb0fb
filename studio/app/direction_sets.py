"""Where direction sets (studio.latent.direction_sets) live, and the names the open model's sliders show.

Where sets live:

- the model's **default names**: ``directions.lsdirs`` beside the package (``<package>/directions.lsdirs``), written
  by "Save as Model Default" when the package folder can be written. When it cannot (a shipped model in a read-only
  install, a package on a read-only disk), the default goes to ``<user data>/directions/<model id>/default.lsdirs``
  instead, which then overrides the package's file (and says so);
- the user's **sets**: ``<user data>/directions/<model id>/<set name>.lsdirs`` (studio.paths.user_data_dir());
- which set a model used last: ``<user data>/directions/<model id>/last-used`` (the set's file name, ``(default)``
  or ``(none)``). Opening a model loads that set, else its default names, else none;
- names changed since that set was saved: ``<user data>/directions/<model id>/unsaved.json`` (the set in use and the
  changed set), written at each rename, so names given and not yet saved are back (marked unsaved) at the next start
  — saving the project does not save names, and quitting must not lose them.

`DirectionNames` holds the working copy of each model's set for the session: renaming a direction is one undoable
step (an `Edit` on the document's undo stack, so Ctrl+Z takes a rename back like any other edit, and it marks the
document modified as any step does); the set is written only by Save (or Save as Model Default). Every name is a
label: no render, request or exported file changes with it.

The model's current direction vectors (to record with a name, and to check a loaded set against by cosine) are read
from its directions file header and data with numpy (studio.io.safetensors), never with torch: ``directions.safetensors``
beside the package, or for a family that computes its own (GANSpace), the user cache file made for these weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from studio.app.undo import Edit, UndoStack
from studio.errors import DirectionsError, StudioError
from studio.files import check_name, exists_at, is_regular, read_text
from studio.io.atomic import atomic_path
from studio.io.safetensors import read_header
from studio.latent.direction_sets import (MAX_SET_BYTES, SUFFIX, DirectionEntry, DirectionSet, Match, clean_name,
                                          from_dict, match, read_set)
from studio.limits import quote
from studio.paths import user_cache_dir, user_data_dir

if TYPE_CHECKING:
    from studio.library import PackageEntry

log = logging.getLogger(__name__)

INFO, WARNING, ERROR = "info", "warning", "error"  # the levels of studio.app.models
DEFAULT_KEY, NONE_KEY = "(default)", "(none)"
PACKAGE_FILE = "directions" + SUFFIX  # beside a package: its default names
USER_DEFAULT_FILE = "default" + SUFFIX  # in the user folder: the default when the package folder is read-only
LAST_USED_FILE = "last-used"
WORKING_FILE = "unsaved.json"  # names changed since the set in use was saved: {"base": key, "set": {…}}
MAX_LISTED = 500  # sets listed for one model
MAX_HASHED_BYTES = 256 << 20  # weights hashed on demand to record in a set (bigger ones: only when already known)
_NP_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}

Message = Callable[[str, str, str], None]


# --- where sets live -----------------------------------------------------------------------------------------------


def safe_component(name: str, what: str = "name") -> str:
    """`name` made a file name: characters other than letters, digits, space, - and _ become _, checked."""
    text = re.sub(r"[^\w\- ]", "_", name, flags=re.UNICODE).strip() or "_"
    return check_name(text[:100].lstrip("."), what, DirectionsError)


def user_sets_dir(model_id: str) -> Path:
    """The folder of the user's direction sets for model `model_id`."""
    return user_data_dir() / "directions" / safe_component(model_id, "model id")


def set_file_name(name: str) -> str:
    """The file a user set called `name` is saved as (a set called "default" does not take the default's file)."""
    stem = safe_component(clean_name(name))
    return f"{stem}-set{SUFFIX}" if stem.casefold() == "default" else stem + SUFFIX


@dataclass(frozen=True)
class StoredSet:
    """A set on disk: `key` (what last-used records: a file name, or DEFAULT_KEY), its `label`, its `path`."""

    key: str
    label: str
    path: Path


def default_path(entry: "PackageEntry") -> Path | None:
    """The file of the model's default names now in force: the user folder's override, else the package's file;
    None when neither exists."""
    for path in (user_sets_dir(entry.id) / USER_DEFAULT_FILE, entry.folder / PACKAGE_FILE):
        if exists_at(path):
            return path
    return None


def stored_sets(entry: "PackageEntry") -> list[StoredSet]:
    """The model's default (when it has one) and the user's sets, by name."""
    out: list[StoredSet] = []
    default = default_path(entry)
    if default is not None:
        out.append(StoredSet(DEFAULT_KEY, "Model default", default))
    folder = user_sets_dir(entry.id)
    try:
        names = sorted(os.listdir(folder), key=str.casefold)[:MAX_LISTED]
    except OSError:
        names = []
    for name in names:
        if name.endswith(SUFFIX) and name != USER_DEFAULT_FILE and not name.startswith(".") \
                and is_regular(folder / name):
            out.append(StoredSet(name, name[: -len(SUFFIX)], folder / name))
    return out


def find_stored(entry: "PackageEntry", key: str) -> StoredSet | None:
    return next((s for s in stored_sets(entry) if s.key == key or s.label.casefold() == key.casefold()), None)


def last_used(entry: "PackageEntry") -> str:
    """The key of the set the model used last (DEFAULT_KEY when never chosen)."""
    path = user_sets_dir(entry.id) / LAST_USED_FILE
    try:
        if is_regular(path) and path.stat().st_size <= 512:
            return path.read_text("utf-8").strip() or DEFAULT_KEY
    except (OSError, UnicodeDecodeError):
        pass
    return DEFAULT_KEY


def remember_last_used(entry: "PackageEntry", key: str) -> None:
    """Record the set the model uses now (a failure to write it is logged: it only costs the choice next time)."""
    folder = user_sets_dir(entry.id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / LAST_USED_FILE) as tmp:
            tmp.write_text(key + "\n", "utf-8")
    except (OSError, StudioError) as exc:
        log.warning("%s: cannot remember the direction set in use (%s)", folder, exc)


def write_set(directions: DirectionSet, path: str | Path) -> Path:
    """Write `directions` to `path` atomically (ExportError naming the file when it cannot)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(directions.dumps(), "utf-8")
    return path


def folder_writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


# --- the model's current directions ------------------------------------------------------------------------------


def _vectors_from(path: Path) -> np.ndarray | None:
    """The `vectors` tensor (k, d) of a directions safetensors file, read with numpy; None when unusable."""
    header = read_header(path)  # WeightsError when damaged
    if "vectors" not in header.tensors:
        return None
    dtype, shape = header.tensors["vectors"]
    if dtype not in _NP_DTYPES or len(shape) != 2:
        return None
    start, end = header.offsets["vectors"]
    with open(path, "rb") as f:
        f.seek(header.data_start + start)
        data = f.read(end - start)
    vectors = np.frombuffer(data, _NP_DTYPES[dtype]).astype(np.float32).reshape(shape)
    return vectors if np.isfinite(vectors).all() else None


def model_vectors(entry: "PackageEntry") -> np.ndarray | None:
    """The model's principal directions now (k, d) as unit rows, or None when they cannot be read without loading
    the model (a GANSpace family before its first load, a damaged file)."""
    manifest = entry.manifest
    if manifest is None or not entry.ok:
        return None
    candidates = [manifest.directions_path]
    family = entry.family
    sha = getattr(entry, "_sha256", None)  # known once the model loaded: never hashed here (a GUI thread may ask)
    if family is not None and family.own_directions and sha:
        folder = user_cache_dir() / "ganspace"
        try:
            candidates += sorted(folder / n for n in os.listdir(folder) if n.startswith(sha + "-"))
        except OSError:
            pass
    for path in candidates:
        if not is_regular(path):
            continue
        try:
            vectors = _vectors_from(path)
        except (OSError, StudioError) as exc:
            log.info("%s: direction vectors not readable (%s)", path, exc)
            continue
        if vectors is not None:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return None


def known_sha256(entry: "PackageEntry") -> str:
    """The weights' sha256 when known or cheap to find (weights up to MAX_HASHED_BYTES); "" otherwise."""
    sha = getattr(entry, "_sha256", None)
    if sha:
        return str(sha)
    manifest = entry.manifest
    try:
        if manifest is not None and manifest.weights_path.stat().st_size <= MAX_HASHED_BYTES:
            return entry.sha256 or ""
    except OSError:
        pass
    return ""


def check_model(directions: DirectionSet, entry: "PackageEntry | None", path: str | Path | None = None,
                vectors: np.ndarray | None = None) -> None:
    """Refuse a set made for another model than `entry` (or, without an entry, for a model not installed), or whose
    vectors have another length than the model's directions `vectors` (when those are known)."""
    if entry is None:
        raise DirectionsError(f"is made for model {quote(directions.model_id)}, which is not installed", path,
                              "model.id")
    if directions.model_id != entry.id:
        raise DirectionsError(f"is made for model {quote(directions.model_id)}, not {quote(entry.id)}", path,
                              "model.id")
    if vectors is not None and directions.dimension and directions.dimension != vectors.shape[1]:
        raise DirectionsError(f"holds directions of {directions.dimension} values, but {entry.id}'s have "
                              f"{vectors.shape[1]}", path, "model.dimension")


# --- the working copy ---------------------------------------------------------------------------------------------


@dataclass
class _State:
    """One model's names this session: the working `set`, where it came from (`key`), as saved (`saved`), the
    model's direction vectors and count, and where its names are shown (`shown`)."""

    entry: "PackageEntry"
    set: DirectionSet
    key: str = NONE_KEY
    saved: DirectionSet | None = None
    vectors: np.ndarray | None = None
    count: int = 0
    shown: Match = field(default_factory=lambda: Match({}))


class DirectionNames:
    """The direction names of each model this session (see the module docstring). `changed()` is called after any
    change of the current model's names or sets; `message(level, text, detail)` says what the user should know."""

    def __init__(self, undo: UndoStack | None = None, message: Message | None = None,
                 changed: Callable[[], None] | None = None):
        self.undo = undo
        self.message = message or (lambda level, text, detail: None)
        self.changed = changed or (lambda: None)
        self._states: dict[str, _State] = {}
        self._current: str | None = None

    # --- the model --------------------------------------------------------------------------------------------------
    def use_model(self, entry: "PackageEntry | None") -> None:
        """Make `entry` the model whose names are shown, loading its last-used (else default) set the first time."""
        if entry is None or not entry.ok or entry.manifest is None:
            self._current = None
        else:
            self._current = entry.id
            if entry.id not in self._states:
                self._states[entry.id] = self._load_state(entry)
        self.changed()

    def _load_state(self, entry: "PackageEntry") -> _State:
        spec = entry.parameters.get("d")  # the direction sliders d0 … d{count-1} the family offers
        state = _State(entry, DirectionSet(entry.id, "Unsaved names"), count=spec.count if spec is not None else 0)
        state.vectors = model_vectors(entry)
        if state.vectors is not None and state.vectors.shape[0] < state.count:
            state.vectors = None  # not the directions the sliders move along: names go by index, unchecked
        key = last_used(entry)
        stored = None if key == NONE_KEY else \
            find_stored(entry, key) or (find_stored(entry, DEFAULT_KEY) if key != DEFAULT_KEY else None)
        if stored is None:
            self._restore_working(state)
            return state
        try:
            loaded = read_set(stored.path)
            check_model(loaded, entry, stored.path, state.vectors)
        except StudioError as exc:
            self.message(WARNING, f"Direction names of {entry.id} not loaded: {exc.problem}", str(exc))
            return state
        self._adopt(state, loaded, stored.key, stored.path, keep=False)
        self._restore_working(state)
        return state

    def _restore_working(self, state: _State) -> None:
        """Names changed (and not saved) in an earlier session on top of the set in use, when there are any."""
        path = user_sets_dir(state.entry.id) / WORKING_FILE
        if not is_regular(path):
            return
        try:
            data = json.loads(read_text(path, DirectionsError, max_bytes=MAX_SET_BYTES, what="direction names"))
            if not isinstance(data, dict) or data.get("base") != state.key:
                return
            working = from_dict(data.get("set"), path)
            check_model(working, state.entry, path, state.vectors)
        except (ValueError, StudioError) as exc:
            log.warning("%s: unsaved direction names not restored (%s)", path, exc)
            return
        state.set = working
        state.shown = match(working, state.vectors, state.count)

    def _keep_working(self, state: _State) -> None:
        """Write (or remove, when there is nothing unsaved) the model's unsaved names; failures are logged."""
        path = user_sets_dir(state.entry.id) / WORKING_FILE
        try:
            if state.saved is not None and state.set.same_as(state.saved) or \
                    state.saved is None and not state.set.entries:
                if exists_at(path):
                    path.unlink()
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({"base": state.key, "set": self._finished(state, state.set).to_dict()}),
                               "utf-8")
        except (OSError, StudioError) as exc:
            log.warning("%s: cannot keep the unsaved direction names (%s)", path, exc)

    def _adopt(self, state: _State, loaded: DirectionSet, key: str, path: Path | None, keep: bool = True) -> None:
        state.set, state.saved, state.key = loaded, loaded, key
        if keep:
            self._keep_working(state)  # nothing unsaved now: an older file goes
        state.shown = match(loaded, state.vectors, state.count)
        where = f" ({path})" if path is not None else ""
        if state.shown.warnings:
            self.message(WARNING, f"Direction set {loaded.name!r} no longer fits {state.entry.id}: "
                         f"{len(state.shown.warnings)} name(s) not shown",
                         "\n".join(state.shown.warnings) + where)
        for note in state.shown.notes:
            self.message(INFO, f"Direction set {loaded.name!r}: {note}", str(path or ""))
        if state.vectors is None and any(e.vector is not None for e in loaded.entries):
            log.info("%s: names of %s not checked (its direction vectors cannot be read yet)", path, state.entry.id)

    @property
    def state(self) -> _State | None:
        return self._states.get(self._current) if self._current is not None else None

    @property
    def entry(self) -> "PackageEntry | None":
        state = self.state
        return state.entry if state is not None else None

    # --- what the panels show ---------------------------------------------------------------------------------------
    def names(self) -> dict[int, DirectionEntry]:
        """The current model's named principal directions, by index."""
        state = self.state
        return dict(state.shown.names) if state is not None else {}

    def name(self, index: int) -> str:
        entry = self.names().get(index)
        return entry.name if entry is not None else ""

    def label(self, param: str) -> str:
        """The name of param `param` ("d3") when it is a named direction of the current model, else ""."""
        m = re.fullmatch(r"d(\d+)", param)
        return self.name(int(m.group(1))) if m else ""

    def param_for(self, name: str) -> str | None:
        """The param ("d3") a direction name stands for (case-insensitive), or None."""
        key = name.strip().casefold()
        return next((f"d{k}" for k, e in self.names().items() if e.name.casefold() == key), None)

    @property
    def current_set(self) -> DirectionSet | None:
        state = self.state
        return state.set if state is not None else None

    @property
    def current_key(self) -> str:
        state = self.state
        return state.key if state is not None else NONE_KEY

    @property
    def modified(self) -> bool:
        """Whether the working names differ from the set they came from (or there are unsaved names)."""
        state = self.state
        if state is None:
            return False
        return not state.set.same_as(state.saved) if state.saved is not None else bool(state.set.entries)

    def stored(self) -> list[StoredSet]:
        entry = self.entry
        return stored_sets(entry) if entry is not None else []

    def hidden(self) -> list[str]:
        """Lines saying which names of the current set are not shown, and why."""
        state = self.state
        return list(state.shown.warnings) if state is not None else []

    # --- renaming ---------------------------------------------------------------------------------------------------
    def rename(self, index: int, name: str) -> None:
        """Call principal direction `index` of the current model `name` ("" removes its name): one undoable step.
        DirectionsError for a name that is not usable or already taken."""
        state = self.state
        if state is None:
            raise DirectionsError("no model is open")
        if not 0 <= index < state.count:
            raise DirectionsError(f"this model has no direction d{index}")
        old_name = self.name(index)
        new_name = clean_name(name) if name.strip() else ""
        if new_name == old_name:
            return
        vector = state.vectors[index] if state.vectors is not None and index < len(state.vectors) else None
        # names hidden (no longer matching) stay in the set; a name moved by matching is renamed where it shows
        base = state.set
        shown = state.shown.names.get(index)
        if shown is not None and shown.name and base.by_index().get(index) is None:
            base = DirectionSet(base.model_id, base.name, tuple(e for e in base.entries if e.name != shown.name),
                                base.sha256, base.dimension)
        new_set = base.renamed(index, new_name or None, vector)
        if not new_set.sha256:
            new_set = DirectionSet(new_set.model_id, new_set.name, new_set.entries, known_sha256(state.entry),
                                   new_set.dimension)
        old_set, model_id = state.set, state.entry.id
        text = (f"Rename d{index} {old_name!r} to {new_name!r}" if old_name and new_name else
                f"Name d{index} {new_name!r}" if new_name else f"Clear the name of d{index} ({old_name!r})")
        if self.undo is None:
            self._apply(model_id, new_set)
        else:
            self.undo.push(Edit(text, lambda: self._apply(model_id, new_set), lambda: self._apply(model_id, old_set)))

    def suggest(self, index: int, amount: float | None, layers: tuple[int, int] | None) -> None:
        """Keep an amount (in standard deviations) and a layer range with the named direction `index` (None: none),
        for whoever uses the set — one undoable step; nothing is applied to the request."""
        state = self._need()
        entry = state.set.by_index().get(index)
        if entry is None:
            raise DirectionsError(f"direction d{index} has no name to keep a suggestion with")
        new_set = state.set.suggested(index, amount, layers)
        if new_set.same_as(state.set):
            return
        old_set, model_id = state.set, state.entry.id
        shown = f"{amount:+.2f}" if amount is not None else "no amount"
        where = f", layers {layers[0]} to {layers[1]}" if layers is not None else ""
        text = f"Suggest {shown}{where} for {entry.name}"
        if self.undo is None:
            self._apply(model_id, new_set)
        else:
            self.undo.push(Edit(text, lambda: self._apply(model_id, new_set), lambda: self._apply(model_id, old_set)))

    def _apply(self, model_id: str, directions: DirectionSet) -> None:
        state = self._states.get(model_id)
        if state is None:
            return
        state.set = directions
        state.shown = match(directions, state.vectors, state.count)
        self._keep_working(state)
        if model_id == self._current:
            self.changed()

    # --- sets on disk -----------------------------------------------------------------------------------------------
    def _finished(self, state: _State, directions: DirectionSet) -> DirectionSet:
        """`directions` ready to write: the model's hash and each shown name's current vector recorded."""
        entries = []
        for e in directions.entries:
            if e.index is not None and state.vectors is not None and e.index < len(state.vectors) \
                    and state.shown.names.get(e.index) is not None \
                    and state.shown.names[e.index].name == e.name:
                e = DirectionEntry(e.name, e.index, state.vectors[e.index], e.layers, e.amount)
            entries.append(e)
        dimension = directions.dimension or (int(state.vectors.shape[1]) if state.vectors is not None else 0)
        return DirectionSet(directions.model_id, directions.name, tuple(entries),
                            directions.sha256 or known_sha256(state.entry), dimension)

    def save(self, name: str) -> Path:
        """Save the current names as the user's set `name` (replacing a set of that name); it becomes the set in
        use. ExportError / DirectionsError naming the file when it cannot be written."""
        state = self._need()
        directions = self._finished(state, DirectionSet(state.entry.id, clean_name(name), state.set.entries,
                                                        state.set.sha256, state.set.dimension))
        folder = user_sets_dir(state.entry.id)
        folder.mkdir(parents=True, exist_ok=True)
        path = write_set(directions, folder / set_file_name(name))
        self._adopt(state, directions, path.name, path)
        remember_last_used(state.entry, path.name)
        self.changed()
        return path

    def save_default(self) -> tuple[Path, str]:
        """Save the current names as the model's default: beside the package when its folder can be written, else
        in the user folder (which then overrides the package's). Returns the path and a line saying where."""
        state = self._need()
        name = state.set.name if state.key != NONE_KEY else f"{state.entry.id} directions"
        directions = self._finished(state, DirectionSet(state.entry.id, name, state.set.entries,
                                                        state.set.sha256, state.set.dimension))
        beside = state.entry.folder / PACKAGE_FILE
        user = user_sets_dir(state.entry.id) / USER_DEFAULT_FILE
        if folder_writable(state.entry.folder):
            path = write_set(directions, beside)
            if exists_at(user):  # an older override would hide the new default
                user.unlink()
            note = f"saved beside the package: {path}"
        else:
            user.parent.mkdir(parents=True, exist_ok=True)
            path = write_set(directions, user)
            note = (f"the package folder {state.entry.folder} cannot be written, so the default is kept in your "
                    f"data folder: {path}")
        self._adopt(state, directions, DEFAULT_KEY, path)
        remember_last_used(state.entry, DEFAULT_KEY)
        self.changed()
        return path, note

    def choose(self, key: str) -> bool:
        """Use the stored set `key` (a StoredSet key, or NONE_KEY for no names); unsaved names are dropped (the caller
        asks first). False when it cannot be read (said in the messages)."""
        state = self._need()
        if key == NONE_KEY:
            state.saved = None
            self._adopt(state, DirectionSet(state.entry.id, "Unsaved names"), NONE_KEY, None)
            state.saved = None
            remember_last_used(state.entry, NONE_KEY)
            self.changed()
            return True
        stored = find_stored(state.entry, key)
        if stored is None:
            self.message(ERROR, f"No direction set {key!r} for {state.entry.id}", str(user_sets_dir(state.entry.id)))
            self.changed()
            return False
        try:
            loaded = read_set(stored.path)
            check_model(loaded, state.entry, stored.path, state.vectors)
        except StudioError as exc:
            self.message(ERROR, f"Cannot load direction set {stored.label!r}: {exc.problem}", str(exc))
            self.changed()
            return False
        self._adopt(state, loaded, stored.key, stored.path)
        remember_last_used(state.entry, stored.key)
        self.changed()
        return True

    def export(self, path: str | Path) -> Path:
        """Share the current names as a file (with each name's vector, so they keep their meaning elsewhere)."""
        state = self._need()
        return write_set(self._finished(state, state.set), path)

    def import_file(self, path: str | Path) -> Path:
        """Read a shared set (checked: format, model, vectors by cosine), store it among the user's sets under its
        own name and use it. DirectionsError naming the file when it cannot be used."""
        state = self._need()
        loaded = read_set(path)
        check_model(loaded, state.entry, path, state.vectors)
        folder = user_sets_dir(state.entry.id)
        folder.mkdir(parents=True, exist_ok=True)
        target = write_set(loaded, folder / set_file_name(loaded.name))
        self._adopt(state, loaded, target.name, Path(path))
        remember_last_used(state.entry, target.name)
        self.changed()
        return target

    def delete(self, key: str) -> bool:
        """Delete the user's stored set `key` (not the package's default); the names become unsaved."""
        state = self._need()
        stored = find_stored(state.entry, key)
        if stored is None or stored.key == DEFAULT_KEY:
            return False
        stored.path.unlink()
        if state.key == stored.key:
            state.key, state.saved = NONE_KEY, None
            remember_last_used(state.entry, NONE_KEY)
        self.changed()
        return True

    def _need(self) -> _State:
        state = self.state
        if state is None:
            raise DirectionsError("no model with principal directions is open")
        return state


# --- the command line ----------------------------------------------------------------------------------------------


def describe_sets(entry: "PackageEntry") -> list[str]:
    """Lines for `latent-studio directions list`: the model's sets (the one in use marked *), each with its names."""
    lines = []
    in_use = last_used(entry)
    for stored in stored_sets(entry):
        mark = "*" if stored.key == in_use or (in_use not in {s.key for s in stored_sets(entry)}
                                               and stored.key == DEFAULT_KEY) else " "
        try:
            directions = read_set(stored.path)
            names = ", ".join(f"{e.name} (d{e.index})" if e.index is not None else f"{e.name} (custom)"
                              for e in directions.entries) or "no names"
        except StudioError as exc:
            names = f"unreadable: {exc.problem}"
        lines.append(f"  {mark} {stored.label}: {names}  [{stored.path}]")
    return lines


def direction_param(entry: "PackageEntry", name: str) -> str | None:
    """The param ("d3") that `name` names among the model's directions in its set in use (as the window would show
    it), or None. For `render --set Bold=2`."""
    names = DirectionNames()
    names.use_model(entry)
    return names.param_for(name)

"""The open document, with no Qt: its current request, undo history, seed mode, render history, latent library,
image-to-image source, file and saved state.

Every change of the request is one undoable step (`set_request`, `set_param`, `change`); a step applied (made, undone
or redone) makes the request current and asks for it to be rendered (`render_wanted`). Renders come back through the
window (or any other driver) as `add_history` and `note_render`. Nothing here renders: the engine does.

Listeners (plain callbacks, see studio.app.listeners): request_changed(request), model_changed(entry),
render_wanted(request), latents_changed(), history_changed(), document_changed() (path or saved state),
seed_mode_changed(mode), opened() (a whole new document: everything changed) and message(level, text, detail).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from studio.app.carry import Carried, encoded_params, switch_request
from studio.app.listeners import Listeners
from studio.app.models import ERROR, INFO, WARNING, FolderAsker, FolderQuestion, ModelLibrary, never
from studio.app.opening import document_in_video, is_video
from studio.app.strips import StripGuess, guess_strip_chars
from studio.app.undo import Edit, SetValue, UndoStack
from studio.errors import StudioError
from studio.export import read_any_request
from studio.export.image import read_picture
from studio.io.images import decode_init_image, encode_init_image
from studio.latent.interp import interpolate
from studio.latent.kinds import LatentKind, common_kind, find_kind, pair
from studio.library import DEFAULT_MODEL_ID, PackageEntry, document_models, find_installed, names_a_path
from studio.limits import quote
from studio.params import Capability, ParamTable
from studio.project import Document, HistoryEntry, ModelRef, SavedLatent, load_document, save_document, utc_now
from studio.request import MAX_SEED, SEED_MODES, RenderRequest

DEFAULT_STRENGTH = 0.6  # image-to-image: how much of a newly set init image is redrawn
INIT_SOURCES_LIMIT = 32  # original init pictures remembered for re-fitting (by the request text they produced)
INIT_SOURCE_MAX_SIDE = 1024  # originals are shrunk to this (re-fitting runs at typing speed on the driving thread)
ORIGINS_LIMIT = 64  # explicit latents whose origin ("projected from x.png") is remembered for naming saved latents


class OpenDocument:
    """The document being edited, over the installed `models` (whose `message` listeners it shares)."""

    def __init__(self, models: ModelLibrary, rng: random.Random | None = None):
        self.models = models
        self.message = models.message
        self.undo = UndoStack()
        self.document = Document()
        self.path: Path | None = None
        self.entry: PackageEntry | None = None  # the current request's model
        self.seed_mode = "fixed"
        self.revision = 0  # counts every change of the document, saved or not (autosave writes when it moves)
        self._rng = rng or random.Random()
        # asked when a file names a model folder that is not installed (a window shows a dialog); default: No
        self.ask_folder: FolderAsker = never
        self._history_index = -1  # undo index of the newest history entry (one entry per undo step)
        # init image (base64 PNG in a request) → the original picture it was fitted from, so that a new prompt
        # re-fits the original rather than a resized copy (pictures stay here: the request holds only the fitted one)
        self._init_sources: dict[str, np.ndarray] = {}
        # explicit latent values → where they came from ("projected from x.png", "interpolated 30 % A→B"): a latent
        # saved from them is named so; kept across undo (the values are the key), forgotten oldest first
        self._origins: dict[tuple[float, ...], str] = {}
        self._complained: str | None = None  # the gesture (merge key) that already said what went wrong
        self.request_changed = Listeners()
        self.model_changed = Listeners()
        self.render_wanted = Listeners()
        self.latents_changed = Listeners()
        self.history_changed = Listeners()
        self.document_changed = Listeners()
        self.seed_mode_changed = Listeners()
        self.opened = Listeners()
        self._undo_state = (0, True)
        self.undo.changed.connect(self._on_undo_changed)

    def _on_undo_changed(self) -> None:
        """A step made, undone or redone, or the document saved: its title changes (not on every frame of a drag:
        a merged step leaves the index and the saved state as they were)."""
        state = (self.undo.index, self.undo.is_clean)
        if state != self._undo_state:
            self._undo_state = state
            self.document_changed()

    # --- the request ----------------------------------------------------------------------------------------------
    @property
    def request(self) -> RenderRequest | None:
        return self.document.request

    def set_request(self, request: RenderRequest, text: str, merge: str | None = None) -> None:
        """Make `request` current as one undoable step (`merge`: a key that folds a gesture into one step)."""
        old = self.document.request
        request = self._refit_init_image(old, request)
        if request != old:
            self.undo.push(SetValue(self.apply, old, request, text, merge))

    def set_param(self, name: str, value: Any, text: str, merge: str | None = None) -> None:
        """Set param `name` of the current request (None: unset, the family's default applies) as one step."""
        if self.request is None:
            return
        try:
            request = self.request.with_param(name, value)
            if self.entry is not None and self.entry.parameters.find(name) is not None:
                request = self.entry.parameters.check(request)
        except StudioError as exc:
            self.message(ERROR, f"{text}: {exc.problem}", str(exc))
            return
        self.set_request(request, text, merge)

    def change(self, text: str, merge: str | None = None, **fields: Any) -> None:
        """Change core fields (seed=…, latent=…) or params (params={…}) of the current request as one step."""
        if self.request is None:
            return
        try:
            request = self.request.with_(**fields)
        except StudioError as exc:
            self.message(ERROR, f"{text}: {exc.problem}", str(exc))
            return
        self.set_request(request, text, merge)

    def apply(self, request: RenderRequest | None) -> None:
        """Make `request` current and ask for it to be rendered (what an undo step does; also on start and load)."""
        previous = self.document.request
        self.document.request = request
        self.revision += 1
        if request is None or previous is None or request.model_id != previous.model_id or self.entry is None:
            self.entry = self.models.entry_for(request.model_id) if request is not None else None
            self.model_changed(self.entry)
        self.request_changed(request)
        if request is None:
            return
        if self.entry is None:
            self.message(ERROR, f"Model {request.model_id!r} is not installed",
                         "Open its folder (File → Open Model Folder…) to render this request.")
        else:
            self.render_wanted(request)

    def default_request(self, entry: PackageEntry, seed: int | None = None) -> RenderRequest:
        """What `entry` opens with: its default request at `seed` (default: the current seed)."""
        seed = self.document.request.seed if seed is None and self.document.request else (seed or 0)
        return entry.default_request(seed)

    def use_model(self, model_id: str) -> bool:
        entry = self.models.entry_for(model_id)
        if entry is None or not entry.ok:
            why = str(entry.error) if entry is not None else "it is not installed"
            self.message(ERROR, f"Cannot use model {model_id}", why)
            return False
        if self.document.request is not None and self.document.request.model_id == model_id:
            return True
        name = entry.manifest.name if entry.manifest is not None else model_id
        old = self.document.request
        if old is None:
            self.set_request(self.default_request(entry), f"Use model {name}")
            return True
        carried = switch_request(old, self.models.entry_for(old.model_id), entry, self.default_request(entry))
        self.set_request(carried.request, f"Use model {name}")
        self.message(WARNING if carried.dropped else INFO, f"Switched to {name}: {carried.summary()}",
                     carried.detail())
        return True

    def start(self, model_id: str | None = None) -> None:
        """Show `model_id` (default: the shipped default model, else the first usable one), not as an undo step."""
        if not self.models.entries:
            self.models.refresh()
        entry = self.models.entry_for(model_id or DEFAULT_MODEL_ID)
        if entry is None or not entry.ok:
            usable = self.models.usable
            entry = usable[0] if usable else None
        if entry is None:
            self.message(WARNING, "No usable model is installed",
                         "Open a model folder (File → Open Model Folder…) or drop one on the window.")
            self.apply(None)
            return
        self.apply(self.default_request(entry, seed=0))

    @property
    def output_kind(self) -> str:
        """What the current model makes: "image" or "audio" ("image" when no model is open)."""
        entry = self.entry
        return entry.manifest.output.kind if entry is not None and entry.manifest is not None else "image"

    @property
    def projects(self) -> bool:
        """Whether the current model's encoder is a projection by optimisation (long: progress and Cancel)."""
        return self.entry is not None and Capability.PROJECT in self.entry.capabilities

    # --- seeds ----------------------------------------------------------------------------------------------------
    def set_seed_mode(self, mode: str) -> None:
        if mode not in SEED_MODES:
            raise ValueError(f"seed mode must be one of {SEED_MODES}")
        if mode != self.seed_mode:
            self.seed_mode = mode
            self.seed_mode_changed(mode)

    def random_seed(self) -> None:
        if self.request is not None:
            self.change("Random seed", seed=self.draw_seed(), latent=None)

    def draw_seed(self) -> int:
        """A random seed (or variation seed) in the whole range, 0..2**64-1."""
        return self._rng.randrange(MAX_SEED + 1)

    def next_seed(self) -> None:
        """Advance the seed by the seed mode (after an export, or on "Next"): fixed keeps it."""
        if self.request is None or self.seed_mode == "fixed":
            return
        if self.seed_mode == "increment":
            self.change("Next seed", seed=(self.request.seed + 1) % (MAX_SEED + 1), latent=None)
        else:
            self.random_seed()

    # --- render history -------------------------------------------------------------------------------------------
    def add_history(self, request: RenderRequest, seconds: float, thumbnail_png: bytes = b"") -> None:
        """A finished render of the current request. One history entry per undo step: renders during one gesture
        replace each other."""
        entry = HistoryEntry(request, round(seconds, 4), utc_now(), thumbnail_png)
        history = self.document.history
        if history and (self._history_index == self.undo.index or history[-1].request == request):
            history[-1] = entry
        else:
            self.document.add_history(entry)
        self._history_index = self.undo.index
        self.revision += 1
        self.history_changed()

    def restore_history(self, index: int) -> None:
        self.set_request(self.document.history[index].request, "Restore render")

    def note_render(self, request: RenderRequest, info: dict) -> None:
        """Record the model a render used (its weights' hash, and the folder it was opened from) in the document."""
        refs = [r for r in self.document.models if r.id != request.model_id]
        folder = self.models.opened_folder(self.models.entry_for(request.model_id))
        self.document.models = [*refs, ModelRef(request.model_id, info.get("model_sha256", ""),
                                                info.get("model_name", ""), folder)]

    # --- latent library -------------------------------------------------------------------------------------------
    def latent_origin(self, request: RenderRequest | None = None) -> str:
        """Where the request's latent came from: "seed 43", "projected from my-letters.png", "interpolated 30 %
        A→B", a saved latent's name … ("" for explicit values of unknown origin: a project opened from a file)."""
        request = request or self.request
        if request is None:
            return ""
        if request.latent is None:
            return f"seed {request.seed}"
        return self._origins.get(request.latent, "")

    def latent_name(self, name: str, request: RenderRequest | None = None) -> str:
        """The name a latent is saved under: `name`, else its origin ("seed 43", "projected from x.png" …), made
        unique in the library with " (2)", " (3)" …"""
        request = request or self.request
        name = name.strip()
        if name:
            return name
        base = self.latent_origin(request) or "latent"
        taken = {entry.name for entry in self.document.latents}
        count = 1
        name = base
        while name in taken:
            count += 1
            name = f"{base} ({count})"
        return name

    def _note_origin(self, values: tuple[float, ...], origin: str) -> None:
        if origin:
            self._origins.pop(values, None)
            self._origins[values] = origin
            while len(self._origins) > ORIGINS_LIMIT:
                del self._origins[next(iter(self._origins))]

    def save_latent(self, name: str, request: RenderRequest, values: Iterable[float], model_hash: str = "",
                    thumbnail_png: bytes = b"") -> None:
        """Add the latent `values` of `request` (computed by its model) to the library as one step."""
        name = self.latent_name(name, request)
        entry = SavedLatent(name, request.model_id, model_hash or request.model_hash,
                            tuple(float(v) for v in values), thumbnail_png)
        index = len(self.document.latents)
        self.undo.push(Edit(f"Save latent {name!r}", lambda: self._insert_latent(index, entry),
                            lambda: self._remove_latent(index, entry)))

    def remove_latent(self, index: int) -> None:
        entry = self.document.latents[index]
        self.undo.push(Edit(f"Remove latent {entry.name!r}", lambda: self._remove_latent(index, entry),
                            lambda: self._insert_latent(index, entry)))

    def _insert_latent(self, index: int, entry: SavedLatent) -> None:
        self.document.latents.insert(index, entry)
        self.revision += 1
        self.latents_changed()

    def _remove_latent(self, index: int, entry: SavedLatent) -> None:
        if 0 <= index < len(self.document.latents) and self.document.latents[index] == entry:
            del self.document.latents[index]
        self.revision += 1
        self.latents_changed()

    def use_latent(self, index: int) -> None:
        entry = self.document.latents[index]
        if self.latent_fits(entry):
            self.use_latent_values(f"Use latent {entry.name!r}", entry.latent, origin=entry.name)

    def use_latent_values(self, text: str, values: Iterable[float], source: RenderRequest | None = None,
                          merge: str | None = None, origin: str = "") -> None:
        """Make explicit latent `values` current (a saved latent, an interpolation, a variation: computed latents
        that hold every edit), keeping the params a latent does not hold (those of `source`, default the current
        request) as one step; `origin` names where they came from (what a latent saved from them is called)."""
        latent = tuple(float(v) for v in values)
        self._note_origin(latent, origin)
        self.change(text, merge=merge, latent=latent, params=self.render_only_params(source))

    def use_encoded_latent(self, text: str, values: Iterable[float], origin: str = "") -> Carried | None:
        """Make an encoded (or projected) latent current as one step: it holds no edits, so every edit that still
        acts on explicit values is kept (mixing, directions, truncation …) and those that act only on a seed's draw
        are dropped. What was kept and dropped (None when there is no request)."""
        request = self.request
        if request is None:
            return None
        latent = tuple(float(v) for v in values)
        self._note_origin(latent, origin)
        entry = self.models.entry_for(request.model_id)
        carried = encoded_params(request, entry.parameters if entry is not None else ParamTable(()))
        self.change(text, latent=latent, params=carried.request.params)
        return carried

    def render_only_params(self, request: RenderRequest | None = None) -> dict:
        """The request's params that a computed latent does not hold (kept when such a latent is used): the
        condition, sampler settings, noise … (the specs say which)."""
        request = request or self.request
        if request is None:
            return {}
        entry = self.models.entry_for(request.model_id)
        return entry.parameters.render_only(request) if entry is not None else dict(request.params)

    # --- interpolation in the library -------------------------------------------------------------------------------
    def latent_kinds(self, model_id: str | None = None) -> tuple[LatentKind, ...]:
        """The forms a latent of `model_id` (default: the current model) takes (studio.latent.kinds); () when that
        model is not installed."""
        entry = self.entry if model_id is None else self.models.entry_for(model_id)
        family = entry.family if entry is not None else None
        if family is None or entry is None or entry.manifest is None:
            return ()
        return family.latent_kinds(entry.manifest)

    def usable_latents(self) -> list[int]:
        """The library entries the current model can use (its own, of a kind it takes), in library order."""
        request = self.request
        if request is None:
            return []
        kinds = self.latent_kinds()
        return [i for i, e in enumerate(self.document.latents)
                if e.model_id == request.model_id and find_kind(kinds, size=len(e.latent)) is not None]

    def interpolation_partners(self, index: int) -> list[int]:
        """The usable library entries that interpolate with entry `index` (the same kind, or one converting to the
        other: a w and a w+ both become w+), itself included."""
        usable = self.usable_latents()
        if index not in usable:
            return []
        kinds = self.latent_kinds()
        size = len(self.document.latents[index].latent)
        return [i for i in usable if common_kind(kinds, size, len(self.document.latents[i].latent)) is not None]

    def describe_latent(self, entry: SavedLatent) -> str:
        """"w+ (8 × 128 values)": the kind of a saved latent, for tooltips ("N values" for an unknown kind)."""
        kinds = self.latent_kinds(entry.model_id)
        kind = find_kind(kinds, size=len(entry.latent))
        return kind.describe(kinds) if kind is not None else f"{len(entry.latent)} values"

    def interpolate_latents(self, a: int, b: int, t: float, mode: str = "slerp", merge: str | None = None) -> None:
        """Make the latent at `t` between saved latents `a` and `b` current (a w and a w+ interpolate as w+). One
        gesture (one `merge` key) says what went wrong at most once."""
        first, second = self.document.latents[a], self.document.latents[b]
        quiet = merge is not None and merge == self._complained
        if not (self.latent_fits(first, quiet) and self.latent_fits(second, quiet)):
            self._complained = merge
            return
        try:
            pa, pb = pair(self.latent_kinds(), first.latent, second.latent) if self.latent_kinds() \
                else (first.latent, second.latent)
            values = interpolate(pa, pb, t, mode)
        except ValueError as exc:
            if not quiet:
                self.message(ERROR, f"Cannot interpolate {first.name!r} and {second.name!r}", str(exc))
            self._complained = merge
            return
        origin = f"interpolated {round(t * 100)} % {first.name}→{second.name}"
        self.use_latent_values(f"Interpolate {first.name!r} → {second.name!r}", values, merge=merge, origin=origin)

    def latent_fits(self, entry: SavedLatent, quiet: bool = False) -> bool:
        """Whether a saved latent belongs to the current model (a warning says so when not, unless `quiet`)."""
        request = self.request
        if request is None:
            return False
        if entry.model_id != request.model_id:
            if not quiet:
                self.message(WARNING, f"Latent {entry.name!r} belongs to model {entry.model_id}",
                             f"The current model is {request.model_id}; switch to {entry.model_id} to use it.")
            return False
        return True

    def strip_chars(self, path: str | Path) -> StripGuess:
        """What the Encode / Project Image dialog offers for the strip at `path`: the prompt stored in the picture,
        else the current prompt fitted to the picture's cells (characters the model cannot draw skip their cell)."""
        request, entry = self.request, self.entry
        prompt = request.param("prompt") if request is not None else None
        spec = entry.parameters.find("prompt") if entry is not None else None
        return guess_strip_chars(path, prompt if isinstance(prompt, str) else None,
                                 spec.charset if spec is not None else "")

    # --- image to image -------------------------------------------------------------------------------------------
    def set_init_image(self, source: str | Path | np.ndarray, name: str = "") -> bool:
        """Start image-to-image from a picture (a file, or an array): it is fitted to the sheet the current prompt
        draws and stored in the request (one undoable step); strength defaults to DEFAULT_STRENGTH."""
        request, entry = self.request, self.entry
        if request is None or entry is None or entry.manifest is None:
            return False
        name = name or (Path(source).name if not isinstance(source, np.ndarray) else "image")
        if Capability.IMG2IMG not in entry.capabilities:
            self.message(ERROR, f"{entry.manifest.name} cannot start from an image",
                         f"The {entry.manifest.family} family has no image-to-image.")
            return False
        try:
            picture = read_picture(source, INIT_SOURCE_MAX_SIDE, colour=True)  # the family fits it (grey or not)
        except StudioError as exc:
            self.message(ERROR, f"Cannot use {name} as the init image", str(exc))
            return False
        strength = request.param("strength", DEFAULT_STRENGTH)
        self.set_request(request.with_params({"init_image": self._fit_init_image(request, picture, entry),
                                              "strength": strength}), f"Init image {name}")
        return True

    def clear_init_image(self) -> None:
        request = self.request
        if request is not None and ("init_image" in request.params or "strength" in request.params):
            self.set_request(request.with_params({"init_image": None, "strength": None}), "Clear init image")

    def _fit_init_image(self, request: RenderRequest, picture: np.ndarray, entry: PackageEntry) -> str:
        family, manifest = entry.family, entry.manifest
        if family is None or manifest is None:
            raise StudioError(f"model {entry.id} cannot be used", entry.folder)
        fitted = family.init_picture_for(manifest, request, picture)
        text = encode_init_image(fitted)
        self._init_sources[text] = picture
        while len(self._init_sources) > INIT_SOURCES_LIMIT:
            del self._init_sources[next(iter(self._init_sources))]
        return text

    def _refit_init_image(self, old: RenderRequest | None, request: RenderRequest) -> RenderRequest:
        """When the sheet changes (a new prompt) under an init image, fit the original picture to the new sheet, so
        the change and the re-fit are one step and the family never sees an init image of the wrong size."""
        init = request.param("init_image")
        if init is None or (old is not None and old.param("init_image") == init
                            and (old.param("prompt"), old.param("label"), old.model_id, old.width, old.height)
                            == (request.param("prompt"), request.param("label"), request.model_id, request.width,
                                request.height)):
            return request
        entry = self.models.entry_for(request.model_id)
        family = entry.family if entry is not None else None
        if entry is None or entry.manifest is None or family is None or Capability.IMG2IMG not in entry.capabilities:
            return request
        try:
            current = decode_init_image(init)
        except StudioError:
            return request  # the family reports what is wrong with it
        width, height = family.init_size(entry.manifest, request)
        if current.shape[:2] == (height, width):
            return request
        picture = self._init_sources.get(init, current)
        return request.with_param("init_image", self._fit_init_image(request, picture, entry))

    # --- files ----------------------------------------------------------------------------------------------------
    def restore_from_file(self, path: str | Path) -> bool:
        """Restore the exact request stored in an image or a sound this app exported. Its model is an installed
        package (by id, or for a folder path by that folder, its name and weights hash); a folder that is not
        installed is added only when the user says so (`ask_folder`), else the document stays as it was."""
        name = Path(path).name
        try:
            request = read_any_request(path)
        except StudioError as exc:
            self.message(ERROR, f"Cannot restore from {name}", str(exc))
            return False
        entry = self._installed_model(request.model_id, request.model_hash, path)
        if entry is None:
            if names_a_path(request.model_id):
                self.message(WARNING, f"{name} asks for the model folder {quote(request.model_id)}, which is not "
                                      "installed", "Nothing was loaded and the document is unchanged. If you trust "
                                      "that folder, open it with File → Open Model Folder, then drop the file again.")
            else:
                self.message(ERROR, f"{name} was made with model {request.model_id!r}, which is not "
                                    "installed", "Open its model folder first, then drop the file again.")
            return False
        if entry.id != request.model_id:
            request = request.with_(model_id=entry.id)
        self.set_request(request, f"Restore {name}")
        self.message(INFO, f"Restored the request from {name}", "")
        return True

    def _installed_model(self, model_id: str, sha256: str, source: str | Path) -> PackageEntry | None:
        """The installed package a file's `model_id` names: by id; for a path, the installed package that is that
        folder (or has its name and weights hash), else the folder once the user agreed to add it. None: not
        installed (nothing was read from the folder)."""
        if not self.models.entries:
            self.models.refresh()
        entry = self.models.entry_for(model_id)
        if entry is not None or not names_a_path(model_id):
            return entry
        entry = find_installed(model_id, sha256, model_id, self.models.entries)
        if entry is None and self._admit_folder(model_id, sha256, source):
            entry = find_installed(model_id, sha256, model_id, self.models.entries)
        return entry

    def _admit_folder(self, folder: str, sha256: str, source: str | Path) -> bool:
        """Ask whether to add `folder` (named by the file `source`) to the model folders; True when the user said
        yes and it holds a usable package, now installed."""
        try:
            exists = Path(folder).expanduser().exists()
        except (OSError, ValueError):
            exists = False
        if not exists or not self.ask_folder(FolderQuestion(str(source), folder, sha256)):
            return False
        return any(e.ok for e in self.models.add_model_folder(Path(folder).expanduser()))

    def _admit_document(self, document: Document, path: str | Path) -> Document | None:
        """`document` with its models among the installed packages (model ids that are paths renamed to the
        installed ids), each folder it names that is not installed added if the user agrees; None when the user
        refused one (nothing was read from it; the message says so)."""
        if not self.models.entries:
            self.models.refresh()
        _, refused = document_models(document, self.models.entries, path)
        for error in refused:
            if not self._admit_folder(error.folder, error.sha256, path):
                self.message(WARNING, f"Did not open {Path(path).name}: it asks for the model folder "
                                      f"{quote(error.folder)}, which is not installed",
                             "Nothing was loaded and the open document is unchanged. If you trust that folder, "
                             "open it with File → Open Model Folder, then open the project again.")
                return None
        found, _ = document_models(document, self.models.entries, path)
        return document.with_model_ids({name: e.id for name, e in found.items() if name != e.id})

    @property
    def modified(self) -> bool:
        return not self.undo.is_clean

    @property
    def display_name(self) -> str:
        return self.path.name if self.path is not None else "Untitled"

    def new(self, model_id: str | None = None) -> None:
        """A fresh, untitled document on `model_id` (default: the default model)."""
        self._reset(Document(), None)
        self.start(model_id)
        self.undo.set_clean()
        self.opened()

    def open(self, path: str | Path) -> bool:
        """Open a project file, or the project inside a video this app exported (then untitled: saving never writes
        over the video). The open document stays when it cannot be read, and the message says why."""
        video = is_video(path)
        try:
            document = document_in_video(path) if video else load_document(path)
        except StudioError as exc:
            self.message(ERROR, f"Cannot open {Path(path).name}", str(exc))
            return False
        admitted = self._admit_document(document, path)
        if admitted is None:
            return False
        self.adopt(admitted, None if video else Path(path))
        if video:
            self.message(INFO, f"Opened the project inside {Path(path).name}",
                         "It is untitled: save it as a project (File → Save As) to keep your changes.")
        return True

    def adopt(self, document: Document, path: Path | None, modified: bool = False) -> None:
        """Make `document` the open one (opened from `path`, its models admitted by `open`; or recovered from this
        app's own autosave when `modified`, whose model folders are scanned again while it is open)."""
        if modified:
            self.models.add_folders(ref.folder for ref in document.models if ref.folder)
        self.models.refresh()
        request = document.request
        self._reset(document.copy(), path)
        if request is None:
            self.start()
        else:
            self.apply(request)
        self.undo.set_clean()
        if modified:
            self.undo.reset_clean()
        self.opened()

    def _reset(self, document: Document, path: Path | None) -> None:
        """Forget the open document's undo steps; `document` (its request applied later, so that it renders)
        becomes the open one."""
        self.undo.clear()
        self.document = document
        self.document.request = None
        self.path = path
        self._history_index = -1
        self.entry = None

    def save(self, path: str | Path | None = None) -> bool:
        """Save to `path` (default: where it was opened from or last saved); the saved state is clean."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("an untitled document needs a path")
        try:
            self.path = save_document(self.document, target)
        except StudioError as exc:
            self.message(ERROR, f"Cannot save {target.name}", str(exc))
            return False
        self.undo.set_clean()
        self.document_changed()
        self.message(INFO, f"Saved {self.path.name}", str(self.path))
        return True

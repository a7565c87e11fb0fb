"""The session: the open document, its undo stack, the installed models and the engine bridge. Panels take a
Session in their constructor, read it, call its methods, and listen to its signals; none of them talks to another.

Every change of the current request goes through the undo stack (`set_request`), and every applied request is sent
to the engine's preview lane. Nothing here runs torch: the engine does, on its worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoStack

from studio.errors import StudioError
from studio.export import AUDIO_FORMATS, read_any_request, read_sound, save_audio
from studio.export.audio import check_sound
from studio.engine.animate import render_frame
from studio.export.atomic import check_writable_folder
from studio.export.grid import axis_labels, grid_request, grid_title, labelled_grid, parse_axis
from studio.export.image import FORMATS, read_glyph_strip, read_picture, save_image
from studio.steps import Output, Progress
from studio.io.images import decode_init_image, encode_init_image
from studio.latent.interp import interpolate
from studio.params import Capability
from studio.request import MAX_SEED
from studio.library import DEFAULT_MODEL_ID, PackageEntry, default_roots, is_foreign, scan
from studio.paths import user_data_dir
from studio.project import (Document, HistoryEntry, ModelRef, SavedLatent, load_document, save_document, utc_now)
from studio.project.timeline import AudioMapping, Keyframe, Timeline, frames_of, sound_of
from studio.request import RenderRequest
from studio.ui.bridge import EngineBridge
from studio.ui.commands import ChangeLatents, SetRequest, SetTimeline
from studio.ui.images import output_thumbnail

log = logging.getLogger(__name__)

SEED_MODES = ("fixed", "increment", "random")
HISTORY_SETTLE_MS = 150  # a render becomes a history entry once no newer one arrived for this long
INFO, WARNING, ERROR = "info", "warning", "error"
DEFAULT_STRENGTH = 0.6  # image-to-image: how much of a newly set init image is redrawn
INIT_SOURCES_LIMIT = 32  # original init pictures remembered for re-fitting (by the request text they produced)
INIT_SOURCE_MAX_SIDE = 1024  # originals are shrunk to this (re-fitting runs on the GUI thread at typing speed)


class Session(QObject):
    request_changed = Signal(object)  # RenderRequest | None
    model_changed = Signal(object)  # PackageEntry | None: the current request's model
    models_changed = Signal()  # the list of installed packages changed
    latents_changed = Signal()
    history_changed = Signal()
    document_changed = Signal()  # path or modified state (the window title)
    image_changed = Signal(object)  # np.ndarray: the image to show (per-step frames and finished renders)
    sound_changed = Signal(object)  # Output: the sound to show and play (finished renders of audio models)
    variations_changed = Signal()  # the variations grid got a new tile, or was cleared
    timeline_changed = Signal()  # the document's timeline changed (keyframes, timing, audio, mappings)
    rendered = Signal(object, float, object)  # request, seconds, info of a finished preview
    message = Signal(str, str, str)  # level, text, detail
    seed_mode_changed = Signal(str)

    def __init__(self, engine, roots: Iterable[str | Path] | None = None, parent: QObject | None = None,
                 rng: random.Random | None = None):
        super().__init__(parent)
        self.bridge = EngineBridge(engine, self)
        self.undo = QUndoStack(self)
        self.document = Document()
        self.path: Path | None = None
        self.roots = list(roots) if roots is not None else None
        self.extra_folders: list[Path] = []
        self.entries: list[PackageEntry] = []
        self.entry: PackageEntry | None = None
        self.last_output: Output | None = None  # the newest finished render of the current request
        self.last_request: RenderRequest | None = None
        self.last_info: dict = {}
        self.last_sound: tuple[RenderRequest, Output] | None = None  # the newest sound a model made (for timelines)
        self.seed_mode = "fixed"
        self._rng = rng or random.Random()
        self._history_index = -1  # undo index of the newest history entry (one entry per undo step)
        self.revision = 0  # counts every change of the document, saved or not (autosave writes when it moves)
        # History entries (with their PNG thumbnails) are made once renders settle, not for every frame of a drag:
        # that work would otherwise land on the GUI thread at the frame rate.
        self._history_timer = QTimer(self)
        self._history_timer.setSingleShot(True)
        self._history_timer.setInterval(HISTORY_SETTLE_MS)
        self._history_timer.timeout.connect(self._commit_history)
        self._pending_history: tuple[RenderRequest, Output, float] | None = None
        self.variations: list[tuple[RenderRequest, Output]] = []  # the variations grid: each tile's request and output
        self._variation_tasks: list = []
        # init image (base64 PNG in a request) → the original picture it was fitted from, so that a new prompt
        # re-fits the original rather than a resized copy (pictures stay here: the request holds only the fitted one)
        self._init_sources: dict[str, np.ndarray] = {}
        self.undo.cleanChanged.connect(self._on_undo_index_changed)
        self.undo.indexChanged.connect(self._on_undo_index_changed)
        self.bridge.frame.connect(self._on_frame)
        self.bridge.rendered.connect(self._on_rendered)
        self.bridge.failed.connect(self._on_failed)

    # --- models -------------------------------------------------------------------------------------------------
    def refresh_models(self) -> None:
        roots = default_roots() if self.roots is None else [Path(r) for r in self.roots]
        self.entries = scan([*roots, *self.extra_folders])
        for entry in self.entries:
            if entry.ok:
                self.bridge.engine.add_package(entry)
        if self.document.request is not None:
            self.entry = self.entry_for(self.document.request.model_id)
        self.models_changed.emit()

    def entry_for(self, model_id: str) -> PackageEntry | None:
        found = [e for e in self.entries if e.id == model_id]
        ok = [e for e in found if e.ok]
        return (ok or found or [None])[0]

    def add_model_folder(self, folder: str | Path) -> list[PackageEntry]:
        """Add the packages in `folder` (a package, a folder of packages, a diffusers pipeline folder or a Stable
        Diffusion .safetensors file). Reports what it found."""
        folder = Path(folder)
        usable = folder.is_dir() or (folder.is_file() and is_foreign(folder))
        new = usable and folder not in self.extra_folders
        if new:
            self.extra_folders.append(folder)
        if usable:
            self.refresh_models()  # also picks up packages added to a folder opened before
        key = folder.resolve()
        added = [e for e in self.entries if key in (e.folder.resolve(), e.folder.resolve().parent)]
        if not added:
            if new:
                self.extra_folders.remove(folder)
            self.message.emit(ERROR, f"No model in {folder}",
                              "A model package is a folder with model.toml and weights.safetensors; Stable "
                              "Diffusion opens as a diffusers pipeline folder or an SD 1.x .safetensors file.")
            return []
        bad = [e for e in added if not e.ok]
        good = [e for e in added if e.ok]
        if good:
            self.message.emit(INFO, f"Added {', '.join(e.id for e in good)} from {folder}", "")
        for entry in bad:
            self.message.emit(ERROR, f"Model {entry.id} cannot be used", str(entry.error))
        return added

    def default_request(self, entry: PackageEntry, seed: int | None = None) -> RenderRequest:
        seed = self.document.request.seed if seed is None and self.document.request else (seed or 0)
        return entry.default_request(seed)

    def use_model(self, model_id: str) -> bool:
        entry = self.entry_for(model_id)
        if entry is None or not entry.ok:
            why = str(entry.error) if entry is not None else "it is not installed"
            self.message.emit(ERROR, f"Cannot use model {model_id}", why)
            return False
        if self.document.request is not None and self.document.request.model_id == model_id:
            return True
        self.set_request(self.default_request(entry), f"Use model {entry.manifest.name}")
        return True

    def start(self, model_id: str | None = None) -> None:
        """Open a fresh document on `model_id` (default: the shipped default model, else the first usable one)."""
        if not self.entries:
            self.refresh_models()
        usable = [e for e in self.entries if e.ok]
        entry = self.entry_for(model_id or DEFAULT_MODEL_ID)
        if entry is None or not entry.ok:
            entry = usable[0] if usable else None
        if entry is None:
            self.message.emit(WARNING, "No usable model is installed",
                              "Open a model folder (File → Open Model Folder…) or drop one on the window.")
            self._apply_request(None)
            return
        self._apply_request(self.default_request(entry, seed=0))

    # --- the request ----------------------------------------------------------------------------------------------
    @property
    def request(self) -> RenderRequest | None:
        return self.document.request

    def set_request(self, request: RenderRequest, text: str, merge: str | None = None) -> None:
        """Make `request` current as one undoable step (`merge`: a key that folds a gesture into one step)."""
        old = self.document.request
        request = self._refit_init_image(old, request)
        if request == old:
            return
        self.undo.push(SetRequest(self, old, request, text, merge))

    def set_param(self, name: str, value, text: str, merge: str | None = None) -> None:
        """Set param `name` of the current request (None: unset, the family's default applies) as one step."""
        if self.request is None:
            return
        try:
            request = self.request.with_param(name, value)
            if self.entry is not None and self.entry.parameters.find(name) is not None:
                request = self.entry.parameters.check(request)
        except StudioError as exc:
            self.message.emit(ERROR, f"{text}: {exc.problem}", str(exc))
            return
        self.set_request(request, text, merge)

    def change(self, text: str, merge: str | None = None, **fields) -> None:
        if self.request is None:
            return
        try:
            request = self.request.with_(**fields)
        except StudioError as exc:
            self.message.emit(ERROR, f"{text}: {exc.problem}", str(exc))
            return
        self.set_request(request, text, merge)

    def rerender(self) -> None:
        if self.request is not None:
            self.bridge.preview(self.request)

    def _apply_request(self, request: RenderRequest | None) -> None:
        """Called by the undo commands (and on load): make `request` current and render it."""
        previous = self.document.request
        self.document.request = request
        self.revision += 1
        if request is None or previous is None or request.model_id != previous.model_id or self.entry is None:
            self.entry = self.entry_for(request.model_id) if request is not None else None
            self.model_changed.emit(self.entry)
        self.request_changed.emit(request)
        if request is not None:
            if self.entry is None:
                self.message.emit(ERROR, f"Model {request.model_id!r} is not installed",
                                  "Open its folder (File → Open Model Folder…) to render this request.")
            else:
                self.bridge.preview(request)

    # --- seeds ----------------------------------------------------------------------------------------------------
    def set_seed_mode(self, mode: str) -> None:
        if mode not in SEED_MODES:
            raise ValueError(f"seed mode must be one of {SEED_MODES}")
        if mode != self.seed_mode:
            self.seed_mode = mode
            self.seed_mode_changed.emit(mode)

    def random_seed(self) -> None:
        if self.request is not None:
            self.change("Random seed", seed=self._rng.randrange(MAX_SEED + 1), latent=None)

    def next_seed(self) -> None:
        """Advance the seed by the seed mode (after an export, or on "Next"): fixed keeps it."""
        if self.request is None or self.seed_mode == "fixed":
            return
        if self.seed_mode == "increment":
            self.change("Next seed", seed=(self.request.seed + 1) % (MAX_SEED + 1), latent=None)
        else:
            self.random_seed()

    # --- render results -------------------------------------------------------------------------------------------
    def _on_frame(self, request: RenderRequest, output: Output) -> None:
        if output.kind == "image":
            self.image_changed.emit(output.data)

    def _on_rendered(self, request: RenderRequest, output: Output, seconds: float, info: dict) -> None:
        self.last_output, self.last_request, self.last_info = output, request, info
        if output.kind == "image":
            self.image_changed.emit(output.data)
        elif output.kind == "audio":
            self.last_sound = (request.with_(model_hash=info.get("model_sha256", request.model_hash)), output)
            self.sound_changed.emit(output)
        self._note_model(request, info)
        if request == self.request:  # not a timeline frame being scrubbed
            self._pending_history = (request, output, seconds)
            self._history_timer.start()
        self.rendered.emit(request, seconds, info)

    def _on_failed(self, request: RenderRequest, text: str, detail: str) -> None:
        self._reporter("Render failed")(text, detail)

    def _reporter(self, what: str) -> Callable[[str, str], None]:
        """An error callback for a task: "<what>: <text>" in the message area, the detail behind it."""
        return lambda text, detail: self.message.emit(ERROR, f"{what}: {text}", detail or text)

    def _note_model(self, request: RenderRequest, info: dict) -> None:
        sha = info.get("model_sha256", "")
        refs = [r for r in self.document.models if r.id != request.model_id]
        folder = str(self.entry.folder) if self.entry is not None and any(
            self.entry.folder == f or f in self.entry.folder.parents for f in self.extra_folders) else ""
        self.document.models = [*refs, ModelRef(request.model_id, sha, info.get("model_name", ""), folder)]

    def _commit_history(self) -> None:
        if self._pending_history is not None:
            pending, self._pending_history = self._pending_history, None
            self._add_history(*pending)

    def flush_history(self) -> None:
        """Record the newest render in the history now (before saving, say)."""
        self._history_timer.stop()
        self._commit_history()

    def _add_history(self, request: RenderRequest, output: Output, seconds: float) -> None:
        """One history entry per undo step: renders during one gesture replace each other."""
        entry = HistoryEntry(request, round(seconds, 4), utc_now(), output_thumbnail(output))
        history = self.document.history
        if history and (self._history_index == self.undo.index() or history[-1].request == request):
            history[-1] = entry
        else:
            self.document.add_history(entry)
        self._history_index = self.undo.index()
        self.revision += 1
        self.history_changed.emit()

    def restore_history(self, index: int) -> None:
        entry = self.document.history[index]
        self.set_request(entry.request, "Restore render")

    def _on_undo_index_changed(self, _value) -> None:
        self.document_changed.emit()

    # --- latent library -------------------------------------------------------------------------------------------
    def save_latent(self, name: str) -> None:
        """Store the current latent (its values, computed on the worker) in the document's library."""
        request = self.request
        if request is None:
            return
        name = name.strip() or f"seed {request.seed}"
        thumb = (output_thumbnail(self.last_output)
                 if self.last_output is not None and self.last_request == request else b"")

        def done(output: Output) -> None:
            entry = SavedLatent(name, request.model_id, self.last_info.get("model_sha256", request.model_hash),
                                tuple(float(v) for v in output.data.reshape(-1)), thumb)
            index = len(self.document.latents)
            self.undo.push(ChangeLatents(self, entry, index, True, f"Save latent {name!r}"))

        self.bridge.run(request, f"Save latent {name!r}", on_done=done, on_error=self._reporter("Cannot save the latent"),
                        kind="latent")

    def remove_latent(self, index: int) -> None:
        entry = self.document.latents[index]
        self.undo.push(ChangeLatents(self, entry, index, False, f"Remove latent {entry.name!r}"))

    def _insert_latent(self, index: int, entry: SavedLatent) -> None:
        self.document.latents.insert(index, entry)
        self.revision += 1
        self.latents_changed.emit()

    def _remove_latent(self, index: int, entry: SavedLatent) -> None:
        if 0 <= index < len(self.document.latents) and self.document.latents[index] == entry:
            del self.document.latents[index]
        self.revision += 1
        self.latents_changed.emit()

    def use_latent(self, index: int) -> None:
        entry = self.document.latents[index]
        if not self._latent_fits(entry):
            return
        self.change(f"Use latent {entry.name!r}", latent=entry.latent, params=self._render_only_params())

    def _render_only_params(self, request: RenderRequest | None = None) -> dict:
        """The request's params that a computed latent does not hold (kept when such a latent is used): the
        condition, sampler settings, noise … (the specs say which)."""
        request = request or self.request
        if request is None:
            return {}
        entry = self.entry_for(request.model_id)
        return entry.parameters.render_only(request) if entry is not None else dict(request.params)

    def interpolate_latents(self, a: int, b: int, t: float, mode: str = "slerp", merge: str | None = None) -> None:
        first, second = self.document.latents[a], self.document.latents[b]
        if not (self._latent_fits(first) and self._latent_fits(second)):
            return
        try:
            values = interpolate(first.latent, second.latent, t, mode)
        except ValueError as exc:
            self.message.emit(ERROR, f"Cannot interpolate {first.name!r} and {second.name!r}", str(exc))
            return
        self.change(f"Interpolate {first.name!r} → {second.name!r}", merge=merge, latent=values,
                    params=self._render_only_params())

    def _latent_fits(self, entry: SavedLatent) -> bool:
        request = self.request
        if request is None:
            return False
        if entry.model_id != request.model_id:
            self.message.emit(WARNING, f"Latent {entry.name!r} belongs to model {entry.model_id}",
                              f"The current model is {request.model_id}; switch to {entry.model_id} to use it.")
            return False
        return True

    # --- encoding -------------------------------------------------------------------------------------------------
    @property
    def projects(self) -> bool:
        """Whether the current model's encoder is a projection by optimisation (long: progress and Cancel)."""
        entry = self.entry
        return entry is not None and Capability.PROJECT in entry.capabilities

    def encode_image(self, path: str | Path, chars: str = "") -> None:
        """Encode an image (for text models: a strip with one cell per character of `chars`) into the latent. For
        the GAN this is a projection: it runs for a while on the worker, reports progress and can be cancelled."""
        request, entry = self.request, self.entry
        if request is None or entry is None or entry.manifest is None:
            return
        if Capability.ENCODE not in entry.capabilities:
            self.message.emit(ERROR, f"{entry.manifest.name} cannot encode images",
                              f"The {entry.manifest.family} family has no encoder.")
            return
        try:
            if entry.manifest.conditions.kind in ("text", "class"):
                images, labels = read_glyph_strip(path, chars, entry.manifest.output["width"])
            else:
                images, labels = read_glyph_strip(path, "x", entry.manifest.output["width"])[0], None
        except StudioError as exc:
            self.message.emit(ERROR, f"Cannot encode {Path(path).name}", str(exc))
            return
        name = Path(path).name
        verb = "Project" if self.projects else "Encode"

        def done(output: Output) -> None:
            self.change(f"{verb} {name}", latent=tuple(float(v) for v in output.data.reshape(-1)),
                        params=self._render_only_params())
            self.message.emit(INFO, f"{verb}ed {name}: its style is now the latent", "")

        def cancelled() -> None:
            self.message.emit(INFO, f"{verb} {name} was cancelled: the latent is unchanged", "")

        self.bridge.run(request, f"{verb} {name}", on_done=done, kind="encode", images=images, labels=labels,
                        on_error=self._reporter(f"Cannot {verb.lower()} {name}"), on_cancelled=cancelled)

    def encode_sound(self, path: str | Path) -> None:
        """Encode a sound file (any rate: resampled to the model's) as the current class into the latent. Decoding
        and resampling run on the worker with the encoding, not on the GUI thread."""
        request, entry = self.request, self.entry
        if request is None or entry is None or entry.manifest is None:
            return
        name = Path(path).name
        if entry.manifest.output.kind != "audio" or Capability.ENCODE not in entry.capabilities:
            self.message.emit(ERROR, f"Cannot encode {name}", f"{entry.manifest.name} does not encode sounds.")
            return
        out = entry.manifest.output
        cond = entry.manifest.conditions
        label = request.param("label") or cond.default or cond.labels[0]

        def work(model, _request):
            yield Progress(0, 1, f"reading {name}")
            wave, info = read_sound(path, out["sample_rate"], max_seconds=2 * out["length"] / out["sample_rate"] + 1)
            z = model.family.encode(model, wave, [label])
            return Output("latent", z.reshape(-1).float().cpu().numpy(),
                          {"resampled_from": info["sample_rate"] if info["resampled"] else None})

        def done(output: Output) -> None:
            rate = output.info.get("resampled_from")
            note = f" (resampled from {rate} Hz)" if rate else ""
            self.change(f"Encode {name}", latent=tuple(float(v) for v in output.data.reshape(-1)),
                        params=self._render_only_params())
            self.message.emit(INFO, f"Encoded {name} as a {label}{note}: its timbre is now the latent", "")

        self.bridge.run_work(request, f"Encode {name}", work, on_done=done,
                             on_error=self._reporter(f"Cannot encode {name}"))

    # --- image to image -------------------------------------------------------------------------------------------
    def set_init_image(self, source: str | Path | np.ndarray, name: str = "") -> bool:
        """Start image-to-image from a picture (a file, or an array): it is fitted to the sheet the current prompt
        draws and stored in the request (one undoable step); strength defaults to DEFAULT_STRENGTH."""
        request, entry = self.request, self.entry
        if request is None or entry is None or entry.manifest is None:
            return False
        name = name or (Path(source).name if not isinstance(source, np.ndarray) else "image")
        if Capability.IMG2IMG not in entry.capabilities:
            self.message.emit(ERROR, f"{entry.manifest.name} cannot start from an image",
                              f"The {entry.manifest.family} family has no image-to-image.")
            return False
        try:
            picture = read_picture(source, INIT_SOURCE_MAX_SIDE)
        except StudioError as exc:
            self.message.emit(ERROR, f"Cannot use {name} as the init image", str(exc))
            return False
        strength = request.param("strength", DEFAULT_STRENGTH)
        self.set_request(request.with_params({"init_image": self._fit_init_image(request, picture),
                                              "strength": strength}), f"Init image {name}")
        return True

    def clear_init_image(self) -> None:
        request = self.request
        if request is not None and ("init_image" in request.params or "strength" in request.params):
            self.set_request(request.with_params({"init_image": None, "strength": None}), "Clear init image")

    def _fit_init_image(self, request: RenderRequest, picture: np.ndarray, entry: PackageEntry | None = None) -> str:
        entry = entry or self.entry
        fitted = entry.family.init_picture_for(entry.manifest, request, picture)
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
        entry = self.entry_for(request.model_id)
        if entry is None or entry.manifest is None or Capability.IMG2IMG not in entry.capabilities:
            return request
        try:
            current = decode_init_image(init)
        except StudioError:
            return request  # the family reports what is wrong with it
        width, height = entry.family.init_size(entry.manifest, request)
        if current.shape[:2] == (height, width):
            return request
        picture = self._init_sources.get(init, current)
        return request.with_param("init_image", self._fit_init_image(request, picture, entry))

    # --- files ----------------------------------------------------------------------------------------------------
    def restore_from_file(self, path: str | Path) -> bool:
        """Restore the exact request stored in an image or a sound this app exported."""
        try:
            request = read_any_request(path)
        except StudioError as exc:
            self.message.emit(ERROR, f"Cannot restore from {Path(path).name}", str(exc))
            return False
        if self.entry_for(request.model_id) is None:
            self.message.emit(ERROR, f"{Path(path).name} was made with model {request.model_id!r}, which is not "
                                     "installed", "Open its model folder first, then drop the file again.")
            return False
        self.set_request(request, f"Restore {Path(path).name}")
        self.message.emit(INFO, f"Restored the request from {Path(path).name}", "")
        return True

    @property
    def output_kind(self) -> str:
        """What the current model makes: "image" or "audio" ("image" when no model is open)."""
        entry = self.entry
        return entry.manifest.output.kind if entry is not None and entry.manifest is not None else "image"

    def export(self, path: str | Path, subtype: str | None = None,
               on_done: Callable[[Path], None] | None = None) -> None:
        """Render the current request on the export lane and write it with the request inside: an image (PNG, JPEG,
        WebP) or a sound (WAV, FLAC, OGG, MP3; `subtype` picks WAV's or FLAC's sample format)."""
        request = self.request
        if request is None:
            return
        path = Path(path)
        kind = self.output_kind
        formats = AUDIO_FORMATS if kind == "audio" else FORMATS
        if path.suffix.lower() not in formats:
            self.message.emit(ERROR, f"Cannot export {path.name}",
                              f"This model makes {'sounds' if kind == 'audio' else 'images'}: use a "
                              f"{', '.join(sorted(formats))} name.")
            return
        name = self.entry.manifest.name if self.entry is not None and self.entry.manifest else ""

        def write(output: Output) -> Output:  # on the worker: file I/O stays off the GUI thread
            sha = output.info.get("model_sha256") or request.model_hash
            stamped = request.with_(model_hash=sha) if sha else request
            if output.kind == "audio" and kind == "audio":
                save_audio(path, output.data, int(output.info["sample_rate"]), stamped, model_name=name,
                           model_sha256=sha, subtype=subtype)
            elif output.kind == "image" and kind == "image":
                save_image(path, output.data, stamped, model_name=name, model_sha256=sha)
            else:
                raise StudioError(f"this model made {output.kind}, which cannot be written as {path.suffix}", path)
            return output

        def done(_output: Output) -> None:
            self.message.emit(INFO, f"Exported {path.name}", str(path))
            self.next_seed()
            if on_done is not None:
                on_done(path)

        self.bridge.run(request, f"Export {path.name}", on_done=done, then=write,
                        on_error=self._reporter("Export failed"))

    # --- grids --------------------------------------------------------------------------------------------------
    def export_grid(self, path: str | Path, rows: str, cols: str) -> None:
        """An X/Y plot of the current request over two parameters ("seed=1,2,3", "d0=-2,0,2"): every cell rendered
        on the export lane, laid out with labels and written as an image with the request inside."""
        request, entry = self.request, self.entry
        if request is None or entry is None or entry.manifest is None:
            return
        path = Path(path)
        try:
            if entry.manifest.output.kind != "image":
                raise ValueError(f"{entry.manifest.name} makes {entry.manifest.output.kind}: a grid is made of images")
            if path.suffix.lower() not in FORMATS:
                raise ValueError("use a .png, .jpg or .webp name")
            table = entry.parameters
            axes = []
            for text in (rows, cols):
                name, raw = parse_axis(text)
                axes.append((name, [table.parse_setting(name, value)[1] for value in raw]))
            (row_name, row_values), (col_name, col_values) = axes
            cells = [[table.check(grid_request(request, (row_name, r), (col_name, c))) for c in col_values]
                     for r in row_values]
            check_writable_folder(path)
        except (ValueError, StudioError) as exc:
            self.message.emit(ERROR, f"Cannot make the grid {path.name}", str(exc))
            return
        name = entry.manifest.name
        total = len(row_values) * len(col_values)

        def work(model, _request):  # on the worker: render, lay out, write
            images = []
            for r, row in enumerate(cells):
                images.append([])
                for cell in row:
                    images[-1].append(render_frame(model, cell))
                    yield Progress(r * len(row) + len(images[-1]), total, "cell")
            grid = labelled_grid(images, axis_labels(row_name, row_values), axis_labels(col_name, col_values),
                                 title=grid_title(name, row_name, col_name))
            save_image(path, grid, request, model_name=name, model_sha256=model.sha256)
            return Output("image", grid, {"path": str(path)})

        def done(_output: Output) -> None:
            self.message.emit(INFO, f"Exported the grid {path.name} ({len(row_values)} × {len(col_values)})",
                              str(path))

        self.bridge.run_work(request, f"Grid {path.name}", work, on_done=done,
                             on_error=self._reporter("Grid export failed"))

    # --- variations -----------------------------------------------------------------------------------------------
    def render_variations(self, count: int = 6, strength: float = 0.35) -> None:
        """Render `count` variations of the current request (fresh variation seeds at `strength`) on the export lane,
        as tiles of the variations grid; `use_variation` continues from one."""
        request = self.request
        if request is None:
            return
        self.clear_variations()
        tiles = self.variations
        for _ in range(count):
            varied = request.with_params({"variation_seed": self._rng.randrange(MAX_SEED + 1),
                                          "variation_strength": float(strength)})

            def done(output: Output, varied=varied) -> None:
                if tiles is self.variations:  # not a grid that was cleared or replaced since
                    tiles.append((varied, output))
                    self.variations_changed.emit()

            self._variation_tasks.append(self.bridge.run(varied, "Variations", on_done=done,
                                                         on_error=self._reporter("A variation failed")))

    def clear_variations(self) -> None:
        """Empty the grid and stop the variations still rendering."""
        for task in self._variation_tasks:
            task.job.cancel()
        self._variation_tasks = []
        self.variations = []
        self.variations_changed.emit()

    def use_variation(self, index: int) -> None:
        """Continue from variation `index`: its latent (computed on the worker) becomes the current one."""
        varied, _ = self.variations[index]

        def done(output: Output) -> None:
            self.change("Use variation", latent=tuple(float(v) for v in output.data.reshape(-1)),
                        params=self._render_only_params(varied))

        self.bridge.run(varied, "Use variation", on_done=done, on_error=self._reporter("Cannot use the variation"),
                        kind="latent")

    # --- the timeline ---------------------------------------------------------------------------------------------
    @property
    def timeline(self) -> Timeline:
        return self.document.timeline

    def set_timeline(self, timeline: Timeline, text: str, merge: str | None = None) -> None:
        """Make `timeline` the document's, as one undoable step."""
        if timeline != self.document.timeline:
            self.undo.push(SetTimeline(self, self.document.timeline, timeline, text, merge))

    def _apply_timeline(self, timeline: Timeline) -> None:
        self.document.timeline = timeline
        self.revision += 1
        self.timeline_changed.emit()

    def _timeline_with(self, text: str, merge: str | None = None, **fields) -> None:
        try:
            timeline = dataclasses.replace(self.timeline, **fields)
        except StudioError as exc:
            self.message.emit(ERROR, f"{text}: {exc.problem}", str(exc))
            return
        self.set_timeline(timeline, text, merge)

    def add_keyframe(self, index: int | None = None) -> None:
        """Add the current request as a keyframe (at `index`, default the end); its latent values are computed on
        the worker first, so a keyframe made from a seed holds the exact latent it showed."""
        request = self.request
        if request is None:
            return
        keys = self.timeline.keyframes
        if keys and keys[0].request.model_id != request.model_id:
            self.message.emit(ERROR, "Cannot add a keyframe of another model",
                              f"This timeline animates {keys[0].request.model_id}; switch back or clear it.")
            return

        def done(output: Output) -> None:
            values = tuple(float(v) for v in output.data.reshape(-1))
            key = Keyframe(request.with_(latent=values, params=self._render_only_params(request)),
                           name=f"seed {request.seed}" if request.latent is None else "")
            where = len(self.timeline.keyframes) if index is None else index
            keyframes = list(self.timeline.keyframes)
            keyframes.insert(where, key)
            self._timeline_with("Add keyframe", keyframes=tuple(keyframes))

        self.bridge.run(request, "Add keyframe", on_done=done, kind="latent",
                        on_error=self._reporter("Cannot add the keyframe"))

    def add_keyframe_from_latent(self, latent_index: int) -> None:
        """Add a saved latent of the library as a keyframe (with the current request's other settings)."""
        entry, request = self.document.latents[latent_index], self.request
        if request is None or not self._latent_fits(entry):
            return
        key = Keyframe(request.with_(latent=entry.latent, params=self._render_only_params()), name=entry.name)
        self._timeline_with(f"Add keyframe {entry.name!r}", keyframes=(*self.timeline.keyframes, key))

    def remove_keyframe(self, index: int) -> None:
        keyframes = list(self.timeline.keyframes)
        del keyframes[index]
        self._timeline_with("Remove keyframe", keyframes=tuple(keyframes))

    def move_keyframe(self, index: int, to: int) -> None:
        keyframes = list(self.timeline.keyframes)
        keyframes.insert(to, keyframes.pop(index))
        self._timeline_with("Move keyframe", keyframes=tuple(keyframes))

    def edit_keyframe(self, index: int, text: str = "Edit keyframe", merge: str | None = None, **fields) -> None:
        """Change a keyframe's duration, interpolation, easing or name."""
        self._edit_item("keyframes", index, text, merge, fields)

    def _edit_item(self, name: str, index: int, text: str, merge: str | None, fields: dict) -> None:
        """Replace item `index` of the timeline's `name` (keyframes, mappings) by a copy with `fields` changed."""
        items = list(getattr(self.timeline, name))
        try:
            items[index] = dataclasses.replace(items[index], **fields)
        except StudioError as exc:
            self.message.emit(ERROR, f"{text}: {exc.problem}", str(exc))
            return
        self._timeline_with(text, merge, **{name: tuple(items)})

    def edit_timeline(self, text: str = "Edit timeline", merge: str | None = None, **fields) -> None:
        """Change the timeline's fps, loop, audio or mappings."""
        self._timeline_with(text, merge, **fields)

    def set_timeline_audio(self, path: str | Path) -> bool:
        """Use a sound file for the timeline (its track in the video, the source of the audio mappings)."""
        try:
            check_sound(path)  # readable and not all silent? say so now (read only until it is heard)
        except StudioError as exc:
            self.message.emit(ERROR, f"Cannot use {Path(path).name} as the timeline's sound", str(exc))
            return False
        self._timeline_with(f"Sound {Path(path).name}", audio=str(path))
        return True

    def use_last_sound(self) -> bool:
        """Put the newest sound a model made on the timeline: it is written (with its request) as a WAV in the user
        data folder's `sounds/` and becomes the timeline's sound."""
        if self.last_sound is None:
            self.message.emit(WARNING, "No sound made yet", "Render a sound with a sound model first.")
            return False
        request, output = self.last_sound
        folder = user_data_dir() / "sounds"
        path = folder / f"{request.model_id}-{request.param('label') or 'sound'}-{request.seed}.wav"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_audio(path, output.data, int(output.info["sample_rate"]), request, model_sha256=request.model_hash)
        except (OSError, StudioError) as exc:
            self.message.emit(ERROR, "Cannot keep the sound for the timeline", str(exc))
            return False
        return self.set_timeline_audio(path)

    def add_mapping(self, envelope: str = "onsets", target: str = "d0") -> None:
        self._timeline_with("Add audio mapping",
                            mappings=(*self.timeline.mappings, AudioMapping(envelope, target)))

    def edit_mapping(self, index: int, text: str = "Edit audio mapping", merge: str | None = None, **fields) -> None:
        """Change a mapping's envelope, target, gain, attack or release."""
        self._edit_item("mappings", index, text, merge, fields)

    def remove_mapping(self, index: int) -> None:
        mappings = list(self.timeline.mappings)
        del mappings[index]
        self._timeline_with("Remove audio mapping", mappings=tuple(mappings))

    def _timeline_defaults(self):
        """The defaults of the timeline's model's params (what a param missing on a keyframe counts as)."""
        keys = self.timeline.keyframes
        entry = self.entry_for(keys[0].request.model_id) if keys else None
        return entry.parameters.default if entry is not None and entry.ok else None

    def preview_frame(self, time: float) -> None:
        """Show the timeline's frame at `time` seconds (the scrubber): rendered on the preview lane, the document's
        request unchanged."""
        try:
            frame = self.timeline.request_at(time, self._timeline_defaults())
        except StudioError as exc:
            self.message.emit(WARNING, "Nothing to scrub", exc.problem)
            return
        self.bridge.preview(frame)

    def export_video(self, path: str | Path, size: tuple[int, int] | None = None,
                     on_done: Callable[[Path], None] | None = None) -> None:
        """Render every frame of the timeline on the export lane and encode it as it goes (MP4, WebM, GIF, or a
        folder of PNGs), with the timeline's sound and the document inside; progress and Cancel in the status bar;
        nothing partial is left on cancel or error."""
        path = Path(path)
        folder = self.path.parent if self.path is not None else None
        try:
            self.timeline.check_playable()
            sound = sound_of(self.timeline, folder)  # read once: the mappings' envelopes and the video's track
            frames = frames_of(self.timeline, folder, sound, self._timeline_defaults())
            audio = sound if path.suffix.lower() in (".mp4", ".webm") else None
        except StudioError as exc:
            self.message.emit(ERROR, f"Cannot export {path.name}", str(exc))
            return

        def done(_output: Output) -> None:
            self.message.emit(INFO, f"Exported {path.name} ({len(frames)} frames)", str(path))
            if on_done is not None:
                on_done(path)

        def cancelled() -> None:
            self.message.emit(INFO, f"Export of {path.name} was cancelled: nothing was written", "")

        try:  # the target is checked before anything renders
            self.bridge.run_animation(frames, path, self.timeline.fps, f"Export {path.name}", audio=audio,
                                      metadata=self.document.to_json(), size=size, on_done=done,
                                      on_error=self._reporter("Video export failed"), on_cancelled=cancelled)
        except (StudioError, ValueError) as exc:
            self.message.emit(ERROR, f"Cannot export {path.name}", str(exc))

    # --- documents ------------------------------------------------------------------------------------------------
    @property
    def modified(self) -> bool:
        return not self.undo.isClean()

    @property
    def display_name(self) -> str:
        return self.path.name if self.path is not None else "Untitled"

    def new_document(self, model_id: str | None = None) -> None:
        self._reset(Document(), None)
        self.start(model_id)
        self.undo.setClean()
        self._emit_all()

    def open_document(self, path: str | Path) -> bool:
        try:
            document = load_document(path)
        except StudioError as exc:
            self.message.emit(ERROR, f"Cannot open {Path(path).name}", str(exc))
            return False
        self.adopt_document(document, Path(path))
        return True

    def adopt_document(self, document: Document, path: Path | None, modified: bool = False) -> None:
        """Make `document` the open one (opened from `path`, or recovered from an autosave when `modified`)."""
        for ref in document.models:  # folders the document's models were opened from
            if ref.folder and Path(ref.folder).is_dir() and Path(ref.folder) not in self.extra_folders:
                self.extra_folders.append(Path(ref.folder))
        self.refresh_models()
        request = document.request
        self._reset(document.copy(), path)
        if request is None:
            self.start()
        else:
            self._apply_request(request)
        self.undo.setClean()
        if modified:
            self.undo.resetClean()
        self._emit_all()

    def _reset(self, document: Document, path: Path | None) -> None:
        """Forget the open document's undo steps, pending history and renders; `document` (its request applied
        later, so that it renders) becomes the open one."""
        self._history_timer.stop()
        self._pending_history = None
        self.undo.clear()
        self.document = document
        self.document.request = None
        self.path = path
        self._history_index = -1
        self.last_output = self.last_request = None
        self.entry = None
        self.clear_variations()

    def save(self, path: str | Path | None = None) -> bool:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("an untitled document needs a path")
        self.flush_history()
        try:
            self.path = save_document(self.document, target)
        except StudioError as exc:
            self.message.emit(ERROR, f"Cannot save {target.name}", str(exc))
            return False
        self.undo.setClean()
        self.document_changed.emit()
        self.message.emit(INFO, f"Saved {self.path.name}", str(self.path))
        return True

    def _emit_all(self) -> None:
        self.models_changed.emit()
        self.model_changed.emit(self.entry)
        self.request_changed.emit(self.request)
        self.latents_changed.emit()
        self.history_changed.emit()
        self.timeline_changed.emit()
        self.document_changed.emit()

    def shutdown(self) -> None:
        self.bridge.shutdown()

"""The session: what the panels and the main window bind to. Panels take a Session in their constructor, read it,
call its methods, and listen to its signals; none of them talks to another.

It is a facade over the Qt-free application core (studio.app) and thin Qt adapters, one per responsibility:

- models (`ModelsAdapter`): the installed models, handed to the engine;
- document and undo (`DocumentAdapter`, `UndoAdapter`): the request, seeds, history, latent library, file;
- tasks (`TasksAdapter`): previews and export-lane work (studio.engine.work) through the engine bridge;
- timeline (`TimelineAdapter`): keyframes, timing, sound and mappings.

The core calls plain callbacks; the adapters turn them into the signals below. Every change of the current request
is one step of the undo stack, and every applied request is sent to the engine's preview lane. Nothing here runs
torch: the engine does, on its worker thread.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
from PySide6.QtCore import QObject, Signal

from studio.app.document import DEFAULT_STRENGTH, SEED_MODES, OpenDocument
from studio.app.listeners import Listeners
from studio.app.models import ERROR, INFO, WARNING, FolderAsker, ModelLibrary
from studio.app.gallery import Gallery, GalleryWriter
from studio.app.queue import QueuedJob, RenderQueue, generate
from studio.app.strips import StripGuess
from studio.app.tasks import Tasks
from studio.app.timeline import TimelineEditor
from studio.errors import StudioError
from studio.export import OutputSize
from studio.library import PackageEntry
from studio.project import Document, SavedLatent
from studio.project.timeline import Timeline
from studio.request import RenderRequest
from studio.steps import Output
from studio.ui.bridge import EngineBridge
from studio.ui.images import output_thumbnail
from studio.ui.session.directions import DirectionsAdapter
from studio.ui.session.document import DocumentAdapter
from studio.ui.session.models import ModelsAdapter
from studio.ui.session.queue import QueueAdapter
from studio.ui.session.tasks import HISTORY_SETTLE_MS, TasksAdapter
from studio.ui.session.timeline import TimelineAdapter
from studio.ui.session.undo import UndoActions, UndoAdapter

if TYPE_CHECKING:
    from studio.engine.api import EngineAPI

log = logging.getLogger("studio.messages")  # every message shown also goes to the log file (Help → Show Log File)
_LOG_LEVELS = {INFO: logging.INFO, WARNING: logging.WARNING, ERROR: logging.ERROR}

__all__ = ["DEFAULT_STRENGTH", "ERROR", "HISTORY_SETTLE_MS", "INFO", "SEED_MODES", "Session", "UndoActions",
           "UndoAdapter", "WARNING"]


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
    gallery_changed = Signal()  # renders were added to the gallery index
    _indexed = Signal(str, list)  # (source, ids) from the gallery's writer thread, handled on this object's thread
    _index_failed = Signal(str, str)  # problem, detail: the same

    def __init__(self, engine: "EngineAPI", roots: Iterable[str | Path] | None = None, parent: QObject | None = None,
                 rng: random.Random | None = None):
        super().__init__(parent)
        self.bridge = EngineBridge(engine, self)
        # the core
        messages = Listeners()
        self.library = ModelLibrary(roots, messages)
        self.core = OpenDocument(self.library, rng)
        self.timeline_editor = TimelineEditor(self.core)
        self.tasks = Tasks(self.core, self.timeline_editor, self.bridge, thumbnail=output_thumbnail)
        self.render_queue = RenderQueue(self.bridge, message=messages)
        # its Qt adapters
        self.undo = UndoAdapter(self.core.undo, self)
        self.installed = ModelsAdapter(self.library, engine, self)
        self.documents = DocumentAdapter(self.core, self)
        self.results = TasksAdapter(self.tasks, self.core, self.bridge, self)
        self.timelines = TimelineAdapter(self.timeline_editor, self)
        self.queue = QueueAdapter(self.render_queue, self)
        # the model's direction names (studio.app.direction_sets): told of a new model before the panels are
        self.directions = DirectionsAdapter(self.core.undo, self.message.emit, self)
        self.documents.model_changed.connect(self.directions.use_model)
        self._gallery_failed = False
        self.projection_target: Path | None = None  # the newest image encoded or projected (compare can pin it)
        self.gallery: Gallery | None = None  # the index of finished renders (studio.app.gallery), opened on first use
        self._gallery_writer: GalleryWriter | None = None  # its writes, off the GUI thread
        self._indexed.connect(self._on_indexed)
        self._index_failed.connect(self._on_index_failed)
        self.render_queue.batch_done.connect(self._index_batch)
        self.tasks.files_written.connect(self._index_files)
        messages.connect(self.message.emit)
        self.message.connect(self._log_message)
        # a model chosen with use_model whose first render has not come back yet: (id, undo index, previous request)
        self._trying: tuple[str, int, RenderRequest] | None = None
        self.results.failure_handler = self._on_preview_failed
        self.bridge.rendered.connect(self._on_preview_rendered)
        for source, target in ((self.installed.changed, self.models_changed),
                               (self.documents.request_changed, self.request_changed),
                               (self.documents.model_changed, self.model_changed),
                               (self.documents.latents_changed, self.latents_changed),
                               (self.documents.history_changed, self.history_changed),
                               (self.documents.document_changed, self.document_changed),
                               (self.documents.seed_mode_changed, self.seed_mode_changed),
                               (self.documents.opened, self.models_changed),
                               (self.results.image_changed, self.image_changed),
                               (self.results.sound_changed, self.sound_changed),
                               (self.results.variations_changed, self.variations_changed),
                               (self.results.rendered, self.rendered),
                               (self.timelines.changed, self.timeline_changed)):
            source.connect(target)

    def _log_message(self, level: str, text: str, detail: str) -> None:
        """What the window says goes to the log file too, once per message (errors with their details)."""
        log.log(_LOG_LEVELS.get(level, logging.INFO), "message: %s%s", text, f" — {detail}" if detail else "")

    # --- models ---------------------------------------------------------------------------------------------------
    @property
    def entries(self) -> list[PackageEntry]:
        return self.library.entries

    @property
    def extra_folders(self) -> list[Path]:
        """The folders added this session (those the user opened are remembered in settings.toml)."""
        return self.library.extra_folders

    @property
    def roots(self) -> list[Path] | None:
        return self.library.roots

    def refresh_models(self) -> None:
        self.library.refresh()

    def entry_for(self, model_id: str) -> PackageEntry | None:
        return self.library.entry_for(model_id)

    def add_model_folder(self, folder: str | Path) -> list[PackageEntry]:
        """Add the packages in `folder` (a package, a folder of packages, a diffusers pipeline folder or a Stable
        Diffusion .safetensors file), remembered in settings.toml for the next start and the CLI."""
        return self.library.add_model_folder(folder)

    # --- the render queue -----------------------------------------------------------------------------------------
    def generate(self, count: int = 1, batch_size: int = 1, mode: str = "back") -> QueuedJob | None:
        """Queue the current request: `count` batches of `batch_size` over the seed mode's seeds (studio.app.queue)."""
        return generate(self.render_queue, self.core, count, batch_size, mode)

    def open_gallery(self) -> Gallery | None:
        """The gallery index in the user data folder; None (said once in the messages) when it cannot be opened."""
        if self.gallery is None and not self._gallery_failed:
            try:
                self.gallery = Gallery.open()
            except StudioError as exc:
                self._gallery_failed = True
                self.message.emit(ERROR, f"The gallery is off: {exc.problem}", str(exc))
            else:
                if self.gallery.set_aside is not None:
                    self.message.emit(WARNING, "The gallery index was damaged: a new one was started",
                                      f"The old one is kept as {self.gallery.set_aside}.")
        return self.gallery

    def _index_batch(self, job: QueuedJob, items: list) -> None:
        self._index_files("queue", [(path, request) for request, path in items],
                          "audio" if job.suffix == ".wav" else "image")

    def _index_files(self, source: str, files: list, kind: str) -> None:
        """Files a render wrote (queue, export, variation, grid) go into the gallery index, written on the gallery's
        own thread; gallery_changed follows once they are in."""
        if self.open_gallery() is None or self.gallery is None:
            return
        if self._gallery_writer is None:
            self._gallery_writer = GalleryWriter(self.gallery.folder, self._indexed.emit,
                                                 lambda exc: self._index_failed.emit(exc.problem, str(exc)))
        self._gallery_writer.add_many(files, source, kind=kind)

    def _on_indexed(self, _source: str, _ids: list) -> None:
        self.gallery_changed.emit()

    def _on_index_failed(self, problem: str, detail: str) -> None:
        self.message.emit(WARNING, f"A render was not added to the gallery: {problem}", detail)

    # --- the document ---------------------------------------------------------------------------------------------
    @property
    def document(self) -> Document:
        return self.core.document

    @property
    def request(self) -> RenderRequest | None:
        return self.core.request

    @property
    def entry(self) -> PackageEntry | None:
        return self.core.entry

    @property
    def path(self) -> Path | None:
        return self.core.path

    @property
    def revision(self) -> int:
        """Counts every change of the document, saved or not (autosave writes when it moves)."""
        return self.core.revision

    @property
    def seed_mode(self) -> str:
        return self.core.seed_mode

    @property
    def modified(self) -> bool:
        return self.core.modified

    @property
    def display_name(self) -> str:
        return self.core.display_name

    @property
    def output_kind(self) -> str:
        """What the current model makes: "image" or "audio" ("image" when no model is open)."""
        return self.core.output_kind

    @property
    def projects(self) -> bool:
        """Whether the current model's encoder is a projection by optimisation (long: progress and Cancel)."""
        return self.core.projects

    def default_request(self, entry: PackageEntry, seed: int | None = None) -> RenderRequest:
        return self.core.default_request(entry, seed)

    def use_model(self, model_id: str) -> bool:
        """Make `model_id` current (one undoable step). Its weights are loaded by the first render: when that fails
        (damaged weights: NaN values, a tensor of the wrong type …), the previous model is put back, the package is
        shown as invalid with the error, and one line says so."""
        previous = self.core.request
        ok = self.core.use_model(model_id)
        current = self.core.request
        if ok and previous is not None and current is not None and current is not previous \
                and current.model_id == model_id and previous.model_id != model_id:
            self._trying = (model_id, self.core.undo.index, previous)
        return ok

    def _on_preview_rendered(self, request: RenderRequest, *_: Any) -> None:
        if self._trying is not None and request.model_id == self._trying[0]:
            self._trying = None  # it loads: nothing to put back

    def _on_preview_failed(self, request: RenderRequest, text: str) -> bool:
        """The first render of a model just chosen failed: the model cannot be used. Put the previous request back
        (undoing the step when nothing was done since), mark the package invalid, say so in one line."""
        trying = self._trying
        if trying is None or request.model_id != trying[0]:
            return False
        self._trying = None
        model_id, index, previous = trying
        entry = self.library.entry_for(model_id)
        name = entry.manifest.name if entry is not None and entry.manifest is not None else model_id
        if self.core.request is not None and self.core.request.model_id == model_id:
            if self.core.undo.index == index and self.core.undo.can_undo:
                self.core.undo.undo()
            else:
                self.core.set_request(previous, f"Back from model {name}")
        self.library.mark_broken(model_id, text)
        self.message.emit(ERROR, f"Cannot use model {name}: {' '.join(text.split())}", text)
        return True

    def start(self, model_id: str | None = None) -> None:
        """Open a fresh document on `model_id` (default: the shipped default model, else the first usable one)."""
        self.core.start(model_id)

    def set_request(self, request: RenderRequest, text: str, merge: str | None = None) -> None:
        """Make `request` current as one undoable step (`merge`: a key that folds a gesture into one step)."""
        self.core.set_request(request, text, merge)

    def set_param(self, name: str, value: Any, text: str, merge: str | None = None) -> None:
        """Set param `name` of the current request (None: unset, the family's default applies) as one step."""
        self.core.set_param(name, value, text, merge)

    def change(self, text: str, merge: str | None = None, **fields: Any) -> None:
        """Change core fields (seed=…, latent=…) or params (params={…}) of the current request as one step."""
        self.core.change(text, merge, **fields)

    def set_seed_mode(self, mode: str) -> None:
        self.core.set_seed_mode(mode)

    def random_seed(self) -> None:
        self.core.random_seed()

    def next_seed(self) -> None:
        """Advance the seed by the seed mode (after an export, or on "Next"): fixed keeps it."""
        self.core.next_seed()

    def restore_history(self, index: int) -> None:
        self.core.restore_history(index)

    def remove_latent(self, index: int) -> None:
        self.core.remove_latent(index)

    def use_latent(self, index: int) -> None:
        self.core.use_latent(index)

    def interpolate_latents(self, a: int, b: int, t: float, mode: str = "slerp", merge: str | None = None) -> None:
        self.core.interpolate_latents(a, b, t, mode, merge)

    def usable_latents(self) -> list[int]:
        """The library entries the current model can use (its own, of a kind it takes)."""
        return self.core.usable_latents()

    def interpolation_partners(self, index: int) -> list[int]:
        """The usable library entries that interpolate with entry `index` (a w pairs with a w+), itself included."""
        return self.core.interpolation_partners(index)

    def describe_latent(self, entry: SavedLatent) -> str:
        """The kind of a saved latent: "w+ (8 × 128 values)", "z (32 values)"."""
        return self.core.describe_latent(entry)

    def set_init_image(self, source: str | Path | np.ndarray, name: str = "") -> bool:
        """Start image-to-image from a picture, fitted to the sheet the prompt draws (one undoable step)."""
        return self.core.set_init_image(source, name)

    def clear_init_image(self) -> None:
        self.core.clear_init_image()

    def restore_from_file(self, path: str | Path) -> bool:
        """Restore the exact request stored in an image or a sound this app exported."""
        return self.core.restore_from_file(path)

    def set_folder_asker(self, ask: FolderAsker) -> None:
        """Who answers when a picture, a sound or a project names a model folder that is not installed (the window:
        a dialog; until set, the answer is No and the file is not restored)."""
        self.core.ask_folder = ask

    def new_document(self, model_id: str | None = None) -> None:
        self.core.new(model_id)

    def open_document(self, path: str | Path) -> bool:
        return self.core.open(path)

    def adopt_document(self, document: Document, path: Path | None, modified: bool = False) -> None:
        """Make `document` the open one (opened from `path`, or recovered from an autosave when `modified`)."""
        self.core.adopt(document, path, modified)

    def save(self, path: str | Path | None = None) -> bool:
        self.flush_history()
        return self.core.save(path)

    # --- work on the engine ---------------------------------------------------------------------------------------
    @property
    def last_output(self) -> Output | None:
        """The newest finished render of the current request."""
        return self.tasks.last_output

    @property
    def last_request(self) -> RenderRequest | None:
        return self.tasks.last_request

    @property
    def last_info(self) -> dict:
        return self.tasks.last_info

    @property
    def last_sound(self) -> tuple[RenderRequest, Output] | None:
        """The newest sound a model made (for timelines)."""
        return self.tasks.last_sound

    @property
    def variations(self) -> list[tuple[RenderRequest, Output]]:
        """The variations grid: each tile's request and output."""
        return self.tasks.variations

    def rerender(self) -> None:
        self.tasks.rerender()

    def flush_history(self) -> None:
        """Record the newest render in the history now (before saving, say)."""
        self.results.flush_history()

    def save_latent(self, name: str) -> None:
        """Store the current latent (its values, computed on the worker) in the document's library."""
        self.tasks.save_latent(name)

    def encode_image(self, path: str | Path, chars: str = "") -> None:
        """Encode an image (for text models: a strip with one cell per character of `chars`) into the latent; a
        projection runs for a while on the worker, reports progress and can be cancelled."""
        self.projection_target = Path(path)
        self.tasks.encode_image(path, chars)

    def strip_chars(self, path: str | Path) -> StripGuess:
        """The characters to offer for encoding the strip at `path` (studio.app.strips): the prompt stored in it,
        else the current prompt fitted to its cells."""
        return self.core.strip_chars(path)

    def encode_sound(self, path: str | Path) -> None:
        """Encode a sound file (any rate) as the current class into the latent, on the worker."""
        self.tasks.encode_sound(path)

    def export(self, path: str | Path, subtype: str | None = None,
               on_done: Callable[[Path], None] | None = None, output_size: OutputSize | None = None) -> None:
        """Render the current request on the export lane and write it with the request inside (an image, scaled by
        `output_size`, or a sound; `subtype` picks WAV's or FLAC's sample format)."""
        self.tasks.export(path, subtype, on_done, output_size)

    def export_grid(self, path: str | Path, rows: str, cols: str,
                    on_done: Callable[[Path], None] | None = None) -> None:
        """An X/Y plot of the current request over two parameters ("seed=1,2,3", "d0=-2,0,2")."""
        self.tasks.export_grid(path, rows, cols, on_done)

    def render_variations(self, count: int = 6, strength: float = 0.35) -> None:
        self.tasks.render_variations(count, strength)

    def clear_variations(self) -> None:
        self.tasks.clear_variations()

    def use_variation(self, index: int) -> None:
        self.tasks.use_variation(index)

    # --- the timeline ---------------------------------------------------------------------------------------------
    @property
    def timeline(self) -> Timeline:
        return self.timeline_editor.timeline

    def set_timeline(self, timeline: Timeline, text: str, merge: str | None = None) -> None:
        self.timeline_editor.set_timeline(timeline, text, merge)

    def add_keyframe(self, index: int | None = None, at: float | None = None) -> None:
        """Add the current request as a keyframe, with the exact latent it showed (computed on the worker), at
        `index` or at `at` seconds (the segment there is split; the other keyframes keep their times)."""
        self.tasks.add_keyframe(index, at)

    def add_keyframe_from_latent(self, latent_index: int) -> None:
        self.timeline_editor.add_keyframe_from_latent(latent_index)

    def remove_keyframe(self, index: int) -> None:
        self.timeline_editor.remove_keyframe(index)

    def move_keyframe(self, index: int, to: int) -> None:
        self.timeline_editor.move_keyframe(index, to)

    def edit_keyframe(self, index: int, text: str = "Edit keyframe", merge: str | None = None, **fields: Any) -> None:
        self.timeline_editor.edit_keyframe(index, text, merge, **fields)

    def retime_keyframe(self, index: int, time: float, merge: str | None = None) -> None:
        self.timeline_editor.retime_keyframe(index, time, merge)

    def set_in_point(self, time: float | None) -> None:
        self.timeline_editor.set_in_point(time)

    def set_out_point(self, time: float | None) -> None:
        self.timeline_editor.set_out_point(time)

    def edit_timeline(self, text: str = "Edit timeline", merge: str | None = None, **fields: Any) -> None:
        self.timeline_editor.edit_timeline(text, merge, **fields)

    def set_timeline_audio(self, path: str | Path) -> bool:
        return self.timeline_editor.set_audio(path)

    def use_last_sound(self) -> bool:
        return self.tasks.use_last_sound()

    def add_mapping(self, envelope: str = "onsets", target: str = "d0") -> None:
        self.timeline_editor.add_mapping(envelope, target)

    def edit_mapping(self, index: int, text: str = "Edit audio mapping", merge: str | None = None, **fields) -> None:
        self.timeline_editor.edit_mapping(index, text, merge, **fields)

    def remove_mapping(self, index: int) -> None:
        self.timeline_editor.remove_mapping(index)

    def preview_frame(self, time: float) -> RenderRequest | None:
        """Show the timeline's frame at `time` seconds (the scrubber, playback), the document's request unchanged;
        the frame's request."""
        return self.tasks.preview_frame(time)

    def export_video(self, path: str | Path, size: tuple[int, int] | None = None,
                     on_done: Callable[[Path], None] | None = None, output_size: OutputSize | None = None,
                     fps: float | None = None, frames: tuple[int, int] | None = None) -> None:
        """Render the timeline to a video (MP4, WebM, GIF or PNG frames) on the export lane (`output_size` scales
        the frames, `fps` replaces the timeline's, `frames` (first, last) exports a part)."""
        self.tasks.export_video(path, size, on_done, output_size, fps, frames)

    def shutdown(self) -> bool:
        """Cancel the queue and the engine's work and join its worker (5 s at most); whether the worker has ended."""
        self.render_queue.cancel_all()
        ended = self.bridge.shutdown()
        if self._gallery_writer is not None:  # what finished before the end is indexed: nothing is lost
            self._gallery_writer.close()
            self._gallery_writer = None
        if self.gallery is not None:
            self.gallery.close()
            self.gallery = None
        return ended

"""The document's work on the engine, with no Qt: previews of every applied request, and the tasks on the export
lane (export, grid, variations, encoding, saving a latent, keyframes, video), each the engine work function of
studio.engine.work that the CLI runs too, with what its result does to the document.

Tasks run through a `Runner`: the window's Qt bridge (studio.ui.bridge.EngineBridge) is one; it calls the callbacks
on the thread that drives the core. Listeners: variations_changed(), files_written(source, [(path, request)], kind)
(for the gallery) and the document's message(level, text, detail).
"""

from __future__ import annotations

import re
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Protocol

from studio.app.carry import Carried
from studio.app.document import OpenDocument
from studio.app.listeners import Listeners
from studio.app.models import ERROR, INFO, WARNING
from studio.app.timeline import TimelineEditor
from studio.engine import work
from studio.errors import StudioError
from studio.export import OutputSize, check_writable_folder, formats_for
from studio.params import Capability
from studio.paths import user_data_dir
from studio.request import RenderRequest
from studio.steps import Output

def file_stem(text: str) -> str:
    """A short, safe file-name part for a model id or prompt."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:32] or "render"


def renders_folder() -> Path:
    """Where the queue writes: `renders/` in the user data folder, a folder per day."""
    return user_data_dir() / "renders"


Done = Callable[[Output], None]
Failed = Callable[[str, str], None]  # message, detail
Cancelled = Callable[[], None]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Handle(Protocol):
    """A task in flight: its engine job can be cancelled."""

    job: Cancellable


class Runner(Protocol):
    """Runs the core's work on the engine and calls back on the core's thread (the window's EngineBridge)."""

    def preview(self, request: RenderRequest) -> int:
        """Render `request` on the newest-wins preview lane."""
        ...

    def run(self, request: RenderRequest, label: str, on_done: Done | None = None, on_error: Failed | None = None,
            then: Any = None, kind: str = "render", images: Any = None, labels: Any = None,
            on_cancelled: Cancelled | None = None) -> Handle:
        """A job on the export lane; kind "latent" computes the request's latent values."""
        ...

    def run_work(self, request: RenderRequest, label: str, work: Any, on_done: Done | None = None,
                 on_error: Failed | None = None, on_cancelled: Cancelled | None = None) -> Handle:
        """A work function (studio.engine.work) on the request's model, on the export lane."""
        ...

    def run_animation(self, frames: list[RenderRequest], path: Any, fps: float, label: str, audio: Any = None,
                      metadata: str = "", size: tuple[int, int] | None = None, on_done: Done | None = None,
                      on_error: Failed | None = None, on_cancelled: Cancelled | None = None,
                      output_size: OutputSize | None = None) -> Handle:
        """A video export (studio.engine.animate.export_animation) on the export lane; `output_size` scales the
        frames."""
        ...


class Tasks:
    """The engine work of `document` and its `timeline`, run by `runner`. `thumbnail(output)` makes the small PNG a
    saved latent shows (the window's; none by default)."""

    def __init__(self, document: OpenDocument, timeline: TimelineEditor, runner: Runner,
                 thumbnail: Callable[[Output], bytes] | None = None):
        self.document, self.timeline, self.runner = document, timeline, runner
        self.message = document.message
        self.thumbnail = thumbnail or (lambda output: b"")
        self.last_output: Output | None = None  # the newest finished preview of the current request
        self.last_request: RenderRequest | None = None
        self.last_info: dict = {}
        self.last_sound: tuple[RenderRequest, Output] | None = None  # the newest sound a model made (for timelines)
        self.variations: list[tuple[RenderRequest, Output]] = []  # the variations grid: each tile's request, output
        self._variation_tasks: list[Handle] = []
        self.variations_folder: Path | None = renders_folder()  # where variations are written (see the gallery)
        self.variations_changed = Listeners()
        self.files_written = Listeners()  # (source, [(path, request)], kind): an export or grid wrote files
        document.render_wanted.connect(self.preview)
        document.opened.connect(self._on_opened)

    def _reporter(self, what: str) -> Failed:
        """An error callback for a task: "<what>: <text>" in the message area, the detail behind it."""
        return lambda text, detail: self.message(ERROR, f"{what}: {text}", detail or text)

    def _on_opened(self) -> None:
        self.last_output = self.last_request = None
        self.clear_variations()

    # --- previews -------------------------------------------------------------------------------------------------
    def preview(self, request: RenderRequest) -> None:
        self.runner.preview(request)

    def rerender(self) -> None:
        if self.document.request is not None:
            self.runner.preview(self.document.request)

    def preview_frame(self, time: float) -> RenderRequest | None:
        """Show the timeline's frame at `time` seconds (the scrubber, playback), the document's request unchanged;
        the frame's request (None when there is nothing to show)."""
        frame = self.timeline.frame_at(time)
        if frame is not None:
            self.runner.preview(frame)
        return frame

    def preview_finished(self, request: RenderRequest, output: Output, info: dict) -> bool:
        """A preview finished (`info`: the engine's, with the weights' hash). True when it is the current request's
        (not a timeline frame being scrubbed): that render belongs in the history."""
        self.last_output, self.last_request, self.last_info = output, request, info
        if output.kind == "audio":
            self.last_sound = (request.with_(model_hash=info.get("model_sha256", request.model_hash)), output)
        self.document.note_render(request, info)
        return request == self.document.request

    # --- export ---------------------------------------------------------------------------------------------------
    def export(self, path: str | Path, subtype: str | None = None,
               on_done: Callable[[Path], None] | None = None, output_size: OutputSize | None = None) -> None:
        """Render the current request on the export lane and write it with the request inside: an image (PNG, JPEG,
        WebP; `output_size` scales its pixels) or a sound (WAV, FLAC, OGG, MP3; `subtype` picks WAV's or FLAC's
        sample format); then the next seed."""
        request = self.document.request
        if request is None:
            return
        path = Path(path)
        kind = self.document.output_kind
        formats = formats_for(kind)
        if path.suffix.lower() not in formats:
            self.message(ERROR, f"Cannot export {path.name}",
                         f"This model makes {'sounds' if kind == 'audio' else 'images'}: use a "
                         f"{', '.join(sorted(formats))} name.")
            return

        def done(_output: Output) -> None:
            self.message(INFO, f"Exported {path.name}", str(path))
            self.files_written("export", [(path, request)], kind)
            self.document.next_seed()
            if on_done is not None:
                on_done(path)

        self.runner.run_work(request, f"Export {path.name}", partial(work.render_to_file, path=path, subtype=subtype,
                                                                     output_size=output_size),
                             on_done=done, on_error=self._reporter("Export failed"))

    def export_grid(self, path: str | Path, rows: str, cols: str,
                    on_done: Callable[[Path], None] | None = None) -> None:
        """An X/Y plot of the current request over two parameters ("seed=1,2,3", "d0=-2,0,2"): every cell rendered
        on the export lane, laid out with labels and written as an image with the request inside."""
        request, entry = self.document.request, self.document.entry
        if request is None or entry is None or entry.manifest is None:
            return
        path = Path(path)
        try:
            if entry.manifest.output.kind != "image":
                raise StudioError(f"{entry.manifest.name} makes {entry.manifest.output.kind}: a grid is made of "
                                  "images")
            if path.suffix.lower() not in formats_for("image"):
                raise StudioError("use a .png, .jpg or .webp name")
            table = entry.parameters
            axes = work.parse_grid_axis(table, rows, "rows"), work.parse_grid_axis(table, cols, "columns")
            work.grid_cells(table.check, request, *axes)
            check_writable_folder(path)
        except (StudioError, ValueError) as exc:
            self.message(ERROR, f"Cannot make the grid {path.name}", str(exc))
            return
        shape = f"{len(axes[0][1])} × {len(axes[1][1])}"

        def done(_output: Output) -> None:
            self.message(INFO, f"Exported the grid {path.name} ({shape})", str(path))
            self.files_written("grid", [(path, request)], "image")
            if on_done is not None:
                on_done(path)

        self.runner.run_work(request, f"Grid {path.name}", partial(work.grid, rows=axes[0], cols=axes[1], path=path),
                             on_done=done, on_error=self._reporter("Grid export failed"))

    # --- variations -----------------------------------------------------------------------------------------------
    def render_variations(self, count: int = 6, strength: float = 0.35) -> None:
        """Render `count` variations of the current request (fresh variation seeds at `strength`) on the export lane,
        one task per tile so that each shows as it lands; `use_variation` continues from one."""
        request = self.document.request
        if request is None:
            return
        self.clear_variations()
        tiles = self.variations
        folder = self._variations_folder()
        kind = self.document.output_kind
        for _ in range(count):
            def done(output: Output) -> None:
                if output.info.get("written"):
                    self.files_written("variation", [(path, tile) for tile, path in output.info["written"]], kind)
                for note in output.info.get("notes", ()):
                    self.message(WARNING, "A variation was not kept in the gallery", note)
                if tiles is self.variations:  # not a grid that was cleared or replaced since
                    tiles.extend(output.info["tiles"])
                    self.variations_changed()

            seed = self.document.draw_seed()
            paths = None if folder is None else \
                (folder / f"{file_stem(request.model_id)}-s{request.seed}-v{seed}{'.wav' if kind == 'audio' else '.png'}",)
            varied = partial(work.variations, seeds=(seed,), strength=float(strength), paths=paths)
            self._variation_tasks.append(self.runner.run_work(request, "Variations", varied, on_done=done,
                                                              on_error=self._reporter("A variation failed")))

    def _variations_folder(self) -> Path | None:
        """Today's folder of renders (the gallery keeps every variation); None, said once, when it cannot be made."""
        if self.variations_folder is None:
            return None
        folder = self.variations_folder / time.strftime("%Y-%m-%d")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.message(WARNING, "Variations are not kept in the gallery",
                         f"{folder}: cannot make the folder ({exc.strerror or exc})")
            self.variations_folder = None
            return None
        return folder

    def clear_variations(self) -> None:
        """Empty the grid and stop the variations still rendering."""
        for task in self._variation_tasks:
            task.job.cancel()
        self._variation_tasks = []
        self.variations = []
        self.variations_changed()

    def use_variation(self, index: int) -> None:
        """Continue from variation `index`: its latent (computed on the worker) becomes the current one."""
        varied, _ = self.variations[index]
        origin = f"variation {varied.param('variation_seed')} of seed {varied.seed}" \
            if varied.param("variation_seed") is not None else f"variation of seed {varied.seed}"
        self.runner.run(varied, "Use variation", kind="latent",
                        on_done=lambda output: self.document.use_latent_values("Use variation", output.data, varied,
                                                                               origin=origin),
                        on_error=self._reporter("Cannot use the variation"))

    # --- encoding -------------------------------------------------------------------------------------------------
    def encode_image(self, path: str | Path, chars: str = "") -> None:
        """Encode an image (for text models: a strip with one cell per character of `chars`) into the latent. For
        a projecting model this runs for a while on the worker, reports progress and can be cancelled."""
        request, entry = self.document.request, self.document.entry
        if request is None or entry is None or entry.manifest is None:
            return
        if Capability.ENCODE not in entry.capabilities:
            self.message(ERROR, f"{entry.manifest.name} cannot encode images",
                         f"The {entry.manifest.family} family has no encoder.")
            return
        name = Path(path).name
        try:
            images, labels = work.glyph_strip(entry.manifest, path, chars)
        except StudioError as exc:
            self.message(ERROR, f"Cannot encode {name}", str(exc))
            return
        verb, done_verb = ("Project", "Projected") if self.document.projects else ("Encode", "Encoded")

        def done(output: Output) -> None:
            carried = self.document.use_encoded_latent(f"{verb} {name}", output.data,
                                                       origin=f"{done_verb.lower()} from {name}")
            self._say_encoded(f"{done_verb} {name}: its style is now the latent", carried)

        def cancelled() -> None:
            self.message(INFO, f"{verb} {name} was cancelled: the latent is unchanged", "")

        self.runner.run_work(request, f"{verb} {name}", partial(work.encode_image, images=images, labels=labels),
                             on_done=done, on_error=self._reporter(f"Cannot {verb.lower()} {name}"),
                             on_cancelled=cancelled)

    def _say_encoded(self, text: str, carried: Carried | None) -> None:
        """One line for a finished encoding, with the edits it kept and those it dropped (a warning then)."""
        summary = carried.summary() if carried is not None else ""
        self.message(WARNING if carried is not None and carried.dropped else INFO,
                     f"{text}; {summary}" if summary else text, carried.detail() if carried is not None else "")

    def encode_sound(self, path: str | Path) -> None:
        """Encode a sound file (any rate: resampled to the model's) as the current class into the latent; reading
        and resampling run on the worker with the encoding."""
        request, entry = self.document.request, self.document.entry
        if request is None or entry is None or entry.manifest is None:
            return
        name = Path(path).name
        if entry.manifest.output.kind != "audio" or Capability.ENCODE not in entry.capabilities:
            self.message(ERROR, f"Cannot encode {name}", f"{entry.manifest.name} does not encode sounds.")
            return
        try:
            label = work.sound_label(entry.manifest, request.param("label"))
        except StudioError as exc:
            self.message(ERROR, f"Cannot encode {name}", str(exc))
            return

        def done(output: Output) -> None:
            rate = output.info.get("resampled_from")
            note = f" (resampled from {rate} Hz)" if rate else ""
            carried = self.document.use_encoded_latent(f"Encode {name}", output.data, origin=f"encoded from {name}")
            self._say_encoded(f"Encoded {name} as a {label}{note}: its timbre is now the latent", carried)

        self.runner.run_work(request, f"Encode {name}", partial(work.encode_sound, path=Path(path), label=label),
                             on_done=done, on_error=self._reporter(f"Cannot encode {name}"))

    # --- the library and the timeline -------------------------------------------------------------------------------
    def save_latent(self, name: str) -> None:
        """Store the current latent (its values, computed on the worker) in the document's library."""
        request = self.document.request
        if request is None:
            return
        name = self.document.latent_name(name, request)
        shown = self.last_output if self.last_output is not None and self.last_request == request else None
        thumb = self.thumbnail(shown) if shown is not None else b""

        def done(output: Output) -> None:
            sha = self.last_info.get("model_sha256", request.model_hash)
            self.document.save_latent(name, request, output.data, sha, thumb)

        self.runner.run(request, f"Save latent {name!r}", on_done=done, kind="latent",
                        on_error=self._reporter("Cannot save the latent"))

    def add_keyframe(self, index: int | None = None, at: float | None = None) -> None:
        """Add the current request as a keyframe (at `index`, default the end, or at the time `at` in seconds,
        splitting the segment there); its latent values are computed on the worker first, so a keyframe made from
        a seed holds the exact latent it showed."""
        request = self.document.request
        if request is None or not self.timeline.can_add_keyframe(request):
            return
        self.runner.run(request, "Add keyframe", kind="latent",
                        on_done=lambda output: self.timeline.add_keyframe(request, output.data, index, at),
                        on_error=self._reporter("Cannot add the keyframe"))

    def use_last_sound(self) -> bool:
        """Put the newest sound a model made on the timeline (kept as a WAV in the user data folder)."""
        return self.timeline.keep_sound(self.last_sound)

    def export_video(self, path: str | Path, size: tuple[int, int] | None = None,
                     on_done: Callable[[Path], None] | None = None, output_size: OutputSize | None = None,
                     fps: float | None = None, frames: tuple[int, int] | None = None) -> None:
        """Render every frame of the timeline on the export lane and encode it as it goes (MP4, WebM, GIF, or a
        folder of PNGs), with the timeline's sound and the document inside; nothing partial is left on cancel or
        error. `output_size` scales the frames, `fps` replaces the timeline's, `frames` (first, last; 1-based)
        exports a part."""
        path = Path(path)
        plan = self.timeline.video_plan(path, fps)
        if plan is None:
            return
        if frames is not None:
            try:
                plan = work.frame_range(plan, *frames)
            except StudioError as exc:
                self.message(ERROR, f"Cannot export {path.name}", str(exc))
                return

        def done(_output: Output) -> None:
            self.message(INFO, f"Exported {path.name} ({len(plan.frames)} frames)", str(path))
            if on_done is not None:
                on_done(path)

        def cancelled() -> None:
            self.message(INFO, f"Export of {path.name} was cancelled: nothing was written", "")

        try:  # the target is checked before anything renders
            self.runner.run_animation(list(plan.frames), path, plan.fps, f"Export {path.name}", audio=plan.audio,
                                      metadata=self.document.document.to_json(), size=size, on_done=done,
                                      output_size=output_size,
                                      on_error=self._reporter("Video export failed"), on_cancelled=cancelled)
        except (StudioError, ValueError) as exc:
            self.message(ERROR, f"Cannot export {path.name}", str(exc))


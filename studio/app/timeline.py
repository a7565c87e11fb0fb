"""The open document's timeline, edited as undoable steps, with no Qt: keyframes (each a request with the exact
latent values it showed), segment timing and easing, frame rate and loop, the sound and its audio mappings.

Timelines are immutable: every edit makes a new one, and one edit is one step of the document's undo stack (a
gesture with a merge key is one step). Listeners: changed() and the document's message(level, text, detail).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

from studio.app.document import OpenDocument
from studio.app.listeners import Listeners
from studio.app.models import ERROR, WARNING
from studio.app.undo import SetValue
from studio.engine.work import VideoPlan, video_plan
from studio.errors import StudioError
from studio.export import save_output
from studio.export.audio import check_sound
from studio.latent.kinds import common_kind, convert, find_kind
from studio.paths import user_data_dir
from studio.project.timeline import AudioMapping, Defaults, Keyframe, Timeline
from studio.request import RenderRequest
from studio.steps import Output


class TimelineEditor:
    """The timeline of `document` (its undo stack, messages and revision)."""

    def __init__(self, document: OpenDocument):
        self.document = document
        self.message = document.message
        self.changed = Listeners()
        document.opened.connect(self.changed)

    @property
    def timeline(self) -> Timeline:
        return self.document.document.timeline

    @property
    def folder(self) -> Path | None:
        """Where the project is saved: relative sound paths are taken from there."""
        return self.document.path.parent if self.document.path is not None else None

    def set_timeline(self, timeline: Timeline, text: str, merge: str | None = None) -> None:
        """Make `timeline` the document's, as one undoable step."""
        if timeline != self.timeline:
            self.document.undo.push(SetValue(self._apply, self.timeline, timeline, text, merge))

    def _apply(self, timeline: Timeline) -> None:
        self.document.document.timeline = timeline
        self.document.revision += 1
        self.changed()

    def edit_timeline(self, text: str = "Edit timeline", merge: str | None = None, **fields: Any) -> None:
        """Change the timeline's fps, loop, audio, keyframes or mappings."""
        try:
            timeline = dataclasses.replace(self.timeline, **fields)
        except StudioError as exc:
            self.message(ERROR, f"{text}: {exc.problem}", str(exc))
            return
        self.set_timeline(timeline, text, merge)

    def _edit_item(self, name: str, index: int, text: str, merge: str | None, fields: dict) -> None:
        """Replace item `index` of the timeline's `name` (keyframes, mappings) by a copy with `fields` changed."""
        items = list(getattr(self.timeline, name))
        try:
            items[index] = dataclasses.replace(items[index], **fields)
        except StudioError as exc:
            self.message(ERROR, f"{text}: {exc.problem}", str(exc))
            return
        self.edit_timeline(text, merge, **{name: tuple(items)})

    # --- keyframes ------------------------------------------------------------------------------------------------
    def can_add_keyframe(self, request: RenderRequest) -> bool:
        """Whether `request` may join the timeline (a timeline animates one model; an error says so)."""
        keys = self.timeline.keyframes
        if keys and keys[0].request.model_id != request.model_id:
            self.message(ERROR, "Cannot add a keyframe of another model",
                         f"This timeline animates {keys[0].request.model_id}; switch back or clear it.")
            return False
        return True

    def add_keyframe(self, request: RenderRequest, values: Iterable[float], index: int | None = None) -> None:
        """Add `request` as a keyframe holding its exact latent `values` (computed by its model), at `index`
        (default: the end), named after where its latent came from ("seed 43", "projected from x.png" …)."""
        if not self.can_add_keyframe(request):
            return
        key = Keyframe(request.with_(latent=tuple(float(v) for v in values),
                                     params=self.document.render_only_params(request)),
                       name=self.document.latent_origin(request))
        self._insert_keyframe(key, index, "Add keyframe")

    def add_keyframe_from_latent(self, latent_index: int) -> None:
        """Add a saved latent of the library as a keyframe (with the current request's other settings)."""
        entry, request = self.document.document.latents[latent_index], self.document.request
        if request is None or not self.document.latent_fits(entry) or not self.can_add_keyframe(request):
            return
        key = Keyframe(request.with_(latent=entry.latent, params=self.document.render_only_params()), name=entry.name)
        self._insert_keyframe(key, None, f"Add keyframe {entry.name!r}")

    def _insert_keyframe(self, key: Keyframe, index: int | None, text: str) -> None:
        """Insert `key` as one step, every keyframe's latent of one kind so that they blend: a GAN's w among w+
        keyframes is repeated per layer (or the others are, when the new one is a w+); kinds that do not convert
        are refused with a message."""
        keyframes = list(self.timeline.keyframes)
        sizes = {len(k.request.latent or ()) for k in keyframes} | {len(key.request.latent or ())}
        if len(sizes) > 1:
            kinds = self.document.latent_kinds(key.request.model_id)
            wanted = find_kind(kinds, size=max(sizes))
            if wanted is None or any(common_kind(kinds, size, wanted.size) != wanted for size in sizes):
                size = len(key.request.latent or ())
                self.message(ERROR, f"Cannot add {key.name or 'the keyframe'}: its latent does not blend with the "
                                    "timeline's",
                             f"Its latent has {size} values, the timeline's keyframes "
                             f"{', '.join(str(n) for n in sorted(sizes - {size}))}; neither converts to the other.")
                return
            keyframes = [self._as_kind(k, kinds, wanted) for k in keyframes]
            key = self._as_kind(key, kinds, wanted)
        keyframes.insert(len(keyframes) if index is None else index, key)
        self.edit_timeline(text, keyframes=tuple(keyframes))

    @staticmethod
    def _as_kind(key: Keyframe, kinds, kind) -> Keyframe:
        latent = key.request.latent
        if latent is None or len(latent) == kind.size:
            return key
        return dataclasses.replace(key, request=key.request.with_(latent=convert(latent, kinds, kind)))

    def remove_keyframe(self, index: int) -> None:
        keyframes = list(self.timeline.keyframes)
        del keyframes[index]
        self.edit_timeline("Remove keyframe", keyframes=tuple(keyframes))

    def move_keyframe(self, index: int, to: int) -> None:
        keyframes = list(self.timeline.keyframes)
        keyframes.insert(to, keyframes.pop(index))
        self.edit_timeline("Move keyframe", keyframes=tuple(keyframes))

    def edit_keyframe(self, index: int, text: str = "Edit keyframe", merge: str | None = None, **fields: Any) -> None:
        """Change a keyframe's duration, interpolation, easing or name."""
        self._edit_item("keyframes", index, text, merge, fields)

    # --- sound and audio mappings -----------------------------------------------------------------------------------
    def set_audio(self, path: str | Path) -> bool:
        """Use a sound file for the timeline (its track in the video, the source of the audio mappings)."""
        try:
            check_sound(path)  # readable and not all silent? say so now (read only until it is heard)
        except StudioError as exc:
            self.message(ERROR, f"Cannot use {Path(path).name} as the timeline's sound", str(exc))
            return False
        self.edit_timeline(f"Sound {Path(path).name}", audio=str(path))
        return True

    def keep_sound(self, sound: tuple[RenderRequest, Output] | None) -> bool:
        """Put a sound a model made (its request and output) on the timeline: it is written with its request as a
        WAV in the user data folder's `sounds/` and becomes the timeline's sound."""
        if sound is None:
            self.message(WARNING, "No sound made yet", "Render a sound with a sound model first.")
            return False
        request, output = sound
        folder = user_data_dir() / "sounds"
        path = folder / f"{request.model_id}-{request.param('label') or 'sound'}-{request.seed}.wav"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_output(path, output, request, model_sha256=request.model_hash)
        except (OSError, StudioError) as exc:
            self.message(ERROR, "Cannot keep the sound for the timeline", str(exc))
            return False
        return self.set_audio(path)

    def add_mapping(self, envelope: str = "onsets", target: str = "d0") -> None:
        self.edit_timeline("Add audio mapping", mappings=(*self.timeline.mappings, AudioMapping(envelope, target)))

    def edit_mapping(self, index: int, text: str = "Edit audio mapping", merge: str | None = None,
                     **fields: Any) -> None:
        """Change a mapping's envelope, target, gain, attack or release."""
        self._edit_item("mappings", index, text, merge, fields)

    def remove_mapping(self, index: int) -> None:
        mappings = list(self.timeline.mappings)
        del mappings[index]
        self.edit_timeline("Remove audio mapping", mappings=tuple(mappings))

    # --- frames ---------------------------------------------------------------------------------------------------
    def defaults(self) -> Defaults | None:
        """The defaults of the timeline's model's params (what a param missing on a keyframe counts as)."""
        keys = self.timeline.keyframes
        entry = self.document.models.entry_for(keys[0].request.model_id) if keys else None
        return entry.parameters.default if entry is not None and entry.ok else None

    def frame_at(self, time: float) -> RenderRequest | None:
        """The request of the frame `time` seconds in (None, with a warning, when there is nothing to scrub)."""
        try:
            return self.timeline.request_at(time, self.defaults())
        except StudioError as exc:
            self.message(WARNING, "Nothing to scrub", exc.problem)
            return None

    def video_plan(self, path: str | Path, fps: float | None = None) -> VideoPlan | None:
        """Every frame of the video `path` (at `fps`, default the timeline's; None, with the reason, when it cannot
        be made)."""
        try:
            timeline = self.timeline if fps is None else dataclasses.replace(self.timeline, fps=fps)
            return video_plan(timeline, path, self.folder, self.defaults())
        except StudioError as exc:
            self.message(ERROR, f"Cannot export {Path(path).name}", str(exc))
            return None

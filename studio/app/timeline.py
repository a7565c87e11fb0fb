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

POINTS = ("in_point", "out_point")
MIN_GAP = 1e-3  # seconds: the shortest segment a split or a retime leaves (a keyframe's duration must be > 0)


def split_at(timeline: Timeline, time: float, key: Keyframe) -> tuple[int, list[Keyframe], Keyframe]:
    """Where `key` goes when it is added at `time` seconds: (its index, the other keyframes retimed for it, `key`
    with its duration). The segment `time` falls in is split so that every other keyframe keeps its time: the
    keyframe before shortens to end at `time`, and `key` takes the rest of the segment with the same interpolation
    and easing. At or after the last keyframe it is appended: past it, the last keyframe's duration becomes the
    distance to `time` (looping, within the way back to the first, that way is split instead). ValueError when a
    keyframe other than the last is at `time` already."""
    keys = list(timeline.keyframes)
    if not keys:
        return 0, keys, key
    starts = timeline.starts
    time = max(0.0, float(time))
    last = len(keys) - 1
    for i, start in enumerate(starts):
        if abs(start - time) < MIN_GAP and i != last:
            raise ValueError(f"keyframe {i + 1} is at {start:.2f} s already: move the playhead off it")
    segment = next((i for i in range(last) if starts[i] < time < starts[i + 1]), None)
    if segment is None:  # after the last keyframe
        if time - starts[last] < MIN_GAP:  # at it: append with the duration it has
            return len(keys), keys, key
        looping = timeline.loop and time < starts[last] + keys[last].duration - MIN_GAP
        segment, end = last, (starts[last] + keys[last].duration if looping else None)
    else:
        end = starts[segment + 1]
    before = keys[segment]
    keys[segment] = dataclasses.replace(before, duration=time - starts[segment])
    if end is not None:
        key = dataclasses.replace(key, duration=end - time, interpolation=before.interpolation, easing=before.easing)
    return segment + 1, keys, key


def retimed(timeline: Timeline, index: int, time: float) -> tuple[Keyframe, ...]:
    """The keyframes with keyframe `index` moved to `time` seconds: the segment into it and the one out of it
    change, every other keyframe keeps its time. It cannot pass its neighbours (it stops MIN_GAP short), the first
    keyframe stays at 0, and the last one (looping: the way back to the first keeps the loop's length) can move
    later. ValueError for the first keyframe or an index out of range."""
    keys = list(timeline.keyframes)
    if not 0 < index < len(keys):
        raise ValueError("the first keyframe is the start of the animation: it stays at 0 s" if index == 0
                         else f"there is no keyframe {index + 1}")
    starts = timeline.starts
    low = starts[index - 1] + MIN_GAP
    last = index == len(keys) - 1
    if not last:
        high = starts[index + 1] - MIN_GAP
    elif timeline.loop:
        high = starts[index] + keys[index].duration - MIN_GAP
    else:
        high = float("inf")
    time = min(max(float(time), low), high)
    keys[index - 1] = dataclasses.replace(keys[index - 1], duration=time - starts[index - 1])
    if not last:
        keys[index] = dataclasses.replace(keys[index], duration=starts[index + 1] - time)
    elif timeline.loop:
        keys[index] = dataclasses.replace(keys[index], duration=starts[index] + keys[index].duration - time)
    return tuple(keys)


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
        """Change the timeline's fps, loop, audio, keyframes, mappings or in/out points; in/out points not given
        are kept where they still fit (a keyframe removed past the out point takes it away)."""
        kept = {name: getattr(self.timeline, name) for name in POINTS if name not in fields}
        unset: dict[str, Any] = {name: None for name in kept}
        try:
            timeline = dataclasses.replace(self.timeline, **fields, **unset)
            if kept:
                timeline = timeline.fitted_points(kept.get("in_point", timeline.in_point),
                                                  kept.get("out_point", timeline.out_point))
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

    def add_keyframe(self, request: RenderRequest, values: Iterable[float], index: int | None = None,
                     at: float | None = None) -> None:
        """Add `request` as a keyframe holding its exact latent `values` (computed by its model), at `index`
        (default: the end) or at the time `at` (seconds: the segment there is split so that every other keyframe
        keeps its time; see `split_at`), named after where its latent came from ("seed 43", "projected from x.png"
        …)."""
        if not self.can_add_keyframe(request):
            return
        key = Keyframe(request.with_(latent=tuple(float(v) for v in values),
                                     params=self.document.render_only_params(request)),
                       name=self.document.latent_origin(request))
        if at is None:
            self._insert_keyframe(key, index, "Add keyframe")
            return
        try:
            index, keyframes, key = split_at(self.timeline, at, key)
        except ValueError as exc:
            self.message(WARNING, f"Cannot add a keyframe at {at:.2f} s", str(exc))
            return
        self._insert_keyframe(key, index, f"Add keyframe at {at:.2f} s", keyframes)

    def add_keyframe_from_latent(self, latent_index: int) -> None:
        """Add a saved latent of the library as a keyframe (with the current request's other settings)."""
        entry, request = self.document.document.latents[latent_index], self.document.request
        if request is None or not self.document.latent_fits(entry) or not self.can_add_keyframe(request):
            return
        key = Keyframe(request.with_(latent=entry.latent, params=self.document.render_only_params()), name=entry.name)
        self._insert_keyframe(key, None, f"Add keyframe {entry.name!r}")

    def _insert_keyframe(self, key: Keyframe, index: int | None, text: str,
                         around: list[Keyframe] | None = None) -> None:
        """Insert `key` as one step (among `around`: the timeline's keyframes, retimed for it), every keyframe's
        latent of one kind so that they blend: a GAN's w among w+ keyframes is repeated per layer (or the others
        are, when the new one is a w+); kinds that do not convert are refused with a message."""
        keyframes = list(self.timeline.keyframes) if around is None else list(around)
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

    def retime_keyframe(self, index: int, time: float, merge: str | None = None) -> None:
        """Move keyframe `index` to `time` seconds (a drag on the track; `merge` folds the drag into one step): the
        segments before and after it change, every other keyframe keeps its time, and it stays between its
        neighbours (see `retimed`)."""
        try:
            keyframes = retimed(self.timeline, index, time)
        except ValueError as exc:
            self.message(WARNING, "Cannot retime the keyframe", str(exc))
            return
        self.edit_timeline("Retime keyframe", merge, keyframes=keyframes)

    # --- in and out points ----------------------------------------------------------------------------------------
    def set_in_point(self, time: float | None) -> None:
        """Start the video export at `time` seconds (None: at the start); an out point at or before it goes."""
        out_point = self.timeline.out_point
        if time is not None and out_point is not None and out_point <= time:
            out_point = None
        self.edit_timeline("Set in point" if time is not None else "Clear in point",
                           in_point=self._on_timeline(time), out_point=out_point)

    def set_out_point(self, time: float | None) -> None:
        """End the video export at `time` seconds (None: at the end); an in point at or after it goes."""
        in_point = self.timeline.in_point
        if time is not None and in_point is not None and in_point >= time:
            in_point = None
        self.edit_timeline("Set out point" if time is not None else "Clear out point",
                           in_point=in_point, out_point=self._on_timeline(time))

    def _on_timeline(self, time: float | None) -> float | None:
        return None if time is None else min(max(float(time), 0.0), self.timeline.length)

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

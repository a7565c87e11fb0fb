"""The document's timeline: keyframes (each a full request with explicit latent values), how each segment moves
(duration, interpolation, easing), frame rate and loop, and audio-reactive mappings. Plain data with checks that
name the field, JSON in and out, and the request of every frame.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from studio.errors import ProjectError, RequestError
from studio.latent.interp import MODES
from studio.latent.paths import EASINGS, blend_requests, frame_count, locate
from studio.latent.reactive import ENVELOPES, shape
from studio.latent.reactive import envelopes as reactive_envelopes
from studio.limits import MAX_DURATION, MAX_FRAMES, MAX_KEYFRAMES, quote
from studio.limits import MAX_FPS as _MAX_FPS
from studio.request import RenderRequest

MAX_FPS = min(120.0, _MAX_FPS)  # a timeline's frame rate (videos may be written faster, see studio.export.video)
TARGETS = ("speed",)  # besides a number param of the model (d0, truncation, noise …)
_PARAM_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
Defaults = Callable[[str], Any]  # a param's default for the timeline's model (ParamTable.default)


@dataclass(frozen=True)
class Keyframe:
    """A request to pass through, and how the segment that leaves it moves (the last one's matter when looping)."""

    request: RenderRequest
    duration: float = 2.0  # seconds to the next keyframe
    interpolation: str = "slerp"
    easing: str = "ease-in-out"
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.request, RenderRequest):
            raise ProjectError("must be a RenderRequest", field="request")
        if self.request.latent is None:
            raise ProjectError("a keyframe needs explicit latent values (take them from a render or the library)",
                               field="request.latent")
        if isinstance(self.duration, bool) or not isinstance(self.duration, (int, float)) \
                or not math.isfinite(self.duration) or self.duration <= 0:
            raise ProjectError(f"must be a positive number of seconds, got {quote(self.duration)}", field="duration")
        if self.duration > MAX_DURATION:
            raise ProjectError(f"{self.duration:g} s is over the limit of {MAX_DURATION:g} s", field="duration")
        object.__setattr__(self, "duration", float(self.duration))
        if self.interpolation not in MODES:
            raise ProjectError(f"must be one of {', '.join(MODES)}, got {self.interpolation!r}", field="interpolation")
        if self.easing not in EASINGS:
            raise ProjectError(f"must be one of {', '.join(EASINGS)}, got {self.easing!r}", field="easing")
        if not isinstance(self.name, str):
            raise ProjectError("must be text", field="name")

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request.to_dict(), "duration": self.duration, "interpolation": self.interpolation,
                "easing": self.easing, "name": self.name}


@dataclass(frozen=True)
class AudioMapping:
    """An envelope of the timeline's sound driving a target: the speed along the path, or a latent edit."""

    envelope: str
    target: str
    gain: float = 1.0
    attack: float = 0.0
    release: float = 0.1

    def __post_init__(self) -> None:
        if self.envelope not in ENVELOPES:
            raise ProjectError(f"must be one of {', '.join(ENVELOPES)}, got {self.envelope!r}", field="envelope")
        if self.target not in TARGETS and not (isinstance(self.target, str) and _PARAM_NAME.match(self.target)):
            raise ProjectError(f"must be 'speed' or a number param of the model (d0, truncation …), got "
                               f"{str(self.target)[:40]!r}", field="target")
        for name in ("gain", "attack", "release"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or (name != "gain" and value < 0):
                raise ProjectError(f"must be a finite number{'' if name == 'gain' else ' ≥ 0'}, got {value!r}",
                                   field=name)
            object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, Any]:
        return {"envelope": self.envelope, "target": self.target, "gain": self.gain, "attack": self.attack,
                "release": self.release}


@dataclass(frozen=True)
class Timeline:
    keyframes: tuple[Keyframe, ...] = ()
    fps: float = 24.0
    loop: bool = False
    audio: str = ""  # a sound file, or "" for none
    mappings: tuple[AudioMapping, ...] = field(default_factory=tuple)
    in_point: float | None = None  # seconds: where the video export starts (None: the start)
    out_point: float | None = None  # seconds: where it ends (None: the end)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyframes", tuple(self.keyframes))
        object.__setattr__(self, "mappings", tuple(self.mappings))
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not 0 < self.fps <= MAX_FPS:
            raise ProjectError(f"must be a number above 0 and at most {MAX_FPS:g}, got {quote(self.fps)}",
                               field="fps")
        object.__setattr__(self, "fps", float(self.fps))
        if len(self.keyframes) > MAX_KEYFRAMES:
            raise ProjectError(f"{len(self.keyframes):,} keyframes is over the limit of {MAX_KEYFRAMES:,}",
                               field="keyframes")
        if len(self.mappings) > MAX_KEYFRAMES:
            raise ProjectError(f"{len(self.mappings):,} audio mappings is over the limit of {MAX_KEYFRAMES:,}",
                               field="mappings")
        self.check_length()
        if not isinstance(self.loop, bool):
            raise ProjectError("must be true or false", field="loop")
        models = {k.request.model_id for k in self.keyframes}
        if len(models) > 1:
            raise ProjectError(f"keyframes come from different models ({', '.join(sorted(models))}): a timeline "
                               "animates one model", field="keyframes")
        if self.mappings and not self.audio:
            raise ProjectError("audio mappings need a sound (timeline.audio)", field="mappings")
        self._check_points()

    def _check_points(self) -> None:
        """0 ≤ in < out ≤ length (each optional; an unset in is 0, an unset out the length)."""
        length = self.length
        for name in ("in_point", "out_point"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ProjectError(f"must be a number of seconds or null, got {quote(value)}", field=name)
            object.__setattr__(self, name, float(value))
            if not 0.0 <= value <= length:
                raise ProjectError(f"{value:g} s is outside the timeline's 0 … {length:g} s", field=name)
        start = self.in_point if self.in_point is not None else 0.0
        end = self.out_point if self.out_point is not None else length
        if (self.in_point is not None or self.out_point is not None) and not start < end:
            raise ProjectError(f"the in point ({start:g} s) must come before the out point ({end:g} s)",
                               field="in_point" if self.in_point is not None else "out_point")

    @property
    def length(self) -> float:
        """Seconds the animation lasts (0 with fewer than two keyframes)."""
        return math.fsum(self.durations) if len(self.keyframes) >= 2 else 0.0

    @property
    def starts(self) -> list[float]:
        """The time of every keyframe, in seconds (the first at 0)."""
        times = [0.0]
        for key in self.keyframes[:-1]:
            times.append(times[-1] + key.duration)
        return times[:len(self.keyframes)]

    @property
    def span(self) -> tuple[float, float]:
        """(in, out) in seconds: the in/out points, or the whole animation where unset."""
        length = self.length
        return (self.in_point if self.in_point is not None else 0.0,
                self.out_point if self.out_point is not None else length)

    def frame_span(self) -> tuple[int, int]:
        """(first, stop): the indices of the frames between the in and out points (frame k is at k / fps; those at
        or after the in point and before the out point, at least one)."""
        n = self.frames
        start, end = self.span
        first = min(n - 1, max(0, math.ceil(start * self.fps - 1e-9)))
        stop = n if self.out_point is None else min(n, math.ceil(end * self.fps - 1e-9))
        return first, max(stop, first + 1)

    def fitted_points(self, in_point: float | None, out_point: float | None) -> "Timeline":
        """This timeline with the in/out points that still fit it (after its keyframes or loop changed): a point
        outside 0 … length goes, and so do both when they no longer enclose anything."""
        length = self.length
        points = [p if p is not None and 0.0 <= p <= length else None for p in (in_point, out_point)]
        start = points[0] if points[0] is not None else 0.0
        end = points[1] if points[1] is not None else length
        if not start < end:
            points = [None, None]
        if points == [self.in_point, self.out_point]:
            return self
        return dataclasses.replace(self, in_point=points[0], out_point=points[1])

    @property
    def durations(self) -> list[float]:
        """The segments' durations: one per keyframe but the last (and the last too when looping)."""
        frames = self.keyframes if self.loop else self.keyframes[:-1]
        return [k.duration for k in frames]

    def check_playable(self) -> None:
        if len(self.keyframes) < 2:
            raise ProjectError(f"an animation needs at least two keyframes, this timeline has {len(self.keyframes)}",
                               field="keyframes")

    def check_length(self) -> None:
        """Refuse a timeline longer than MAX_DURATION seconds or MAX_FRAMES frames (before any frame is computed)."""
        total = math.fsum(k.duration for k in self.keyframes)  # the longest it can be: looping or not
        if total > MAX_DURATION:
            raise ProjectError(f"the keyframes last {total:,.6g} s in all, over the limit of {MAX_DURATION:g} s",
                               field="keyframes")
        if total * self.fps > MAX_FRAMES:
            raise ProjectError(f"{total:,.6g} s at {self.fps:g} fps is {total * self.fps:,.0f} frames, over the limit "
                               f"of {MAX_FRAMES:,}", field="fps")

    @property
    def frames(self) -> int:
        self.check_playable()
        self.check_length()
        n = frame_count(self.durations, self.fps)
        if n > MAX_FRAMES:  # not reached: check_length bounds every duration and the rate
            raise ProjectError(f"{n:,} frames is over the limit of {MAX_FRAMES:,}", field="keyframes")
        return n

    def request_at(self, time: float, defaults: Defaults | None = None) -> RenderRequest:
        """The request shown `time` seconds into the animation (`defaults(name)`: the model's default of a param,
        what a param missing on one keyframe counts as)."""
        self.check_playable()
        segment, u = locate(time, self.durations, [k.easing for k in self.keyframes])
        a = self.keyframes[segment]
        b = self.keyframes[(segment + 1) % len(self.keyframes)]
        return blend_requests(a.request, b.request, u, a.interpolation, defaults)

    def frame_requests(self, envelopes: dict[str, np.ndarray] | None = None,
                       defaults: Defaults | None = None) -> list[RenderRequest]:
        """The request of every frame, in order: frame k at k / fps seconds, or, with the envelopes of the
        timeline's sound (`studio.latent.reactive.envelopes` at this fps), moved by the audio mappings: a "speed"
        mapping makes the path run faster where its envelope is high (the animation keeps its length), any other
        target adds gain × envelope to that number param (its default where a frame leaves it unset)."""
        n = self.frames
        times = np.arange(n) / self.fps
        shaped = {}
        for i, m in enumerate(self.mappings):
            if envelopes is None or m.envelope not in envelopes:
                raise ProjectError(f"needs the {m.envelope!r} envelope of the timeline's sound", field=f"mappings[{i}]")
            curve = np.resize(np.asarray(envelopes[m.envelope], dtype=np.float64), n)  # the sound may be shorter
            shaped[i] = shape(curve, m.gain, m.attack, m.release, self.fps).astype(np.float64)
        speed = np.ones(n)
        for i, m in enumerate(self.mappings):
            if m.target == "speed":
                speed = speed * np.maximum(0.0, 1.0 + shaped[i])
        if n > 1 and not np.allclose(speed, 1.0):
            travelled = np.concatenate([[0.0], np.cumsum(speed[:-1])])
            times = travelled / max(travelled[-1], 1e-12) * times[-1]
        requests = [self.request_at(t, defaults) for t in times]
        for i, m in enumerate(self.mappings):
            if m.target != "speed":
                base = (defaults(m.target) if defaults is not None else None) or 0.0
                moved = []
                for k, r in enumerate(requests):
                    value = r.param(m.target, base)
                    if isinstance(value, bool) or not isinstance(value, (int, float)):  # a prompt, a class …
                        raise ProjectError(f"must be 'speed' or a number param of the model; {m.target} is "
                                           f"{str(value)[:40]!r}", field=f"mappings[{i}].target")
                    moved.append(r.with_param(m.target, float(value) + float(shaped[i][k])))
                requests = moved
        return requests

    def to_dict(self) -> dict[str, Any]:
        data = {"keyframes": [k.to_dict() for k in self.keyframes], "fps": self.fps, "loop": self.loop,
                "audio": self.audio, "mappings": [m.to_dict() for m in self.mappings]}
        for name in ("in_point", "out_point"):  # only when set: files without them read as before
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "Timeline":
        """A checked timeline; ProjectError with a dotted field such as `keyframes[1].easing`."""
        if not isinstance(data, dict):
            raise ProjectError("must be an object", field="timeline")
        items = data.get("keyframes", [])
        if not isinstance(items, list):
            raise ProjectError(f"must be a list, got {type(items).__name__}", field="keyframes")
        if len(items) > MAX_KEYFRAMES:  # before any keyframe is read
            raise ProjectError(f"{len(items):,} keyframes is over the limit of {MAX_KEYFRAMES:,}", field="keyframes")
        raw_mappings = data.get("mappings", [])
        if not isinstance(raw_mappings, list):
            raise ProjectError(f"must be a list, got {type(raw_mappings).__name__}", field="mappings")
        if len(raw_mappings) > MAX_KEYFRAMES:
            raise ProjectError(f"{len(raw_mappings):,} audio mappings is over the limit of {MAX_KEYFRAMES:,}",
                               field="mappings")
        keyframes = []
        for i, item in enumerate(items):
            where = f"keyframes[{i}]"
            if not isinstance(item, dict):
                raise ProjectError("must be an object", field=where)
            try:
                request = RenderRequest.from_dict(item.get("request"))
            except RequestError as exc:
                raise ProjectError(exc.problem, field=f"{where}.request" + (f".{exc.field}" if exc.field else ""))
            fields = {k: item[k] for k in ("duration", "interpolation", "easing", "name") if k in item}
            keyframes.append(_built(Keyframe, where, request=request, **fields))
        mappings = [_built(AudioMapping, f"mappings[{i}]", **(m if isinstance(m, dict) else {"envelope": m}))
                    for i, m in enumerate(raw_mappings)]
        rest = {k: data[k] for k in ("fps", "loop", "audio", "in_point", "out_point") if k in data}
        return _built(cls, "", keyframes=tuple(keyframes), mappings=tuple(mappings), **rest)


def _built(kind, where: str, **fields):
    """kind(**fields), its ProjectError's field prefixed with `where` (an unknown or missing field says so)."""
    try:
        return kind(**fields)
    except ProjectError as exc:
        raise ProjectError(exc.problem, field=f"{where}.{exc.field}" if where and exc.field else exc.field or where)
    except TypeError as exc:
        raise ProjectError(str(exc), field=where or None) from None


def sound_path(timeline: Timeline, folder: str | Path | None = None) -> Path | None:
    """The timeline's sound file (a relative path is taken from the project's folder), or None."""
    if not timeline.audio:
        return None
    path = Path(timeline.audio)
    return path if path.is_absolute() or folder is None else Path(folder) / path


def sound_of(timeline: Timeline, folder: str | Path | None = None) -> tuple[np.ndarray, int] | None:
    """The timeline's sound at its own rate (mono float32, rate), or None; RequestError naming an unreadable file."""
    path = sound_path(timeline, folder)
    if path is None:
        return None
    from studio.export.audio import read_sound

    wave, info = read_sound(path, None)
    return wave, int(info["sample_rate"])


def frames_of(timeline: Timeline, folder: str | Path | None = None,
              sound: tuple[np.ndarray, int] | None = None, defaults: Defaults | None = None) -> list[RenderRequest]:
    """Every frame's request with the audio mappings applied (their envelopes from the timeline's sound: `sound` when
    the caller has read it already, else read here); `defaults(name)` is the model's default of a param."""
    timeline.check_playable()
    if not timeline.mappings:
        return timeline.frame_requests(defaults=defaults)
    if sound is None:
        sound = sound_of(timeline, folder)
    if sound is None:  # not reached: Timeline refuses mappings without a sound
        raise ProjectError("audio mappings need a sound (timeline.audio)", field="mappings")
    wave, rate = sound
    try:
        envelopes = reactive_envelopes(wave, rate, timeline.fps)
    except ValueError as exc:
        raise RequestError(f"cannot drive the animation: {exc}", sound_path(timeline, folder)) from None
    return timeline.frame_requests(envelopes, defaults)

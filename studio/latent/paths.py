"""Paths through latent space for animation: easing curves, where a frame falls among keyframes, and the request
between two keyframes. NumPy only (the GUI thread scrubs timelines without torch).

A timeline is a list of keyframes with a duration (seconds) for each segment between neighbours. Frame k of an
animation at `fps` sits at time k / fps; `locate` finds its segment and the eased position u in [0, 1] inside it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from studio.latent.interp import MODES, interpolate

# u → eased u, each monotonic on [0, 1] with f(0) = 0 and f(1) = 1
EASINGS = {
    "linear": lambda u: u,
    "ease-in": lambda u: u * u,
    "ease-out": lambda u: 1.0 - (1.0 - u) * (1.0 - u),
    "ease-in-out": lambda u: u * u * (3.0 - 2.0 * u),  # smoothstep: zero speed at both ends
    "cubic": lambda u: 4.0 * u ** 3 if u < 0.5 else 1.0 - (-2.0 * u + 2.0) ** 3 / 2.0,
}


def ease(name: str, u: float) -> float:
    """`u` in [0, 1] through the easing `name` (ValueError naming the known ones)."""
    try:
        curve = EASINGS[name]
    except KeyError:
        raise ValueError(f"unknown easing {name!r} (known: {', '.join(EASINGS)})") from None
    return float(curve(min(max(float(u), 0.0), 1.0)))


def check_durations(durations: Sequence[float], keyframes: int, loop: bool = False) -> list[float]:
    """The segment durations of a timeline of `keyframes` keyframes (one more segment, back to the first, when
    looping), each positive and finite."""
    if keyframes < 2:
        raise ValueError(f"an animation needs at least two keyframes, got {keyframes}")
    wanted = keyframes if loop else keyframes - 1
    values = [float(d) for d in durations]
    if len(values) != wanted:
        raise ValueError(f"{keyframes} keyframes{' looping' if loop else ''} need {wanted} segment durations, "
                         f"got {len(values)}")
    bad = [d for d in values if not math.isfinite(d) or d <= 0]
    if bad:
        raise ValueError(f"segment durations must be positive seconds, got {bad[0]!r}")
    return values


def frame_count(durations: Sequence[float], fps: float) -> int:
    """Frames of an animation of these segments at `fps` (the last keyframe included unless it loops back)."""
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return max(1, int(round(sum(durations) * fps)))


def locate(time: float, durations: Sequence[float], easings: Sequence[str] | None = None) -> tuple[int, float]:
    """(segment index, eased position in [0, 1]) of `time` seconds; past the end: the last segment at 1."""
    starts = np.concatenate([[0.0], np.cumsum(durations)])
    time = min(max(float(time), 0.0), float(starts[-1]))
    segment = min(int(np.searchsorted(starts, time, side="right")) - 1, len(durations) - 1)
    u = (time - starts[segment]) / durations[segment]
    name = easings[segment] if easings is not None else "linear"
    return segment, ease(name, u)


def blend_values(a: Sequence[float], b: Sequence[float], u: float, mode: str = "slerp") -> tuple[float, ...]:
    """Latent values between two keyframes (slerp keeps the norm of Gaussian latents; lerp is a straight line)."""
    if mode not in MODES:
        raise ValueError(f"unknown interpolation {mode!r} (use {' or '.join(MODES)})")
    return interpolate(a, b, u, mode)


def blend_requests(a, b, u: float, mode: str = "slerp", defaults: Callable[[str], Any] | None = None):
    """The request between keyframe requests `a` and `b` at eased position `u`.

    Both must hold explicit latent values of the same model (a seed is turned into values before a keyframe is
    made). The latent follows `mode`; number params (guidance, strength, noise, direction offsets …) are interpolated
    linearly, a param missing on one side counting as its default (`defaults(name)`, the model's specs; without one,
    the nearer keyframe's value is taken); everything else (seed, class, prompt, sampler, steps, size, dtype) is
    taken from the nearer keyframe.
    """
    if a.model_id != b.model_id:
        raise ValueError(f"keyframes of different models ({a.model_id}, {b.model_id}) cannot be blended")
    if a.latent is None or b.latent is None:
        raise ValueError("keyframes need explicit latent values (take them from a render or the latent library)")
    near = a if u < 0.5 else b
    params = dict(near.params)
    for name in sorted(set(a.params) | set(b.params)):
        va, vb = a.params.get(name), b.params.get(name)
        default = defaults(name) if defaults is not None else None
        va = default if va is None else va
        vb = default if vb is None else vb
        if isinstance(va, float) and isinstance(vb, float):
            params[name] = va + u * (vb - va)
    return replace(near, latent=blend_values(a.latent, b.latent, u, mode), params=params)

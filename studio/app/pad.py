"""The 2-D latent pad's requests, with no Qt: which params a pad can drive, the request at a pad point (two params, or
a blend of four corner seeds' latents), and fetching those corner latents on the engine.

The mapping itself (axes, bilinear weights, renormalisation) is `studio.latent.pad`, NumPy only: a drag computes a
request per mouse move on the GUI thread, and the preview lane renders the newest. A seed pad's corner latents are
computed once per corner set on the worker (the engine's "latent" job, the path keyframes take), so a drag never
waits for torch.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from studio.latent.kinds import LatentKind, find_kind
from studio.latent.pad import CORNERS, PadAxis, blend_corners, clamp_point
from studio.params import CONDITION_GROUPS, DIRECTIONS, RAW, Kind, ParamTable
from studio.request import RenderRequest

if TYPE_CHECKING:  # the panels use this module and never import torch: the engine's side is named only for typing
    from studio.app.tasks import Handle, Runner
    from studio.steps import Output

ERROR = "error"  # studio.app.models.ERROR (a message level), not imported for the same reason
DIRECTIONS_MODE, SEEDS_MODE = "directions", "seeds"
PAD_MODES = (DIRECTIONS_MODE, SEEDS_MODE)
DEFAULT_REACH = 1.0  # a param without a slider span or range
Message = Callable[[str, str, str], None]


def pad_params(table: ParamTable, max_raw: int = 256) -> list[str]:
    """The number params a pad axis can drive: the model's latent-side FLOAT params (principal directions first,
    then the others — truncation, mixing, noise … — then raw dimensions, at most `max_raw` of them), in order."""
    firsts: list[str] = []
    others: list[str] = []
    raw: list[str] = []
    for spec in table:
        if spec.kind is not Kind.FLOAT or spec.is_core or spec.group in CONDITION_GROUPS:
            continue
        names = spec.names()
        if spec.group == RAW:
            raw += names[:max(0, max_raw - len(raw))]
        else:
            (firsts if spec.group == DIRECTIONS else others).extend(names)
    return firsts + others + raw


def axis_for(table: ParamTable, name: str, reach: float | None = None) -> PadAxis:
    """The pad axis of param `name`: centred on its default (0 when it has none), reaching `reach` either side
    (default: half its slider span, so the pad covers the slider), clamped to its hard range."""
    spec = table.spec(name)
    default = spec.default if isinstance(spec.default, (int, float)) else 0.0
    low, high = spec.range if spec.range is not None else (None, None)
    return PadAxis(name, float(default), default_reach(table, name) if reach is None else float(reach), low, high)


def default_reach(table: ParamTable, name: str) -> float:
    """Half the slider span of param `name` (DEFAULT_REACH when it has none)."""
    span = table.spec(name).slider_span
    return float(span[1] - span[0]) / 2 if span is not None and span[1] > span[0] else DEFAULT_REACH


def axis_values(request: RenderRequest, table: ParamTable, axes: Sequence[PadAxis]) -> list[float]:
    """Each axis param's value in `request` (its default, or the axis's base, when the request leaves it unset)."""
    out = []
    for axis in axes:
        value = request.params.get(axis.name, table.default(axis.name))
        out.append(float(value) if isinstance(value, (int, float)) else axis.base)
    return out


def pad_position(request: RenderRequest, table: ParamTable, x_axis: PadAxis, y_axis: PadAxis) -> tuple[float, float]:
    """Where `request` sits on a two-axis pad (values beyond the reach sit on the edge)."""
    vx, vy = axis_values(request, table, (x_axis, y_axis))
    return x_axis.position(vx), y_axis.position(vy)


def axes_request(request: RenderRequest, table: ParamTable, x_axis: PadAxis, y_axis: PadAxis, x: float,
                 y: float) -> RenderRequest:
    """`request` with the two axes' params at pad point (x, y) (clamped to the pad), checked against the model."""
    x, y = clamp_point(x, y)
    return table.check(request.with_params({x_axis.name: x_axis.value(x), y_axis.name: y_axis.value(y)}))


def corner_requests(request: RenderRequest, table: ParamTable, seeds: Sequence[int]) -> list[RenderRequest]:
    """The requests whose latents are the pad's corners: `request`'s model and settings with each corner seed and no
    latent edits (only the params a latent does not hold: the prompt, noise …). Edits act on top of the blend."""
    if len(seeds) != 4:
        raise ValueError(f"a seed pad has four corners, got {len(seeds)} seeds")
    kept = table.render_only(request)
    return [request.with_(seed=int(seed), latent=None, params=kept) for seed in seeds]


def renormalises(kinds: Sequence[LatentKind], size: int) -> bool:
    """Whether a blend of corner latents of `size` values is renormalised: yes when they are the seed's own draw (a
    latent kind named "z": a Gaussian sample), no for other kinds (a GAN's w is the mapping's output, not a Gaussian
    sample: the plain blend, as the StyleGAN3 visualizer does)."""
    kind = find_kind(kinds, size=size)
    return kind is None or kind.name == "z"


def seed_blend_request(request: RenderRequest, table: ParamTable, kinds: Sequence[LatentKind],
                       corners: Sequence[Sequence[float]], x: float, y: float) -> RenderRequest:
    """`request` with the blend of the corner latents at (x, y) as its explicit latent. Its edits stay (they act on
    the blend) except those that act only on a seed's draw (a variation), which an explicit latent ignores."""
    values = blend_corners(corners, x, y, renormalises(kinds, len(corners[0])))
    params = {k: v for k, v in request.params.items() if (spec := table.find(k)) is None or not spec.seeded_only}
    return request.with_(latent=tuple(values.astype(np.float32).tolist()), params=params)


class SeedCorners:
    """The four corner latents of a seed pad, computed on the engine's worker once per corner set (`runner`: the
    window's EngineBridge). `fetch` asks for a set; `on_ready()` is called (on the core's thread) once all four are in
    and they are still the set asked for last; failures go to `message`."""

    def __init__(self, runner: "Runner", message: Message, on_ready: Callable[[], None] | None = None):
        self.runner, self.message = runner, message
        self.on_ready = on_ready or (lambda: None)
        self.key: tuple[RenderRequest, ...] | None = None  # the corner requests asked for last
        self.latents: list[tuple[float, ...]] | None = None  # their latents, once all four are in
        self._got: dict[int, tuple[float, ...]] = {}
        self._tasks: list["Handle"] = []

    @property
    def ready(self) -> bool:
        return self.latents is not None

    @property
    def pending(self) -> bool:
        return self.key is not None and self.latents is None

    def fetch(self, requests: Sequence[RenderRequest]) -> bool:
        """Ask for the latents of four corner requests (nothing is asked when they are the set already in or on its
        way). True when they are ready now."""
        key = tuple(requests)
        if key == self.key:
            return self.ready
        self.cancel()
        self.key, self.latents, self._got = key, None, {}
        for index, corner in enumerate(key):
            self._tasks.append(self.runner.run(
                corner, f"Pad corner {CORNERS[index]} (seed {corner.seed})", kind="latent",
                on_done=partial(self._done, key, index), on_error=partial(self._failed, key, corner.seed),
                on_cancelled=_nothing))
        return False

    def cancel(self) -> None:
        """Stop fetching (a new set, a new model); what is in stays until the next set."""
        for task in self._tasks:
            task.job.cancel()
        self._tasks = []
        if self.latents is None:
            self.key = None

    def forget(self) -> None:
        self.cancel()
        self.key, self.latents, self._got = None, None, {}

    def _done(self, key: tuple, index: int, output: "Output") -> None:
        if key != self.key:
            return
        self._got[index] = tuple(float(v) for v in np.asarray(output.data, dtype=np.float64).reshape(-1))
        if len(self._got) == 4:
            sizes = {len(v) for v in self._got.values()}
            if len(sizes) != 1:
                self.key = None
                self.message(ERROR, "The pad's corner seeds give latents of different sizes",
                             f"sizes {sorted(sizes)}: the corners must be one model's seeds")
                return
            self.latents = [self._got[i] for i in range(4)]
            self._tasks = []
            self.on_ready()

    def _failed(self, key: tuple, seed: int, text: str, detail: str) -> None:
        if key != self.key:
            return
        self.cancel()
        self.key = None
        self.message(ERROR, f"Cannot compute the pad corner of seed {seed}: {text}", detail or text)


def _nothing() -> None:
    """A corner job cancelled (a newer set asked for): nothing to say."""

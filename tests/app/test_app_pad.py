"""The pad's requests (studio.app.pad), with no Qt and no engine: which params a pad drives, the request at a pad
point, the seed corners' requests and blend, and fetching corner latents through a runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

from studio.app.pad import (SeedCorners, axes_request, axis_for, corner_requests, pad_params, pad_position,
                            seed_blend_request)
from studio.latent.kinds import LatentKind
from studio.latent.pad import blend_corners
from studio.params import CONDITIONS, DIRECTIONS, RAW, SHAPING, Kind, ParamSpec, ParamTable
from studio.request import Params, RenderRequest
from studio.steps import Output

TABLE = ParamTable([
    ParamSpec("prompt", Kind.TEXT, default="Ab", group=CONDITIONS, render_only=True),
    ParamSpec("truncation", Kind.FLOAT, default=1.0, range=(-1.0, 2.0), group=SHAPING),
    ParamSpec("variation_seed", Kind.SEED, group=SHAPING, seeded_only=True),
    ParamSpec("variation_strength", Kind.FLOAT, default=0.0, range=(0.0, 1.0), group=SHAPING, seeded_only=True),
    ParamSpec("d", Kind.FLOAT, default=0.0, span=(-3.0, 3.0), count=3, group=DIRECTIONS),
    ParamSpec("layer_start", Kind.INT, default=0, range=(0, 8), group=DIRECTIONS),
    ParamSpec("noise", Kind.FLOAT, default=1.0, range=(0.0, 4.0), group=SHAPING, render_only=True),
    ParamSpec("z", Kind.FLOAT, default=0.0, span=(-3.0, 3.0), count=4, group=RAW),
])
REQUEST = RenderRequest("m", seed=7, params=Params({"prompt": "Hi", "d1": 0.5, "variation_seed": 3,
                                                    "variation_strength": 0.4, "noise": 0.5}))


def test_pad_params_are_the_latent_side_numbers_directions_first():
    assert pad_params(TABLE) == ["d0", "d1", "d2", "truncation", "variation_strength", "noise", "z0", "z1", "z2",
                                 "z3"]
    assert pad_params(TABLE, max_raw=2)[-2:] == ["z0", "z1"]


def test_axes_default_to_the_slider_span_and_clamp_to_the_range():
    d0 = axis_for(TABLE, "d0")
    assert (d0.base, d0.reach, d0.low, d0.high) == (0.0, 3.0, None, None)
    psi = axis_for(TABLE, "truncation")
    assert (psi.base, psi.reach, psi.low, psi.high) == (1.0, 1.5, -1.0, 2.0)
    assert axis_for(TABLE, "d2", reach=0.5).reach == 0.5


def test_a_pad_point_sets_both_params_and_keeps_the_rest():
    x_axis, y_axis = axis_for(TABLE, "d0"), axis_for(TABLE, "truncation")
    centre = axes_request(REQUEST, TABLE, x_axis, y_axis, 0, 0)
    assert centre.params["d0"] == 0.0 and centre.params["truncation"] == 1.0
    corner = axes_request(REQUEST, TABLE, x_axis, y_axis, 1, 1)
    assert corner.params["d0"] == 3.0 and corner.params["truncation"] == 2.0  # 1 + 1.5, clamped to ψ's range
    low = axes_request(REQUEST, TABLE, x_axis, y_axis, -4, -1)  # past the edge: the edge
    assert low.params["d0"] == -3.0 and low.params["truncation"] == -0.5
    assert {k: low.params[k] for k in ("prompt", "d1", "noise")} == {"prompt": "Hi", "d1": 0.5, "noise": 0.5}
    assert low.seed == 7 and low.latent is None
    assert isinstance(low.params["d0"], float)
    assert pad_position(low, TABLE, x_axis, y_axis) == (-1.0, pytest.approx(-1.0))
    assert pad_position(REQUEST, TABLE, x_axis, axis_for(TABLE, "d1")) == (0.0, pytest.approx(0.5 / 3))


def test_corner_requests_carry_the_seeds_and_no_latent_edits():
    explicit = REQUEST.with_(latent=(1.0, 2.0))
    corners = corner_requests(explicit, TABLE, [1, 2, 3, 4])
    assert [c.seed for c in corners] == [1, 2, 3, 4]
    assert all(c.latent is None and dict(c.params) == {"prompt": "Hi", "noise": 0.5} for c in corners)
    with pytest.raises(ValueError, match="four corners"):
        corner_requests(REQUEST, TABLE, [1, 2])


def test_the_seed_blend_is_an_explicit_latent_with_the_edits_kept():
    rng = np.random.default_rng(0)
    corners = rng.standard_normal((4, 8))
    z_kinds = (LatentKind("z", 8),)
    blended = seed_blend_request(REQUEST, TABLE, z_kinds, corners, 0.2, -0.4)
    assert blended.latent == tuple(float(v) for v in blend_corners(corners, 0.2, -0.4).astype(np.float32))
    assert "variation_seed" not in blended.params and "variation_strength" not in blended.params
    assert blended.params["d1"] == 0.5 and blended.params["prompt"] == "Hi"
    assert seed_blend_request(REQUEST, TABLE, z_kinds, corners, 0.2, -0.4) == blended  # deterministic
    # a GAN's w is blended plainly (no renormalisation)
    w_kinds = (LatentKind("w", 8), LatentKind("w+", 32, widens="w"))
    plain = seed_blend_request(REQUEST, TABLE, w_kinds, corners, 0, 0)
    np.testing.assert_allclose(plain.latent, corners.mean(0), rtol=1e-6)
    assert seed_blend_request(REQUEST, TABLE, z_kinds, corners, -1, 1).latent == \
        tuple(float(v) for v in corners[2].astype(np.float32))  # the top-left corner is s01


@dataclass
class Job:
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Task:
    request: RenderRequest
    on_done: Callable[[Output], None]
    on_error: Callable[[str, str], None]
    job: Job = field(default_factory=Job)


class Runner:
    """Records the latent jobs it is asked for; a test finishes them."""

    def __init__(self):
        self.tasks: list[Task] = []

    def run(self, request, label, on_done=None, on_error=None, then=None, kind="render", images=None, labels=None,
            on_cancelled=None):
        assert kind == "latent"
        self.tasks.append(Task(request, on_done, on_error))
        return self.tasks[-1]

    def finish(self, task: Task) -> None:
        task.on_done(Output("latent", np.arange(4, dtype=np.float32) + task.request.seed))


def test_corner_latents_are_fetched_once_per_set():
    runner, messages, ready = Runner(), [], []
    corners = SeedCorners(runner, lambda *m: messages.append(m), lambda: ready.append(True))
    requests = corner_requests(REQUEST, TABLE, [1, 2, 3, 4])
    assert corners.fetch(requests) is False and corners.pending
    assert [t.request.seed for t in runner.tasks] == [1, 2, 3, 4]
    assert corners.fetch(requests) is False and len(runner.tasks) == 4  # on its way: not asked again
    for task in reversed(runner.tasks):
        runner.finish(task)
    assert ready == [True] and corners.ready
    assert corners.latents == [tuple(float(v) for v in np.arange(4) + s) for s in (1, 2, 3, 4)]
    assert corners.fetch(requests) is True and len(runner.tasks) == 4
    # a new set cancels nothing finished, and the old set's late answers are ignored
    newer = corner_requests(REQUEST, TABLE, [5, 6, 7, 8])
    corners.fetch(newer)
    assert not corners.ready and len(runner.tasks) == 8
    runner.finish(runner.tasks[0])  # a late answer of the old set
    assert not corners.ready
    for task in runner.tasks[4:]:
        runner.finish(task)
    assert corners.ready and corners.latents[0][0] == 5.0 and messages == []


def test_a_failing_corner_says_which_and_cancels_the_others():
    runner, messages = Runner(), []
    corners = SeedCorners(runner, lambda *m: messages.append(m))
    corners.fetch(corner_requests(REQUEST, TABLE, [1, 2, 3, 4]))
    runner.tasks[1].on_error("out of memory", "CUDA out of memory")
    assert messages == [("error", "Cannot compute the pad corner of seed 2: out of memory", "CUDA out of memory")]
    assert all(t.job.cancelled for t in runner.tasks) and not corners.ready and not corners.pending


def test_the_error_level_is_the_apps():
    from studio.app import models, pad

    assert pad.ERROR == models.ERROR

"""The timeline record (studio.project.timeline): frame requests pass through the keyframes with their easing,
loops come back to the start, JSON round trips, and wrong fields are named."""

from __future__ import annotations

import json

import numpy as np

import pytest

from studio.errors import ProjectError
from studio.project.timeline import AudioMapping, Keyframe, Timeline
from studio.request import RenderRequest


def key(values, **kw) -> Keyframe:
    return Keyframe(RenderRequest("m", latent=tuple(values)), **kw)


def test_frames_pass_through_the_keyframes():
    timeline = Timeline((key([1, 0], duration=1.0, interpolation="lerp", easing="linear"),
                         key([0, 1], duration=1.0, interpolation="lerp", easing="linear"), key([-1, 0])), fps=4)
    requests = timeline.frame_requests()
    assert len(requests) == timeline.frames == 8
    assert requests[0].latent == pytest.approx((1, 0))
    assert requests[2].latent == pytest.approx((0.5, 0.5))
    assert requests[4].latent == pytest.approx((0, 1))
    assert timeline.request_at(2.0).latent == pytest.approx((-1, 0))  # the end holds the last keyframe


def test_easing_slows_the_ends_of_a_segment():
    linear = Timeline((key([0, 0], easing="linear", interpolation="lerp"), key([1, 0])), fps=10)
    eased = Timeline((key([0, 0], easing="ease-in-out", interpolation="lerp"), key([1, 0])), fps=10)
    assert eased.request_at(0.2).latent[0] < linear.request_at(0.2).latent[0]
    assert eased.request_at(1.0).latent[0] == pytest.approx(linear.request_at(1.0).latent[0])


def test_a_loop_returns_to_the_first_keyframe():
    timeline = Timeline((key([1, 0], duration=1, interpolation="lerp", easing="linear"),
                         key([0, 1], duration=1, interpolation="lerp", easing="linear")), fps=2, loop=True)
    requests = timeline.frame_requests()
    assert len(requests) == 4
    assert requests[3].latent == pytest.approx((0.5, 0.5))  # on the way back to the start


def test_json_round_trip():
    timeline = Timeline((key([1, 0], name="a"), key([0, 1], easing="cubic")), fps=30, loop=True, audio="beat.wav",
                        mappings=(AudioMapping("onsets", "d0", gain=2.0, release=0.3),
                                  AudioMapping("loudness", "speed")))
    again = Timeline.from_dict(json.loads(json.dumps(timeline.to_dict())))
    assert again == timeline


@pytest.mark.parametrize("change, field", [
    (lambda d: d["keyframes"][1].update(easing="bounce"), "keyframes[1].easing"),
    (lambda d: d["keyframes"][0].update(duration=0), "keyframes[0].duration"),
    (lambda d: d["keyframes"][0]["request"].update(seed=-1), "keyframes[0].request.seed"),
    (lambda d: d["keyframes"][0]["request"].update(latent=None), "keyframes[0].request.latent"),
    (lambda d: d["mappings"][0].update(target="wobble"), "mappings[0].target"),
    (lambda d: d["mappings"][0].update(envelope="tempo"), "mappings[0].envelope"),
    (lambda d: d.update(fps=0), "fps"),
    (lambda d: d["keyframes"][1]["request"].update(model_id="other"), "keyframes"),
    (lambda d: d.update(audio=""), "mappings"),
])
def test_wrong_fields_are_named(change, field):
    data = Timeline((key([1, 0]), key([0, 1])), audio="a.wav", mappings=(AudioMapping("onsets", "d0"),)).to_dict()
    change(data)
    with pytest.raises(ProjectError) as info:
        Timeline.from_dict(data)
    assert info.value.field == field


def test_one_keyframe_cannot_play():
    timeline = Timeline((key([1, 0]),))
    with pytest.raises(ProjectError, match="at least two keyframes"):
        timeline.frame_requests()


def test_a_direction_mapping_adds_the_shaped_envelope_to_the_edit():
    timeline = Timeline((key([1, 0]), key([0, 1])), fps=4, audio="beat.wav",
                        mappings=(AudioMapping("onsets", "d0", gain=2.0, attack=0.0, release=0.0),))
    onsets = np.zeros(8)
    onsets[3] = 1.0
    requests = timeline.frame_requests({"onsets": onsets})
    amounts = [dict(r.edits).get("d0", 0.0) for r in requests]
    assert amounts == pytest.approx([0, 0, 0, 2.0, 0, 0, 0, 0])
    with pytest.raises(ProjectError, match="onsets"):
        timeline.frame_requests()


def test_a_speed_mapping_runs_faster_where_the_sound_is_loud_and_keeps_the_length():
    plain = Timeline((key([0, 0], easing="linear", interpolation="lerp"), key([1, 0], duration=2.0)), fps=4)
    loud_first = np.array([1.0] * 4 + [0.0] * 4)
    mapped = Timeline(plain.keyframes, fps=4, audio="a.wav",
                      mappings=(AudioMapping("loudness", "speed", gain=3.0, release=0.0),))
    a = [r.latent[0] for r in plain.frame_requests()]
    b = [r.latent[0] for r in mapped.frame_requests({"loudness": loud_first})]
    assert len(a) == len(b) == 8 and b[0] == a[0] == 0.0 and b[-1] == pytest.approx(a[-1])
    assert b[2] > a[2]  # further along while the sound is loud
    assert all(y >= x for x, y in zip(b, b[1:]))  # never backwards

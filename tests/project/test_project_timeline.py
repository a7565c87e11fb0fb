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
    (lambda d: d["mappings"][0].update(target="Wobble!"), "mappings[0].target"),  # not a param name at all
    (lambda d: d["mappings"][0].update(target=""), "mappings[0].target"),
    (lambda d: d["mappings"][0].update(target=5), "mappings[0].target"),
    (lambda d: d["keyframes"][0]["request"]["params"].update(d0=float("inf")), "keyframes[0].request.params.d0"),
    (lambda d: d["keyframes"][0]["request"].update(params=[1]), "keyframes[0].request.params"),
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
    amounts = [r.param("d0", 0.0) for r in requests]
    assert amounts == pytest.approx([0, 0, 0, 2.0, 0, 0, 0, 0])
    assert all(type(r.param("d0")) is float for r in requests)
    with pytest.raises(ProjectError, match="onsets"):
        timeline.frame_requests()


def test_a_mapping_adds_to_the_keyframes_value_or_the_models_default():
    keys = (Keyframe(RenderRequest("m", latent=(1.0, 0.0), params={"truncation": 0.5})),
            Keyframe(RenderRequest("m", latent=(0.0, 1.0), params={"truncation": 0.5})))
    onsets = np.zeros(8)
    onsets[3] = 1.0
    shaped = Timeline(keys, fps=4, audio="beat.wav",
                      mappings=(AudioMapping("onsets", "truncation", gain=0.25, attack=0.0, release=0.0),
                                AudioMapping("onsets", "noise", gain=-0.5, attack=0.0, release=0.0)))
    defaults = {"truncation": 1.0, "noise": 1.0}.get  # the model's defaults (ParamTable.default)
    requests = shaped.frame_requests({"onsets": onsets}, defaults)
    assert [r.param("truncation") for r in requests] == pytest.approx([0.5, 0.5, 0.5, 0.75, 0.5, 0.5, 0.5, 0.5])
    # unset on the keyframes: it moves from the model's default
    assert [r.param("noise") for r in requests] == pytest.approx([1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0])


def test_a_mapping_onto_a_text_param_is_named_not_a_crash():
    keys = (Keyframe(RenderRequest("m", latent=(1.0, 0.0), params={"prompt": "Ab"})),
            Keyframe(RenderRequest("m", latent=(0.0, 1.0), params={"prompt": "Ab"})))
    timeline = Timeline(keys, fps=4, audio="beat.wav", mappings=(AudioMapping("onsets", "prompt"),))
    with pytest.raises(ProjectError) as info:
        timeline.frame_requests({"onsets": np.zeros(8)})
    assert info.value.field == "mappings[0].target" and "prompt" in str(info.value)
    labelled = Timeline((key([1, 0]), key([0, 1])), fps=4, audio="beat.wav",
                        mappings=(AudioMapping("onsets", "label"),))
    with pytest.raises(ProjectError) as info:  # the model's default is a class name
        labelled.frame_requests({"onsets": np.zeros(8)}, {"label": "kick"}.get)
    assert info.value.field == "mappings[0].target"


def test_a_mapping_onto_a_param_the_model_does_not_take_is_refused_by_its_specs():
    from studio.errors import RequestError
    from studio.params import Kind, ParamSpec, ParamTable

    table = ParamTable([ParamSpec("d", Kind.FLOAT, default=0.0, count=2)])
    timeline = Timeline((key([1, 0]), key([0, 1])), fps=4, audio="beat.wav",
                        mappings=(AudioMapping("onsets", "wobble"),))
    frames = timeline.frame_requests({"onsets": np.ones(8)}, table.default)
    with pytest.raises(RequestError) as info:
        table.check(frames[0])
    assert info.value.field == "params.wobble" and "d0…d1" in str(info.value)


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

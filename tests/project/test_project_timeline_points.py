"""In and out points of a timeline (studio.project.timeline): checked (0 ≤ in < out ≤ length), saved only when set
(older projects read unchanged), and the video plan renders only the frames between them with the sound cut to
match."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from studio.engine.work import video_plan
from studio.errors import ProjectError
from studio.project import Document
from studio.project.timeline import Keyframe, Timeline
from studio.request import RenderRequest


def key(values, **kw) -> Keyframe:
    return Keyframe(RenderRequest("m", latent=tuple(values)), **kw)


def three(**kw) -> Timeline:  # keyframes at 0, 1 and 3 s: 3 s long
    return Timeline((key([1, 0], duration=1.0), key([0, 1], duration=2.0), key([-1, 0])), fps=4, **kw)


@pytest.mark.parametrize("points, field, words", [
    ({"in_point": -0.5}, "in_point", "outside"),
    ({"out_point": 3.5}, "out_point", "outside"),
    ({"in_point": 2.0, "out_point": 1.0}, "in_point", "before the out point"),
    ({"in_point": 1.0, "out_point": 1.0}, "in_point", "before the out point"),
    ({"in_point": 3.0}, "in_point", "before the out point"),  # in at the end: nothing left
    ({"out_point": 0.0}, "out_point", "before the out point"),
    ({"in_point": "1"}, "in_point", "number of seconds"),
    ({"out_point": float("nan")}, "out_point", "number of seconds"),
    ({"in_point": True}, "in_point", "number of seconds"),
])
def test_points_are_checked_and_the_field_named(points, field, words):
    with pytest.raises(ProjectError) as caught:
        three(**points)
    assert caught.value.field == field and words in str(caught.value)


def test_points_round_trip_and_are_absent_when_unset():
    plain = three()
    assert "in_point" not in plain.to_dict() and "out_point" not in plain.to_dict()
    cut = three(in_point=0.5, out_point=2)
    data = json.loads(json.dumps(cut.to_dict()))
    assert data["in_point"] == 0.5 and data["out_point"] == 2.0
    assert Timeline.from_dict(data) == cut and isinstance(Timeline.from_dict(data).out_point, float)
    data["out_point"] = 9
    with pytest.raises(ProjectError) as caught:
        Timeline.from_dict(data)
    assert caught.value.field == "out_point"


def test_a_project_written_before_points_opens_unchanged():
    document = Document(timeline=three())
    data = document.to_dict()
    assert data["version"] == 2 and "in_point" not in data["timeline"]  # same format: the fields are optional
    assert Document.from_dict(data).timeline == three()
    data["timeline"]["in_point"] = 1.0
    assert Document.from_dict(data).timeline.span == (1.0, 3.0)
    data["timeline"]["in_point"] = 4.0
    with pytest.raises(ProjectError) as caught:
        Document.from_dict(data)
    assert caught.value.field == "timeline.in_point"


def test_the_frame_span_between_the_points():
    assert three().frame_span() == (0, 12)
    assert three(in_point=1.0).frame_span() == (4, 12)
    assert three(out_point=2.0).frame_span() == (0, 8)  # frames before the out point
    assert three(in_point=0.3, out_point=0.4).frame_span() == (2, 2 + 1)  # at least one frame
    assert three(in_point=1.1, out_point=2.6).frame_span() == (5, 11)
    looped = three(loop=True, out_point=4.5)  # looping: the way back to the first keyframe counts
    assert looped.length == 5.0 and looped.frame_span() == (0, 18)


def test_points_fit_a_timeline_that_got_shorter():
    cut = three(in_point=0.5, out_point=2.5)
    shorter = Timeline(cut.keyframes[:2], fps=4)  # 1 s long now
    assert shorter.fitted_points(0.5, 2.5).span == (0.5, 1.0) and shorter.fitted_points(0.5, 2.5).out_point is None
    assert shorter.fitted_points(1.5, 2.5).span == (0.0, 1.0)  # neither fits
    assert shorter.fitted_points(0.25, 0.75).span == (0.25, 0.75)


def test_the_video_plan_renders_only_between_the_points_with_the_sound_cut(tmp_path):
    rate = 8000
    sf.write(str(tmp_path / "tone.wav"), (0.5 * np.sin(np.arange(3 * rate) / 8)).astype(np.float32), rate)
    whole = three(audio="tone.wav")
    cut = three(audio="tone.wav", in_point=1.0, out_point=2.0)
    every = video_plan(whole, tmp_path / "v.mp4", tmp_path)
    part = video_plan(cut, tmp_path / "v.mp4", tmp_path)
    assert len(every.frames) == 12 and len(part.frames) == 4
    assert part.frames == every.frames[4:8]  # the same frames as the whole timeline's at those times
    assert part.audio is not None and every.audio is not None
    assert len(every.audio[0]) - len(part.audio[0]) == rate  # the sound starts at the in point
    assert np.array_equal(part.audio[0][:100], every.audio[0][rate:rate + 100])
    gif = video_plan(cut, tmp_path / "v.gif", tmp_path)
    assert len(gif.frames) == 4 and gif.audio is None

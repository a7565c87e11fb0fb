"""The example projects the app ships (resources/examples/): they open, use shipped models, and their timelines
render to video headless — one of them moved by a drum loop the sound model made."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from studio.cli import main
from studio.library import scan
from studio.project import load_document
from studio.project.timeline import frames_of

EXAMPLES = Path(__file__).resolve().parents[2] / "resources" / "examples"
MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("name", ["glyph-walk.lstudio", "beat-reactive.lstudio"])
def test_examples_open_use_shipped_models_and_play(name):
    document = load_document(EXAMPLES / name)
    shipped = {e.id: e for e in scan([MODELS]) if e.ok}
    timeline = document.timeline
    assert len(timeline.keyframes) >= 2
    for key in timeline.keyframes:
        assert key.request.model_id in shipped
    frames = frames_of(timeline, EXAMPLES)
    assert len(frames) == timeline.frames


def test_the_reactive_example_is_moved_by_its_sound():
    document = load_document(EXAMPLES / "beat-reactive.lstudio")
    timeline = document.timeline
    assert timeline.audio == "beat.wav" and (EXAMPLES / "beat.wav").exists()
    assert {m.target for m in timeline.mappings} == {"d0", "speed"}
    moved = [r.param("d0", 0.0) for r in frames_of(timeline, EXAMPLES)]
    assert max(moved) > 1.0 and min(moved) < 0.2  # the hits push the direction, and it falls back between them


def test_the_reactive_example_animates_with_its_sound(capsys, tmp_path):
    out = tmp_path / "beat.webm"
    code = main(["animate", str(EXAMPLES / "beat-reactive.lstudio"), "--out", str(out), "--fps", "6",
                 "--size", "128x32"])
    assert code == 0, capsys.readouterr().err
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
        frames = list(container.decode(video=0))
    assert len(frames) == 30 and (frames[0].width, frames[0].height) == (128, 32)  # 5 s at 6 fps

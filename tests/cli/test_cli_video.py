"""The command line's grid and animate verbs on tiny seeded models: labelled X/Y plots, a project's timeline rendered
to a video with its document inside, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_audio_package
from studio.cli import main
from studio.export import read_request
from studio.export.video import read_video_metadata
from studio.project import Document, load_document, save_document
from studio.project.timeline import AudioMapping, Keyframe, Timeline
from studio.request import RenderRequest


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_grid_draws_every_cell_with_labels_and_keeps_the_request(capsys, models_dir, tmp_path):
    out = tmp_path / "grid.png"
    code, stdout, err = run(capsys, "grid", "--models-dir", models_dir, "--model", "tiny", "--prompt", "Ab",
                            "--rows", "seed=0,1,2", "--cols", "d0=-2,2", "--out", out)
    assert code == 0, err
    assert "3 × 2 cells" in stdout
    with Image.open(out) as image:
        width, height = image.size
    assert width > 2 * 32 and height > 3 * 16  # the cells (32 × 16 each) and the labels around them
    assert read_request(out).param("prompt") == "Ab"


@pytest.mark.parametrize("axis, messages", [
    ("seed", ["NAME=V1,V2"]),
    ("wobble=1,2", ["--rows wobble", "no parameter 'wobble'", "d0…d3", "truncation"]),  # names what it takes
    ("d0=a,b", ["--rows d0", "needs a number", "'a'"]),
    ("d9=1,2", ["no parameter 'd9'", "d0…d3"]),  # the tiny model ships 4 directions
    ("mix_seed=1.5,2", ["whole number"]),
])
def test_grid_names_a_wrong_axis(capsys, models_dir, tmp_path, axis, messages):
    code, _, err = run(capsys, "grid", "--models-dir", models_dir, "--model", "tiny", "--rows", axis,
                       "--cols", "d0=1,2", "--out", tmp_path / "g.png")
    assert code == 1
    for message in messages:
        assert message in err, (message, err)
    assert not (tmp_path / "g.png").exists()


def test_grid_of_a_sound_model_is_refused(capsys, tmp_path):
    make_tiny_audio_package(tmp_path / "models" / "tiny-audio")
    code, _, err = run(capsys, "grid", "--models-dir", tmp_path / "models", "--model", "tiny-audio",
                       "--rows", "seed=1,2", "--cols", "d0=1,2", "--out", tmp_path / "g.png")
    assert code == 1 and "grid is made of images" in err


def project_with(tmp_path: Path, keyframes: int = 3, **timeline) -> Path:
    keys = tuple(Keyframe(RenderRequest("tiny", params={"prompt": "Ab"}, latent=tuple(float((i + j) % 3 - 1) for j in range(8))),
                          duration=0.5) for i in range(keyframes))
    doc = Document(request=keys[0].request if keys else None, timeline=Timeline(keys, **timeline))
    return save_document(doc, tmp_path / "walk.lstudio")


def test_animate_writes_the_timeline_as_a_video_with_the_document_inside(capsys, models_dir, tmp_path):
    project = project_with(tmp_path, fps=8)
    out = tmp_path / "walk.mp4"
    code, stdout, err = run(capsys, "animate", project, "--models-dir", models_dir, "--out", out, "--size", "64x32")
    assert code == 0, err
    assert "8 frames at 8 fps" in stdout
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape == (32, 64, 3)
    assert not np.array_equal(frames[0], frames[4])  # it moves
    stored = json.loads(read_video_metadata(out))
    assert len(stored["timeline"]["keyframes"]) == 3


def test_animate_renders_only_between_the_in_and_out_points(capsys, models_dir, tmp_path):
    whole = tmp_path / "whole.gif"
    code, _, err = run(capsys, "animate", project_with(tmp_path, fps=8), "--models-dir", models_dir, "--out", whole)
    assert code == 0, err
    project = project_with(tmp_path, fps=8, in_point=0.25, out_point=0.75)
    out = tmp_path / "cut.gif"
    code, stdout, err = run(capsys, "animate", project, "--models-dir", models_dir, "--out", out)
    assert code == 0, err
    assert "4 frames at 8 fps from 0.25 s to 0.75 s (the in/out points)" in stdout
    with av.open(str(whole)) as a, av.open(str(out)) as b:
        every = [f.to_ndarray(format="rgb24") for f in a.decode(video=0)]
        cut = [f.to_ndarray(format="rgb24") for f in b.decode(video=0)]
    assert len(every) == 8 and len(cut) == 4
    assert all(np.array_equal(x, y) for x, y in zip(cut, every[2:6]))  # frames 3–6 of the whole


def test_animate_with_a_sound_muxes_it_and_reacts_to_it(capsys, models_dir, tmp_path):
    import soundfile as sf

    rate = 8000
    t = np.arange(rate) / rate
    sf.write(str(tmp_path / "beat.wav"), (0.5 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.1)).astype(np.float32),
             rate)
    project = project_with(tmp_path, fps=8, audio="beat.wav", mappings=(AudioMapping("onsets", "d1", gain=2.0),))
    out = tmp_path / "beat.mp4"
    code, _, err = run(capsys, "animate", project, "--models-dir", models_dir, "--out", out)
    assert code == 0, err
    with av.open(str(out)) as container:
        assert container.streams.audio and container.streams.audio[0].codec_context.name == "aac"


def test_animate_names_what_is_missing(capsys, models_dir, tmp_path):
    one = project_with(tmp_path, keyframes=1)
    code, _, err = run(capsys, "animate", one, "--models-dir", models_dir, "--out", tmp_path / "x.mp4")
    assert code == 1 and "at least two keyframes" in err
    silent = tmp_path / "silent.wav"
    import soundfile as sf

    sf.write(str(silent), np.zeros(8000, np.float32), 8000)
    project = project_with(tmp_path, audio="silent.wav", mappings=(AudioMapping("loudness", "speed"),))
    code, _, err = run(capsys, "animate", project, "--models-dir", models_dir, "--out", tmp_path / "x.mp4")
    assert code == 1 and "silent" in err
    code, _, err = run(capsys, "animate", tmp_path / "nope.lstudio", "--out", tmp_path / "x.mp4")
    assert code == 1 and "nope.lstudio" in err
    assert not (tmp_path / "x.mp4").exists()
    assert load_document(project).timeline.audio == "silent.wav"  # the document is untouched

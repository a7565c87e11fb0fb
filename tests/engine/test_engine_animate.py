"""Animation export: one export job renders the frames in batches and an encoder thread writes the video."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from studio.engine import Cancelled, Engine
from studio.engine.animate import encode_frames, export_animation, render_frames, resize_frames
from studio.errors import ExportError, RequestError
from studio.export.video import VideoWriter
from studio.request import RenderRequest

FRAMES = 16


@pytest.fixture
def studio_engine(models_dir):
    engine = Engine(device="cpu", roots=[models_dir])
    yield engine
    engine.shutdown()


def walk(n: int = FRAMES, model_id: str = "tiny") -> list[RenderRequest]:
    """A walk along the first principal direction: 32×16 frames of "Ab", each different."""
    return [RenderRequest(model_id, seed=3, params={"prompt": "Ab", "d0": -3 + 6 * k / max(n - 1, 1)})
            for k in range(n)]


def decoded_mp4(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return len(frames), (frames[0].width, frames[0].height)


def encoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "latent-studio-encoder"]


def test_mp4_is_written_with_every_frame(studio_engine, tmp_path):
    events = []
    job = export_animation(studio_engine, walk(), tmp_path / "walk.mp4", fps=12, batch=5, on_event=events.append)
    output = job.wait(60)
    assert output.kind == "video" and output.info["frames"] == FRAMES and output.info["fps"] == 12
    assert output.info["path"] == str(tmp_path / "walk.mp4")
    assert decoded_mp4(tmp_path / "walk.mp4") == (FRAMES, (32, 16))
    progress = [e for e in events if e.kind == "progress"]
    assert [e.step for e in progress] == list(range(1, FRAMES + 1))
    assert {e.total for e in progress} == {FRAMES} and progress[-1].message == f"frame {FRAMES}/{FRAMES}"
    assert events[-1].kind == "finished" and job.kind == "animation"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "walk.mp4"] and not encoder_threads()


def test_gif_is_written_and_decodes_back(studio_engine, tmp_path):
    export_animation(studio_engine, walk(12), tmp_path / "walk.gif", fps=10, batch=4).wait(60)
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 12 and gif.size == (32, 16)


def test_size_rescales_the_frames(studio_engine, tmp_path):
    export_animation(studio_engine, walk(12), tmp_path / "big.mp4", fps=24, size=(64, 40)).wait(60)
    assert decoded_mp4(tmp_path / "big.mp4") == (12, (64, 40))


def test_cancel_mid_way_leaves_nothing(studio_engine, tmp_path):
    at_cancel = []

    def on_event(event):  # on the worker: two batches are with the encoder by then
        if event.kind == "progress" and event.step == 9:
            at_cancel.extend([len(encoder_threads()), sorted(p.name for p in tmp_path.glob(".long.mp4.*"))])
            event.job.cancel()

    job = export_animation(studio_engine, walk(400), tmp_path / "long.mp4", fps=24, batch=4, on_event=on_event)
    with pytest.raises(Cancelled):
        job.wait(120)
    assert job.state == "cancelled"
    assert at_cancel[0] == 1 and len(at_cancel[1]) == 1  # it was encoding into a temporary file
    assert list(tmp_path.iterdir()) == [tmp_path / "models"]  # no video, no temporary file
    assert not encoder_threads()


def test_encoder_error_is_the_jobs_error_and_leaves_nothing(studio_engine, tmp_path, monkeypatch):
    write = VideoWriter.write
    calls = []

    def failing_write(self, frames):
        calls.append(len(frames))
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        write(self, frames)

    monkeypatch.setattr(VideoWriter, "write", failing_write)
    job = export_animation(studio_engine, walk(), tmp_path / "broken.mp4", fps=12, batch=4)
    with pytest.raises(ExportError, match="disk on fire") as caught:
        job.wait(60)
    assert "broken.mp4" in str(caught.value) and job.state == "error"
    assert list(tmp_path.iterdir()) == [tmp_path / "models"]
    assert not encoder_threads()


def test_frames_of_two_models_are_refused(studio_engine, tmp_path):
    frames = walk(2) + [RenderRequest("tiny-plain", seed=1)]
    with pytest.raises(ValueError, match="tiny, tiny-plain"):
        export_animation(studio_engine, frames, tmp_path / "mixed.mp4", fps=12)
    assert not studio_engine.busy


def test_a_missing_folder_fails_before_any_rendering(studio_engine, tmp_path):
    events = []
    with pytest.raises(ExportError, match="does not exist") as caught:
        export_animation(studio_engine, walk(), tmp_path / "nowhere" / "walk.mp4", fps=12, on_event=events.append)
    assert "nowhere" in str(caught.value) and events == [] and not studio_engine.busy


def test_a_sound_model_cannot_be_animated(tmp_path):
    from conftest import make_tiny_audio_package

    make_tiny_audio_package(tmp_path / "models" / "tiny-audio")
    with Engine(device="cpu", roots=[tmp_path / "models"]) as engine:
        frames = [RenderRequest("tiny-audio", seed=k, params={"label": "snare"}) for k in range(3)]
        job = export_animation(engine, frames, tmp_path / "sound.mp4", fps=12)
        with pytest.raises(RequestError, match="only image models can be animated"):
            job.wait(60)
    assert list(tmp_path.iterdir()) == [tmp_path / "models"] and not encoder_threads()


def test_bare_pieces_render_and_encode(models_dir, tmp_path):
    import torch

    from studio.library import load_model, resolve

    model = load_model(resolve("tiny", [models_dir]), torch.device("cpu"), torch.float32)
    frames = render_frames(model, walk(5))
    assert frames.shape == (5, 16, 32, 1) and frames.dtype == np.uint8
    assert resize_frames(frames, (8, 4)).shape == (5, 4, 8, 1) and resize_frames(frames, None) is frames
    path = encode_frames(tmp_path / "bare.mp4", frames, fps=24, batch=2)
    assert path == tmp_path / "bare.mp4" and decoded_mp4(path) == (5, (32, 16))


def test_frames_of_different_sizes_need_a_video_size(models_dir, tmp_path):
    frames = [RenderRequest("tiny", params={"prompt": "Ab"}), RenderRequest("tiny", params={"prompt": "Abc"})]  # 32 and 48 pixels wide
    with Engine(device="cpu", roots=[models_dir]) as engine:
        with pytest.raises(ExportError, match="all frames need one size"):
            export_animation(engine, frames, tmp_path / "a.mp4", fps=4).wait(30)
        export_animation(engine, frames, tmp_path / "b.mp4", fps=4, size=(64, 32)).wait(30)
    assert not (tmp_path / "a.mp4").exists()
    with av.open(str(tmp_path / "b.mp4")) as container:
        assert [(f.width, f.height) for f in container.decode(video=0)] == [(64, 32), (64, 32)]

"""Export output size (studio.export.scale): ×1–×16 nearest or smooth, or a width × height, in the export path
only — the file's request stays the model's and its `parameters` note the scale; on the command line as render /
animate --scale and --filter."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.errors import ExportError
from studio.export import read_request, save_image
from studio.export.scale import OutputSize
from studio.request import RenderRequest


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


def strip(width: int = 256, height: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 1), dtype=np.uint8)


def test_nearest_x4_repeats_every_pixel():
    image = strip()
    out = OutputSize(4, "nearest").apply(image)
    assert out.shape == (256, 1024, 1)  # the glyph models' 256×64 becomes 1024×256
    assert np.array_equal(out[::4, ::4], image) and np.array_equal(out[3::4, 1::4], image)


def test_smooth_and_size():
    image = strip(32, 16)[..., 0]
    smooth = OutputSize(3, "smooth").apply(image)
    assert smooth.shape == (48, 96)
    assert not np.array_equal(smooth, OutputSize(3, "nearest").apply(image))  # Lanczos blends, nearest repeats
    assert OutputSize(size=(50, 20), filter="smooth").apply(image).shape == (20, 50)
    assert OutputSize().apply(image) is image


@pytest.mark.parametrize("make, problem", [
    (lambda: OutputSize(0), "1 to 16"), (lambda: OutputSize(17), "1 to 16"), (lambda: OutputSize(2.0), "1 to 16"),
    (lambda: OutputSize(2, "bicubic"), "nearest or smooth"), (lambda: OutputSize(2, size=(4, 4)), "not both"),
    (lambda: OutputSize(size=(0, 4)), "1 to 8192"), (lambda: OutputSize.parse("x", None, None), "--scale"),
    (lambda: OutputSize.parse(None, None, "12"), "--size"),
    (lambda: OutputSize(16).apply(np.zeros((1024, 1024), np.uint8)), "1 to 8192"),
])
def test_bad_output_sizes_are_refused(make, problem):
    with pytest.raises(ExportError, match=problem):
        make()


def test_the_note_reads_back():
    for size in (OutputSize(4, "nearest"), OutputSize(2, "smooth"), OutputSize(size=(500, 100), filter="smooth")):
        assert OutputSize.from_description(size.describe(256, 64)) == size
    assert OutputSize.from_description("big") is None and OutputSize.from_description("9x9 (×99 nearest)") is None


def test_scaled_image_keeps_the_models_request_and_notes_the_scale(tmp_path):
    request = RenderRequest("glyphs", seed=5, params={"prompt": "Ab"})
    path = save_image(tmp_path / "x.png", np.repeat(strip(), 3, axis=2), request, model_name="Glyphs",
                      output_size=OutputSize(4, "nearest"))
    with Image.open(path) as image:
        assert image.size == (1024, 256)
        parameters = image.text["parameters"]
    assert read_request(path) == request  # the request stays the model's
    assert "Size: 256x64" in parameters and "Export size: 1024x256 (×4 nearest)," in parameters


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_render_scale(capsys, models_dir, tmp_path):
    plain, big = tmp_path / "plain.png", tmp_path / "big.png"
    assert run(capsys, "render", "--models-dir", models_dir, "--model", "tiny", "--seed", "3", "--out", plain)[0] == 0
    code, out, err = run(capsys, "render", "--models-dir", models_dir, "--model", "tiny", "--seed", "3",
                         "--scale", "4", "--filter", "nearest", "--out", big)
    assert code == 0, err
    assert "128x64" in out  # the tiny model's 32×16, four times
    with Image.open(plain) as a, Image.open(big) as b:
        small, large = np.asarray(a), np.asarray(b)
    assert np.array_equal(large[::4, ::4], small)
    assert read_request(big) == read_request(plain)
    again, native = tmp_path / "again.png", tmp_path / "native.png"
    code, out, err = run(capsys, "render", "--models-dir", models_dir, "--from", big, "--out", again)
    assert code == 0, err  # `--from` writes the file again at the scale its parameters record
    with Image.open(again) as c:
        assert np.array_equal(np.asarray(c), large)
    assert run(capsys, "render", "--models-dir", models_dir, "--from", big, "--scale", "1", "--out", native)[0] == 0
    with Image.open(native) as d:
        assert np.array_equal(np.asarray(d), small)
    code, _, err = run(capsys, "render", "--models-dir", models_dir, "--model", "tiny", "--scale", "40",
                       "--out", tmp_path / "no.png")
    assert code == 1 and "1 to 16" in err and not (tmp_path / "no.png").exists()


def test_cli_animate_scale(capsys, models_dir, tmp_path):
    from studio.project import Document, save_document
    from studio.project.timeline import Keyframe, Timeline

    keys = tuple(Keyframe(RenderRequest("tiny", params={"prompt": "Ab"}, latent=tuple(float((i + j) % 3 - 1)
                                                                                      for j in range(8))),
                          duration=0.5) for i in range(2))
    project = save_document(Document(request=keys[0].request, timeline=Timeline(keys, fps=4)), tmp_path / "w.lstudio")
    out = tmp_path / "walk.mp4"
    code, _, err = run(capsys, "animate", project, "--models-dir", models_dir, "--out", out, "--scale", "4",
                       "--filter", "nearest")
    assert code == 0, err
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (128, 64)


def test_a_frame_range_cuts_the_sound_to_start_with_its_first_frame():
    from studio.engine.work import VideoPlan, frame_range

    frames = tuple(RenderRequest("tiny", seed=i) for i in range(10))
    wave = np.arange(1000, dtype=np.float32)  # 100 samples per frame at 10 fps, 1000 Hz
    part = frame_range(VideoPlan(frames, 10.0, (wave, 1000)), 3, 6)
    assert [r.seed for r in part.frames] == [2, 3, 4, 5] and part.fps == 10.0
    assert part.audio is not None and part.audio[0][0] == 200 and part.audio[1] == 1000
    with pytest.raises(Exception, match="outside the timeline's frames 1..10"):
        frame_range(VideoPlan(frames, 10.0, None), 0, 4)

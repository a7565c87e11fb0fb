"""Video export: MP4 (H.264 + AAC), WebM (VP9 + Opus), GIF (Pillow) and PNG frame folders, streamed and atomic."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from studio.errors import ExportError, RequestError
from studio.export.video import VIDEO_FORMATS, VideoWriter, read_video_metadata

W, H, N, FPS = 64, 48, 20, 10


def clip(n: int = N, width: int = W, height: int = H, channels: int = 3) -> np.ndarray:
    """Smooth, moving gradients: easy to encode, so a decoded frame must be close to what was written."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(n):
        r = 128 + 100 * np.sin((x + 3 * t) / 9.0)
        g = 128 + 100 * np.cos((y - 2 * t) / 7.0)
        b = (x + y + 5 * t) % 256 * 0.5 + 60
        frames.append(np.stack([r, g, b], axis=-1))
    out = np.clip(np.stack(frames), 0, 255).astype(np.uint8)
    return out[..., :1] if channels == 1 else out


def tone(seconds: float, rate: int, channels: int = 2) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32), rate


def write(path: Path, frames: np.ndarray, batch: int = 7, **kwargs) -> Path:
    with VideoWriter(path, FPS, **kwargs) as writer:
        for start in range(0, len(frames), batch):
            writer.write(frames[start:start + batch])
    return path


def decode(path: Path) -> tuple[np.ndarray, av.container.InputContainer]:
    container = av.open(str(path))
    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    container.seek(0)
    return frames, container


def audio_seconds(container) -> float:
    container.seek(0)
    stream = container.streams.audio[0]
    return sum(f.samples for f in container.decode(stream)) / stream.rate


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


BIG_JSON = json.dumps({"document": "Ünïcødé ✓ 東京 — " * 800, "layers": list(range(500))}, ensure_ascii=False)


# --- MP4 and WebM -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, codec, audio_codec", [(".mp4", "h264", "aac"), (".webm", "vp9", "opus")])
def test_video_round_trip_with_sound(tmp_path, suffix, codec, audio_codec):
    frames = clip()
    path = write(tmp_path / f"clip{suffix}", frames, audio=tone(5.0, 22050), metadata=BIG_JSON)
    assert leftovers(tmp_path) == [path.name]
    decoded, container = decode(path)
    with container:
        video = container.streams.video[0]
        assert video.codec_context.name == codec
        assert decoded.shape == (N, H, W, 3)
        assert video.average_rate == FPS
        assert np.abs(decoded.astype(int) - frames).mean() < 4  # high quality: close to what was written
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == audio_codec
        # the sound (5 s) is cut to the video's length, N / FPS = 2 s (codec padding allowed)
        assert audio_seconds(container) == pytest.approx(N / FPS, abs=0.08)
    assert read_video_metadata(path) == BIG_JSON


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_short_sound_is_padded_and_mono_works(tmp_path, suffix):
    mono = tone(0.5, 44100, channels=1)[0][:, 0]  # (samples,)
    path = write(tmp_path / f"clip{suffix}", clip(), audio=(mono, 44100))
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.channels == 1
        assert audio_seconds(container) == pytest.approx(N / FPS, abs=0.08)
        container.seek(0)
        wave = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
        rate = stream.rate
    assert np.abs(wave[int(0.1 * rate):int(0.4 * rate)]).max() > 0.1  # the tone, then silence
    assert np.abs(wave[int(0.7 * rate):int(1.9 * rate)]).max() < 0.01


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_no_sound_no_audio_stream(tmp_path, suffix):
    path = write(tmp_path / f"clip{suffix}", clip())
    decoded, container = decode(path)
    with container:
        assert len(container.streams.audio) == 0
        assert len(decoded) == N
        assert float(container.duration / av.time_base) == pytest.approx(N / FPS, abs=0.11)
    assert read_video_metadata(path) is None


def test_odd_size_mp4_is_padded_webm_is_not(tmp_path):
    frames = clip(width=65, height=49)
    mp4 = write(tmp_path / "odd.mp4", frames)
    webm = write(tmp_path / "odd.webm", frames)
    decoded, container = decode(mp4)
    container.close()
    assert decoded.shape == (N, 50, 66, 3)  # one pixel more each way: H.264 in yuv420p needs even sizes
    assert np.abs(decoded[:, :49, :65].astype(int) - frames).mean() < 4
    assert np.abs(decoded[:, 49, :65].astype(int) - frames[:, 48]).mean() < 8  # the last row, repeated
    decoded, container = decode(webm)
    container.close()
    assert decoded.shape == (N, 49, 65, 3)


def test_grey_frames_become_rgb(tmp_path):
    grey = clip(channels=1)
    decoded, container = decode(write(tmp_path / "grey.mp4", grey))
    container.close()
    assert decoded.shape == (N, H, W, 3)
    assert np.abs(decoded.astype(int) - grey).mean() < 4


def test_size_given_up_front_and_ntsc_rate(tmp_path):
    path = tmp_path / "ntsc.mp4"
    with VideoWriter(path, 30000 / 1001, size=(W, H), quality="low") as writer:
        writer.write(clip(5))
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)


def test_sound_at_an_odd_rate_is_resampled(tmp_path):
    path = write(tmp_path / "clip.mp4", clip(), audio=tone(2.0, 37000))  # AAC has no 37 kHz
    with av.open(str(path)) as container:
        assert container.streams.audio[0].rate == 48000
        assert audio_seconds(container) == pytest.approx(N / FPS, abs=0.08)


# --- GIF and PNG frames -----------------------------------------------------------------------------------------


def test_gif(tmp_path):
    frames = clip()
    path = write(tmp_path / "anim.gif", frames, metadata=BIG_JSON)
    assert leftovers(tmp_path) == ["anim.gif"]
    with Image.open(path) as image:
        assert image.n_frames == N and image.size == (W, H)
        assert image.info["loop"] == 0
        durations, decoded = [], []
        for index in range(N):
            image.seek(index)
            durations.append(image.info["duration"])
            decoded.append(np.asarray(image.convert("RGB")))
    assert durations == [100] * N  # 10 fps
    assert np.abs(np.stack(decoded).astype(int) - frames).mean() < 8  # palette + dithering
    assert read_video_metadata(path) == BIG_JSON


def test_gif_delays_keep_the_total_time(tmp_path):
    path = tmp_path / "anim.gif"
    with VideoWriter(path, 24) as writer:
        writer.write(clip(24))
    with Image.open(path) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
    assert sum(durations) == 1000 and set(durations) <= {40, 50}


def test_png_frames(tmp_path):
    frames = clip()
    folder = write(tmp_path / "frames", frames, metadata=BIG_JSON)
    assert leftovers(tmp_path) == ["frames"]
    names = leftovers(folder)
    assert names == [f"frame-{i:06d}.png" for i in range(1, N + 1)]
    decoded = np.stack([np.asarray(Image.open(folder / name).convert("RGB")) for name in names])
    assert np.array_equal(decoded, frames)  # lossless
    assert read_video_metadata(folder) == BIG_JSON
    assert read_video_metadata(folder / names[-1]) == BIG_JSON


def test_png_frames_replace_an_earlier_export_but_not_other_files(tmp_path):
    folder = write(tmp_path / "frames", clip())
    write(folder, clip(3), metadata="{}")
    assert leftovers(folder) == [f"frame-{i:06d}.png" for i in (1, 2, 3)]
    assert leftovers(tmp_path) == ["frames"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="other files"):
        VideoWriter(folder, FPS)
    assert (folder / "notes.txt").exists()
    assert leftovers(tmp_path) == ["frames"]


@pytest.mark.parametrize("name", ["anim.gif", "frames"])
def test_gif_and_png_take_no_sound(tmp_path, name):
    with pytest.raises(ExportError, match="cannot carry sound"):
        VideoWriter(tmp_path / name, FPS, audio=tone(1.0, 22050))
    assert leftovers(tmp_path) == []


# --- errors and aborting ------------------------------------------------------------------------------------------


def test_formats():
    assert set(VIDEO_FORMATS) == {".mp4", ".webm", ".gif", ""}


def test_unknown_suffix(tmp_path):
    with pytest.raises(ExportError, match=r"unknown video format \.avi") as info:
        VideoWriter(tmp_path / "clip.avi", FPS)
    assert info.value.path == str(tmp_path / "clip.avi")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["clip.mp4", "anim.gif", "frames"])
def test_missing_folder(tmp_path, name):
    with pytest.raises(ExportError, match="does not exist") as info:
        VideoWriter(tmp_path / "nowhere" / name, FPS)
    assert info.value.path == str(tmp_path / "nowhere")


@pytest.mark.parametrize("fps", [0, -5, float("nan"), "fast"])
def test_bad_arguments(tmp_path, fps):
    with pytest.raises(ExportError, match="frame rate"):
        VideoWriter(tmp_path / "clip.mp4", fps)
    with pytest.raises(ExportError, match="quality"):
        VideoWriter(tmp_path / "clip.mp4", FPS, quality="best")
    with pytest.raises(ExportError, match="at most 50"):
        VideoWriter(tmp_path / "anim.gif", 60)
    with pytest.raises(ExportError, match="1 or 2 channels"):
        VideoWriter(tmp_path / "clip.mp4", FPS, audio=(np.zeros((100, 6), np.float32), 48000))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "anim.gif", "frames"])
def test_wrong_size_mid_stream_aborts(tmp_path, name):
    writer = VideoWriter(tmp_path / name, FPS, audio=tone(1.0, 48000) if "." in name and "gif" not in name else None)
    writer.write(clip(4))
    with pytest.raises(ExportError, match=r"frame size 32x48 does not match the video's 64x48 \(frame 5\)") as info:
        writer.write(clip(2, width=32))
    assert info.value.path == str(tmp_path / name)
    assert leftovers(tmp_path) == []
    with pytest.raises(ExportError, match="aborted"):
        writer.write(clip(1))


@pytest.mark.parametrize("bad, problem", [(np.zeros((2, H, W, 3), np.float32), "uint8"),
                                          (np.zeros((H, W, 3), np.uint8), "batch"),
                                          (np.zeros((2, H, W, 4), np.uint8), "batch")])
def test_bad_frames(tmp_path, bad, problem):
    writer = VideoWriter(tmp_path / "clip.mp4", FPS)
    with pytest.raises(ExportError, match=problem):
        writer.write(bad)
    assert leftovers(tmp_path) == []


def test_size_given_must_match(tmp_path):
    writer = VideoWriter(tmp_path / "clip.webm", FPS, size=(32, 32))
    with pytest.raises(ExportError, match="does not match"):
        writer.write(clip(1))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "anim.gif", "frames"])
def test_write_after_close(tmp_path, name):
    writer = VideoWriter(tmp_path / name, FPS)
    writer.write(clip(3))
    assert writer.close() == tmp_path / name
    assert writer.close() == tmp_path / name  # closing twice is harmless
    with pytest.raises(ExportError, match="already closed") as info:
        writer.write(clip(1))
    assert info.value.path == str(tmp_path / name)
    writer.abort()  # does not remove a finished video
    assert leftovers(tmp_path) == [name]


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "anim.gif", "frames"])
def test_exception_in_with_block_leaves_nothing(tmp_path, name):
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(tmp_path / name, FPS) as writer:
            writer.write(clip(5))
            raise RuntimeError("boom")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["clip.mp4", "frames"])
def test_abort_removes_everything_and_keeps_an_old_file(tmp_path, name):
    old = write(tmp_path / name, clip(2))
    writer = VideoWriter(old, FPS)
    writer.write(clip(5))
    assert len(leftovers(tmp_path)) == 2  # the old one and the temporary one
    writer.abort()
    writer.abort()
    assert leftovers(tmp_path) == [name]
    with pytest.raises(ExportError, match="aborted"):
        writer.close()
    if old.is_dir():
        assert len(leftovers(old)) == 2
    else:
        with av.open(str(old)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 2


def test_no_frames_is_an_error(tmp_path):
    with pytest.raises(ExportError, match="no frames"):
        with VideoWriter(tmp_path / "clip.mp4", FPS):
            pass
    assert leftovers(tmp_path) == []


def test_dropped_writer_removes_its_temporary_file(tmp_path):
    writer = VideoWriter(tmp_path / "clip.webm", FPS)
    writer.write(clip(2))
    del writer
    import gc

    gc.collect()
    assert leftovers(tmp_path) == []


def test_existing_file_is_replaced(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"old")
    write(path, clip())
    assert path.read_bytes()[4:8] == b"ftyp"


def test_read_video_metadata_errors(tmp_path):
    with pytest.raises(RequestError, match="not found"):
        read_video_metadata(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(RequestError) as info:
        read_video_metadata(tmp_path / "junk.mp4")
    assert info.value.path == str(tmp_path / "junk.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RequestError, match="no PNG frames"):
        read_video_metadata(tmp_path / "empty")

"""Limits on projects and timelines: a project is read as a regular file of bounded size and depth, and the keyframe
count, each duration, the total length and the frame count are checked when it loads and when frames are counted,
so a hostile project never hangs `animate`; each refusal is one short line naming the file and the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from studio.errors import ExportError, ProjectError
from studio.limits import MAX_DURATION, MAX_FRAMES, MAX_KEYFRAMES
from studio.project import Document, load_document, save_document
from studio.project.timeline import Keyframe, Timeline
from studio.request import RenderRequest

ROOT = Path(__file__).resolve().parents[2]


def _short(exc: BaseException, *parts: str) -> str:
    message = str(exc)
    assert "\n" not in message and len(message) < 400, message
    for part in parts:
        assert part in message, message
    return message


def _project(tmp_path: Path, change=None, name: str = "film.lstudio") -> Path:
    """A saved project with a two-keyframe timeline, its JSON changed by `change(data)`."""
    keys = tuple(Keyframe(RenderRequest("glyphs", latent=(float(i),) * 32), duration=1.0) for i in range(2))
    doc = Document()
    doc.timeline = Timeline(keys, fps=12)
    path = save_document(doc, tmp_path / name)
    if change is not None:
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data["timeline"])
        path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _refused(path: Path, field: str, *words: str) -> str:
    with pytest.raises(ProjectError) as info:
        load_document(path)
    assert info.value.path == str(path) and info.value.field == field, str(info.value)
    return _short(info.value, path.name, field, *words)


def test_a_million_keyframes_are_refused_before_any_is_read(tmp_path):
    # each "keyframe" is a bare number: were they read one by one, the first would fail instead
    path = _project(tmp_path, lambda t: t.update(keyframes=[0] * 1_000_000))
    _refused(path, "timeline.keyframes", "1,000,000", f"{MAX_KEYFRAMES:,}")


def test_one_keyframe_lasting_a_million_seconds_is_refused(tmp_path):
    def change(t):
        t["keyframes"][1]["duration"] = 1e6
    path = _project(tmp_path, change)
    _refused(path, "timeline.keyframes[1].duration", "1e+06", "limit")


def test_durations_that_add_up_past_the_limit_are_refused(tmp_path):
    def change(t):
        for k in t["keyframes"]:
            k["duration"] = MAX_DURATION * 0.75
    _refused(_project(tmp_path, change), "timeline.keyframes", "in all")


def test_a_duration_that_overflows_the_frame_count_is_refused(tmp_path):
    def change(t):
        t["keyframes"][0]["duration"] = 1e308
    _refused(_project(tmp_path, change), "timeline.keyframes[0].duration", "limit")


def test_a_length_and_rate_past_the_frame_limit_are_refused(tmp_path):
    def change(t):
        t["fps"] = 120
        for k in t["keyframes"]:
            k["duration"] = MAX_DURATION / 2
    message = _refused(_project(tmp_path, change), "timeline.fps", "frames")
    assert f"{MAX_FRAMES:,}" in message


def test_the_frame_count_is_checked_when_it_is_computed():
    keys = tuple(Keyframe(RenderRequest("glyphs", latent=(0.0,)), duration=1.0) for _ in range(2))
    timeline = Timeline(keys, fps=12)
    assert timeline.frames == 12
    object.__setattr__(timeline, "fps", 1e9)  # past the constructor's checks, as a bug elsewhere could
    with pytest.raises(ProjectError) as info:
        timeline.frames
    _short(info.value, "frames", "limit")


def test_a_project_nested_100000_deep_is_one_line(tmp_path):
    path = tmp_path / "deep.lstudio"
    path.write_text('{"format": "latent-studio-project", "version": 2, "timeline": ' + "[" * 100_000
                    + "]" * 100_000 + "}", encoding="utf-8")
    with pytest.raises(ProjectError) as info:
        load_document(path)
    _short(info.value, "deep.lstudio", "nested")


def test_a_huge_project_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.lstudio"
    with open(path, "wb") as f:
        f.truncate(300 << 20)  # sparse
    with pytest.raises(ProjectError) as info:
        load_document(path)
    _short(info.value, "huge.lstudio", "over the limit")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_project_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.lstudio"
    os.mkfifo(path)
    result: dict = {}

    def load():
        try:
            load_document(path)
        except ProjectError as exc:
            result["error"] = exc

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "load_document blocked on a FIFO"
    _short(result["error"], "pipe.lstudio", "FIFO")


def test_the_video_writer_stops_at_the_frame_limit(tmp_path, monkeypatch):
    import studio.export.video as video

    monkeypatch.setattr(video, "MAX_FRAMES", 3)
    writer = video.VideoWriter(tmp_path / "frames", fps=12)
    writer.write(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ExportError) as info:
        writer.write(np.zeros((2, 8, 8, 3), np.uint8))
    _short(info.value, "frames", "limit")
    assert not (tmp_path / "frames").exists()


# --- animate from the command line ---------------------------------------------------------------------------------


def _animate(project: Path, tmp_path: Path) -> str:
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}
    result = subprocess.run(["timeout", "60", sys.executable, "-m", "studio", "animate", str(project), "--out",
                             str(tmp_path / "film.mp4")], cwd=tmp_path, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-2000:]
    assert "Traceback" not in out and "unexpected error" not in out, out[-2000:]
    assert len(out.strip().splitlines()) == 1 and project.name in out, out[-2000:]
    assert not (tmp_path / "film.mp4").exists()
    return out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_animate_on_a_fifo_project_exits_at_once(tmp_path):
    path = tmp_path / "pipe.lstudio"
    os.mkfifo(path)
    assert "FIFO" in _animate(path, tmp_path)


def test_animate_on_a_keyframe_lasting_a_million_seconds_is_one_line(tmp_path):
    def change(t):
        t["keyframes"][0]["duration"] = 1e6
    out = _animate(_project(tmp_path, change), tmp_path)
    assert "timeline.keyframes[0].duration" in out

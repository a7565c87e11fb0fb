"""The timeline playback benchmark runs end to end on a tiny package (its timings are reported, never asserted)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

SCRIPT = Path(__file__).resolve().parent / "bench_timeline.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_timeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_timeline_plays_and_counts_frames(qapp, models_dir, capsys):
    code = load_script().main(["--models-dir", str(models_dir), "--model", "tiny", "--device", "cpu",
                               "--seconds", "0.6", "--fps", "12", "--sound-minutes", "0.05"])
    out = capsys.readouterr().out
    assert code == 0, out
    played = re.search(r"playing at 12 fps for [0-9.]+ s: (\d+) of (\d+) frames shown = ([0-9.]+) fps achieved", out)
    assert played, out
    shown, due, achieved = int(played.group(1)), int(played.group(2)), float(played.group(3))
    assert 1 <= shown <= due and math.isfinite(achieved)
    assert re.search(r"a 0.05-minute WAV with one mapping: waveform on the track after [0-9.]+ s, its curve after [0-9.]+ s", out)
    assert re.search(r"idle baseline \(0.6 s, nothing playing\): GUI stall max [0-9.]+ ms", out)
    assert re.search(r"\(budget ≤ 16: (PASS|OVER);", out)


def test_bench_timeline_without_the_model_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path))
    assert load_script().main(["--model", "no-such-model", "--seconds", "0.2"]) == 2
    assert "no-such-model" in capsys.readouterr().err

"""The nn~ benchmark runs end to end on a tiny model and prints finite figures (timings are reported, never
asserted)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "bench_nn_tilde.py"


def test_bench_nn_tilde_prints_the_real_time_factor_and_preview_latency(capsys):
    spec = importlib.util.spec_from_file_location(SCRIPT.stem, SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--tiny", "--seconds", "1", "--preview-seconds", "0.25", "--repeats", "2",
                       "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rtf = float(re.search(r"real-time factor\s*:\s*([0-9.eE+-]+) x", out).group(1))
    engine = float(re.search(r"engine \(worker\): ([0-9.]+) ms median", out).group(1))
    assert math.isfinite(rtf) and rtf > 0 and math.isfinite(engine) and engine > 0
    assert "render 1.0 s of sound" in out and "64 samples per latent frame" in out

"""The export benchmark runs end to end on a tiny package (its timings are reported, never asserted)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "bench_export.py"


def load_script():
    spec = importlib.util.spec_from_file_location(SCRIPT.stem, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_export_main_prints_finite_rates_and_the_budget(models_dir, capsys):
    code = load_script().main(["--models-dir", str(models_dir), "--model", "tiny", "--device", "cpu",
                               "--frames", "10", "--repeats", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    for label in ("bare decode", "bare encode", "export \\(pipelined\\)", "naive loop"):
        rate = float(re.search(rf"{label}\s*:\s*([0-9.eE+-]+) frames/s", out).group(1))
        assert math.isfinite(rate) and rate > 0, label
    for label in ("ratio export/slower", "ratio naive/export"):
        ratio = float(re.search(rf"{label}\s*:\s*([0-9.eE+-]+)", out).group(1))
        assert math.isfinite(ratio) and ratio > 0, label
    assert "design budget >= 0.80" in out and "10 frames of 32x16" in out


def test_bench_export_names_a_missing_model(models_dir, capsys):
    assert load_script().main(["--models-dir", str(models_dir), "--model", "nope", "--frames", "2"]) == 2
    assert "bench_export: error" in capsys.readouterr().err

"""The preview benchmark script runs end to end (its timings are reported, never asserted)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "benchmarks" / "bench_preview.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_preview", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_preview_main_prints_a_ratio(models_dir, capsys):
    bench = load_script()
    code = bench.main(["--models-dir", str(models_dir), "--model", "tiny", "--device", "cpu", "--n", "5",
                       "--block", "2", "--warmup", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bare forward" in out and "engine preview lane" in out and "1.10" in out
    ratio = float(re.search(r"ratio engine/bare\s*:\s*([0-9.eE+-]+)", out).group(1))
    assert math.isfinite(ratio) and ratio > 0


def test_bench_preview_measure_returns_finite_numbers(models_dir):
    result = load_script().measure("tiny", "cpu", n=3, models_dirs=[models_dir], block=1, warmup=0)
    for key in ("bare_ms", "engine_ms", "ratio"):
        assert math.isfinite(result[key]) and result[key] > 0
    assert result["model"] == "tiny" and result["n"] == 3 and result["threads_bare"] == result["threads_engine"]


def test_bench_preview_without_the_model_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path))
    assert load_script().main(["--model", "no-such-model", "--n", "1"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_pytest_does_not_collect_the_benchmark():
    assert not SCRIPT.name.startswith("test_") and not SCRIPT.name.endswith("_test.py")
    assert not (SCRIPT.parent / "__init__.py").exists()

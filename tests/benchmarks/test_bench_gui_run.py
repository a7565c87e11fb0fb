"""The GUI benchmark script runs end to end on a tiny package (its timings are reported, never asserted)."""

from __future__ import annotations

import importlib.util
import math
import re
import threading
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

SCRIPT = Path(__file__).resolve().parent / "bench_gui.py"
QUICK = dict(seconds=0.5, moves=10, repeats=1, forwards=3)


def load_script():
    spec = importlib.util.spec_from_file_location("bench_gui", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leftovers(app) -> tuple[list, list]:
    """Main windows still alive and engine worker threads still running."""
    from studio.ui.main_window import MainWindow

    windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)]
    workers = [t for t in threading.enumerate() if t.name == "latent-studio-engine" and t.is_alive()]
    return windows, workers


def test_bench_gui_measure_returns_finite_numbers(qapp, models_dir):
    result = load_script().measure("tiny", [models_dir], "cpu", **QUICK)
    for key in ("stall_max_ms", "stall_p99_ms", "stall_idle_max_ms", "forward_ms", "move_latency_ms",
                "burst_final_ms", "burst_ratio", "burst_ratio_worst", "fps"):
        assert math.isfinite(result[key]) and result[key] > 0, (key, result[key])
    assert result["frames"] > 0 and result["burst_frames"] >= 1 and result["paints"] > 0
    assert result["model"] == "tiny" and result["threads"] == 1 and result["moves"] == 10
    assert result["burst_ratio_worst"] >= result["burst_ratio"]
    assert leftovers(qapp) == ([], [])


def test_bench_gui_main_prints_the_budgets(qapp, models_dir, capsys):
    code = load_script().main(["--models-dir", str(models_dir), "--model", "tiny", "--device", "cpu",
                               "--seconds", "0.5", "--moves", "10", "--repeats", "1", "--forwards", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "budget ≤ 16 ms" in out and "budget ≤ 2" in out
    stall = float(re.search(r"rendering continuously\s*:\s*max ([0-9.]+) ms", out).group(1))
    ratio = float(re.search(r"last move → final frame: median [0-9.]+ ms = ([0-9.]+) forwards", out).group(1))
    assert math.isfinite(stall) and math.isfinite(ratio) and ratio > 0
    assert re.search(r"\((budget ≤ 16 ms|budget ≤ 2): (PASS|OVER)\)", out)
    assert leftovers(qapp) == ([], [])


def test_bench_gui_without_the_model_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path))
    assert load_script().main(["--model", "no-such-model", "--seconds", "0.1"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_pytest_does_not_collect_the_benchmark():
    assert not SCRIPT.name.startswith("test_") and not SCRIPT.name.endswith("_test.py")
    assert not (SCRIPT.parent / "__init__.py").exists()

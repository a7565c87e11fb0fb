"""The workspace benchmark script runs end to end on a tiny package and a small gallery (its timings are reported,
never asserted): it ends, leaves no window or engine thread behind, and its report names every figure."""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

SCRIPT = Path(__file__).resolve().parent / "bench_workspace.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_workspace", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_workspace_measures_the_gallery_and_the_queue(qapp, models_dir):
    from studio.ui.main_window import MainWindow

    script = load_script()
    result = script.measure("tiny", items=300, queue=3, seconds=0.5, roots=[models_dir])
    for key in ("gallery_rows_ms", "gallery_thumb_ms", "gallery_scroll_max_ms", "queue_max_ms"):
        assert math.isfinite(result[key]) and result[key] >= 0, (key, result[key])
    assert result["gallery_rows"] == 300 and 0 < result["gallery_reads"] <= 300  # scrolled to the end
    assert result["queue_previews"] > 0
    text = script.report(result)
    assert "gallery of 300" in text and "a queue of 3" in text
    assert not [w for w in qapp.topLevelWidgets() if isinstance(w, MainWindow)]
    assert not [t for t in threading.enumerate() if t.name == "latent-studio-engine" and t.is_alive()]

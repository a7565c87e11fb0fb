"""The benchmark scripts run end to end (their timings are reported, never asserted)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "bench_preview.py"
DIFFUSION_SCRIPT = SCRIPT.with_name("bench_diffusion.py")


def load_script(path: Path = SCRIPT):
    spec = importlib.util.spec_from_file_location(path.stem, path)
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


def test_bench_diffusion_main_prints_a_ratio_and_the_same_image(capsys):
    pytest.importorskip("diffusers")
    code = load_script(DIFFUSION_SCRIPT).main(["--steps", "4", "--repeats", "2", "--warmup", "0", "--size", "8",
                                               "--base", "8", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "DiffusionFamily.render" in out and "DDIMPipeline" in out and "goal >= 1.0" in out
    ratio = float(re.search(r"ratio ours/diffusers \(steps/s\)\s*:\s*([0-9.eE+-]+)", out).group(1))
    assert math.isfinite(ratio) and ratio > 0
    assert "(same image)" in out  # both loops ran the same DDIM on the same weights and noise


def test_bench_diffusion_without_cuda_skips_cleanly(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: the skip path cannot be taken")
    assert load_script(DIFFUSION_SCRIPT).main(["--device", "cuda", "--steps", "1", "--repeats", "1"]) == 0
    assert "skipped: CUDA is not available" in capsys.readouterr().out


def test_bench_preview_measures_a_sound_model(tmp_path):
    from conftest import make_tiny_audio_package

    make_tiny_audio_package(tmp_path / "tiny-audio")
    result = load_script().measure("tiny-audio", "cpu", n=3, models_dirs=[tmp_path], block=1, warmup=0)
    assert math.isfinite(result["ratio"]) and result["ratio"] > 0 and result["model"] == "tiny-audio"


SD_SCRIPT = SCRIPT.with_name("bench_sd.py")


def test_bench_sd_main_prints_a_ratio_and_the_same_picture(capsys):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    code = load_script(SD_SCRIPT).main(["--steps", "3", "--repeats", "1", "--warmup", "0", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "StableDiffusionFamily.render" in out and "StableDiffusionPipeline" in out and "goal >= 0.9" in out
    ratio = float(re.search(r"ratio ours/diffusers \(steps/s\)\s*:\s*([0-9.eE+-]+)", out).group(1))
    assert math.isfinite(ratio) and ratio > 0
    assert "(same picture)" in out  # the app's DDIM walk and diffusers' pipeline on the same parts and noise


def test_bench_sd_without_cuda_skips_cleanly(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: the skip path cannot be taken")
    assert load_script(SD_SCRIPT).main(["--device", "cuda", "--steps", "1", "--repeats", "1"]) == 0
    assert "bench_sd: skipped: CUDA is not available" in capsys.readouterr().out

"""The weights-check benchmark runs end to end and prints its figures (timings are reported, never asserted): the
checks made at load against reading the same file in the same run, on the shipped models and on a small synthetic
UNet-like set (the 860 M-parameter figures come from running the script by hand: see its docstring)."""

from __future__ import annotations

import math
import re

import pytest
import torch
from safetensors.torch import load_file

from test_benchmarks_run import load_script

SCRIPT = load_script.__globals__["SCRIPT"].with_name("bench_weights_check.py")


@pytest.fixture(scope="module")
def bench():
    return load_script(SCRIPT)


def test_the_synthetic_set_is_a_whole_safetensors_file_of_the_size_asked(bench, tmp_path):
    path = tmp_path / "unet.safetensors"
    params = bench.write_unet_like(path, 3_000_000, torch.float16)
    tensors = load_file(str(path))
    assert sum(t.numel() for t in tensors.values()) == params >= 3_000_000
    assert all(t.dtype == torch.float16 and torch.isfinite(t).all() for t in tensors.values())


def test_the_benchmark_prints_ratios_for_the_shipped_models_and_a_synthetic_set(bench, capsys):
    assert bench.main(["--shipped", "--params", "2e6", "--dtype", "float32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    print(out)  # (shown with -s: the figures of this run)
    ratios = [float(x) for x in re.findall(r"ratio finite/read ([0-9.]+)", out)]
    assert len(ratios) >= 5  # four shipped models and the synthetic set
    assert all(math.isfinite(r) and r > 0 for r in ratios)
    assert "synthetic UNet-like float32" in out and "header check" in out

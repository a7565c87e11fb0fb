"""bench_stylegan.py runs end to end at a tiny size and prints its figures (timings are reported, never asserted)."""

from __future__ import annotations

import math
import re

import pytest

from test_benchmarks_run import SCRIPT, load_script

STYLEGAN_SCRIPT = SCRIPT.with_name("bench_stylegan.py")
TINY = ["--size", "16", "--channel-base", "256", "--channel-max", "16", "--repeats", "2", "--warmup", "0",
        "--threads", "1"]


@pytest.mark.parametrize("arch", ["sg2", "sg3t"])
def test_bench_stylegan_prints_a_ratio_and_the_same_picture(arch, capsys):
    code = load_script(STYLEGAN_SCRIPT).main(["--arch", arch, *TINY])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"StyleGAN render speed: {arch} 16x16" in out and "budget <= 1.05" in out
    ratio = float(re.search(r"ratio app/plain\s*:\s*([0-9.eE+-]+)", out).group(1))
    assert math.isfinite(ratio) and ratio > 0
    assert "(same picture)" in out  # the app's frame and the plain forward draw the same pixels


def test_bench_stylegan_config_is_nvidias_1024_ffhq():
    bench = load_script(STYLEGAN_SCRIPT)
    cls, kwargs = bench.nvidia_1024_config("sg2", 1024, 32768, 512)
    assert cls.__name__ == "StyleGAN2Generator"
    assert kwargs["mapping_kwargs"] == {"num_layers": 8} and kwargs["num_fp16_res"] == 4
    assert kwargs["conv_clamp"] == 256 and kwargs["z_dim"] == kwargs["w_dim"] == 512
    g = bench.build_generator("sg2", 32, 256, 16)
    assert float(g.synthesis.b4.const.detach().std()) > 0.5  # random weights, not the module's zeros
    assert not g.training
    # the generator varies like a trained one: w spreads across seeds and the pictures differ
    import torch

    model = bench.loaded_model("sg2", g, bench.nvidia_1024_config("sg2", 32, 256, 16)[1], torch.device("cpu"))
    assert model.family.name == "stylegan"  # the app's own render path is what is timed
    first, second = bench.app_frame(model, 1), bench.app_frame(model, 2)
    with torch.no_grad():
        ws = g.mapping(torch.randn(64, 512, generator=torch.Generator().manual_seed(0)), None)[:, 0]
    assert float(ws.std(0).mean()) > 0.1 * float(ws.mean(0).abs().mean() + ws.std(0).mean())
    assert (first.astype(int) - second.astype(int)).std() > 5


def test_bench_stylegan_without_cuda_skips_cleanly(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: the skip path cannot be taken")
    assert load_script(STYLEGAN_SCRIPT).main(["--device", "cuda", *TINY]) == 0
    assert "bench_stylegan: skipped: CUDA is not available" in capsys.readouterr().out

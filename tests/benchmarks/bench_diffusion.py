"""Diffusion sampling speed: our DDIM loop against diffusers' DDIMPipeline, on the same tiny UNet weights.

    python tests/benchmarks/bench_diffusion.py [--steps 25] [--repeats 10] [--warmup 1] [--device cpu] [--size 32]
                                               [--base 16] [--threads N]

One tiny unconditional UNet (studio.families.diffusion.UNet, `--size`² × 1, base `--base`, mults (1, 2), emb_dim 64,
attention; every parameter drawn from N(0, 0.2²) with a fixed seed: the zero-initialised convs would otherwise make
ε ≡ 0) is written as a real model package to a temporary folder, resolved and loaded by the app's loader
(studio.library), and timed three ways, batch 1, float32, inside torch.inference_mode():

(a) ours: the app's path, `DiffusionFamily.render(model, RenderRequest(params={sampler: "ddim", steps: N, guidance: 1, eta: 0}))`
    driven to its end (a Preview, i.e. an image composed on the CPU, after every step but the last);
(b) bare: our sampler and the network alone (`make_sampler("ddim", …)`, `net(x, t)`, `sampler.step`), no previews;
    for information;
(c) diffusers: `diffusers.DDIMPipeline(unet=…, scheduler=DDIMScheduler(…))(num_inference_steps=N, eta=0,
    output_type="np")`, with the same network behind a thin adapter (`unet(x, t).sample`, `unet.config.sample_size`,
    `unet.config.in_channels`, `unet.dtype`, `unet.device`; DDIMPipeline takes it as it is) and the scheduler set up
    as the render sets up our sampler (squaredcos_cap_v2, trailing spacing, set_alpha_to_one=True, steps_offset=0,
    ε-prediction; clip_sample as the render asks for it, read from its make_sampler call, and then
    use_clipped_model_output=True, which is what our DDIM does when it clips); its progress bar is disabled.

All three start from the same noise (the request's seed draws what the pipeline's generator draws), and the script
checks once that (a) and (c) end at the same image (diffusers' DDIM steps to t − T//N, which is the next timestep of
its own trailing schedule only when N divides T, here 1000: with other step counts the images differ slightly).
Repeats are interleaved (a b c, c b a, …) after `--warmup` untimed runs of each; it prints medians in ms per render
and steps per second, and the ratio ours/diffusers in steps per second (goal ≥ 1.0). It reports; it never fails on a
timing (exit 2 only when diffusers is missing or the device is unusable; `--device cuda` without CUDA prints a
"skipped" line and exits 0).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests" / "benchmarks"):  # run as a plain script from anywhere: the app, bench_common
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

GOAL = 1.0  # our loop at least as many steps per second as diffusers' pipeline
TRAIN_TIMESTEPS = 1000
EMB_DIM = 64


from bench_common import (drive as _drive, finish_main, interleaved_medians, on_device,  # noqa: E402
                          sampling_arguments)


def write_bench_package(folder: Path, size: int, base: int, seed: int = 0) -> Path:
    """A diffusion package with a seeded random UNet (every parameter ~ N(0, 0.2²)), unconditional, cosine."""
    import torch

    from studio.nets.unet import UNet
    from studio.io.package import write_package

    net = UNet(image_size=size, channels=1, base=base, mults=(1, 2), num_classes=0, emb_dim=EMB_DIM, attention=True)
    with torch.no_grad():
        torch.manual_seed(seed)
        for p in net.parameters():
            torch.nn.init.normal_(p, 0.0, 0.2)
    manifest = {
        "format": 1, "id": "bench-diffusion", "name": "Benchmark diffusion UNet", "family": "diffusion",
        "version": "0.0.1", "license": "CC0-1.0", "description": "a tiny seeded random UNet for bench_diffusion.py",
        "output": {"kind": "image", "width": size, "height": size, "channels": 1},
        "latent": {"shape": [1, size, size], "prior": "normal"},
        "conditions": {"kind": "none"},
        "architecture": {"base": base, "mults": [1, 2], "emb_dim": EMB_DIM, "attention": True, "schedule": "cosine",
                         "train_timesteps": TRAIN_TIMESTEPS},
        "training": {"quality": {"note": "untrained, random weights"}},
    }
    return write_package(folder, manifest, net.state_dict())


def render_clips_x0(model, request) -> bool:
    """Whether DiffusionFamily.render asks its sampler to clip the x₀ estimate (one render, make_sampler spied on)."""
    import studio.families.diffusion.family as family_module

    calls = []
    real = family_module.make_sampler

    def spy(*args, **kwargs):
        calls.append(kwargs.get("clip_sample", False))
        return real(*args, **kwargs)

    family_module.make_sampler = spy
    try:
        _drive(model, request)
    finally:
        family_module.make_sampler = real
    return bool(calls and calls[0])


def diffusers_pipeline(net, clip_sample: bool = False):
    """DDIMPipeline around our UNet, its scheduler set up as our DDIM sampler."""
    import torch
    from diffusers import DDIMPipeline, DDIMScheduler

    class Adapter(torch.nn.Module):
        """What DDIMPipeline uses of a diffusers UNet: `unet(x, t).sample`, config, dtype, device."""

        def __init__(self, net):
            super().__init__()
            self.net = net
            self.config = SimpleNamespace(sample_size=net.image_size, in_channels=net.channels)

        @property
        def dtype(self):
            return next(self.net.parameters()).dtype

        @property
        def device(self):
            return next(self.net.parameters()).device

        def forward(self, x, t):  # the pipeline passes one timestep (a 0-d int tensor) for the whole batch
            t = torch.as_tensor(t, device=x.device).float().reshape(-1).expand(x.shape[0])
            return SimpleNamespace(sample=self.net(x, t, None))

    scheduler = DDIMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2",
                              timestep_spacing="trailing", clip_sample=clip_sample, set_alpha_to_one=True,
                              steps_offset=0, prediction_type="epsilon")
    pipe = DDIMPipeline(unet=Adapter(net), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(steps: int = 25, repeats: int = 10, warmup: int = 1, device: str = "cpu", size: int = 32,
            base: int = 16, threads: int = 0, seed: int = 0) -> dict:
    """Time (a) ours, (b) bare and (c) diffusers on the same weights and noise; medians in seconds and the ratio."""
    import importlib.util

    if importlib.util.find_spec("diffusers") is None:
        raise RuntimeError("diffusers is not installed (pip install diffusers): nothing to compare with")

    with on_device(device, threads) as dev:
        return _measure(dev, max(1, steps), max(1, repeats), max(0, warmup), size, base, seed)


def _measure(dev, steps: int, repeats: int, warmup: int, size: int, base: int, seed: int) -> dict:
    import diffusers
    import numpy as np
    import torch

    from studio.nets.samplers import make_sampler
    from studio.latent.seeds import sample_prior
    from studio.library import load_model, resolve
    from studio.request import RenderRequest

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    with tempfile.TemporaryDirectory(prefix="bench-diffusion-") as tmp:
        entry = resolve(str(write_bench_package(Path(tmp) / "bench-diffusion", size, base, seed)))
        model = load_model(entry, dev, torch.float32)
    net = model.network

    def request(k: int):
        return RenderRequest(model_id=model.id, seed=seed + k,
                             params={"sampler": "ddim", "steps": steps, "guidance": 1.0, "eta": 0.0})

    with torch.inference_mode():
        clip = render_clips_x0(model, request(0))
    pipe = diffusers_pipeline(net, clip)

    def ours(k: int):
        with torch.inference_mode():
            out, previews = _drive(model, request(k))
        assert previews == steps - 1, previews
        return out.data

    def bare(k: int):
        with torch.inference_mode():
            sampler = make_sampler("ddim", net.schedule, steps, eta=0.0, clip_sample=clip)
            x = sampler.initial(sample_prior(seed + k, (1, 1, size, size)).to(dev))
            for i in range(len(sampler.timesteps)):
                t = torch.full((1,), sampler.model_timestep(i), device=dev)
                x, _ = sampler.step(net(sampler.scale_input(x, i), t, None), i, x)
            sync()
        return x

    def theirs(k: int):
        with torch.inference_mode():
            return pipe(batch_size=1, generator=torch.Generator().manual_seed(seed + k), num_inference_steps=steps,
                        eta=0.0, use_clipped_model_output=clip, output_type="np").images

    runs = {"ours": ours, "bare": bare, "diffusers": theirs}
    # the same image from the same seed (uint8 against float in 0..1: within half a grey level)
    a, c = ours(0), theirs(0)
    agree = float(np.abs(a[..., 0].astype(np.float64) / 255.0 - c[0, ..., 0]).max())
    med = interleaved_medians(runs, warmup, repeats)
    return {
        "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "steps": steps, "repeats": repeats, "warmup": warmup, "size": size,
        "base": base, "params": sum(p.numel() for p in net.parameters()),
        "ours_ms": med["ours"] * 1e3, "bare_ms": med["bare"] * 1e3, "diffusers_ms": med["diffusers"] * 1e3,
        "ours_sps": steps / med["ours"], "bare_sps": steps / med["bare"], "diffusers_sps": steps / med["diffusers"],
        "ratio": med["diffusers"] / med["ours"], "bare_ratio": med["diffusers"] / med["bare"],
        "ours_overhead_us": (med["ours"] - med["bare"]) / steps * 1e6,
        "diffusers_overhead_us": (med["diffusers"] - med["bare"]) / steps * 1e6,
        "max_image_diff": agree, "clip_sample": clip, "goal": GOAL,
    }


def report(r: dict) -> str:
    verdict = "meets the goal" if r["ratio"] >= r["goal"] else "BELOW the goal"
    same = "same image" if r["max_image_diff"] <= 1.0 / 255 else "images differ"
    return "\n".join([
        f"DDIM, {r['steps']} steps, batch 1, float32, {r['size']}x{r['size']} UNet base {r['base']} "
        f"({r['params']:,} parameters) on {r['device']}, torch {r['torch']} ({r['threads']} threads), diffusers "
        f"{r['diffusers']}; clip_sample={r['clip_sample']}; {r['repeats']} interleaved repeats after {r['warmup']} "
        "warm-up",
        f"ours (DiffusionFamily.render) : {r['ours_ms']:8.2f} ms/render  {r['ours_sps']:8.1f} steps/s (median)",
        f"bare (sampler + net)         : {r['bare_ms']:8.2f} ms/render  {r['bare_sps']:8.1f} steps/s (median)",
        f"diffusers (DDIMPipeline)     : {r['diffusers_ms']:8.2f} ms/render  {r['diffusers_sps']:8.1f} steps/s "
        f"(median)",
        f"over the bare loop, per step: ours {r['ours_overhead_us']:.0f} µs (previews), diffusers "
        f"{r['diffusers_overhead_us']:.0f} µs (scheduler, adapter, pipeline)",
        f"check: ours vs diffusers from the same seed, max |Δpixel| = {r['max_image_diff']:.2e} ({same})",
        f"ratio ours/diffusers (steps/s): {r['ratio']:.3f}  (bare/diffusers {r['bare_ratio']:.3f}; goal >= "
        f"{r['goal']:.1f}: {verdict})",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sampling_arguments(parser, steps=25, repeats=10)
    parser.add_argument("--size", type=int, default=32, help="image size in pixels, even (default 32)")
    parser.add_argument("--base", type=int, default=16, help="UNet base channels, a multiple of 8 (default 16)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0, help="weights seed; render k uses noise seed+k")
    args = parser.parse_args(argv)

    return finish_main("bench_diffusion", lambda: measure(args.steps, args.repeats, args.warmup, args.device, args.size,
                                                  args.base, args.threads, args.seed), report)


if __name__ == "__main__":
    sys.exit(main())

"""Stable Diffusion speed: the app's render against diffusers' StableDiffusionPipeline, on the same tiny parts.

    python tests/benchmarks/bench_sd.py [--steps 20] [--repeats 5] [--warmup 1] [--device cpu] [--size 16]
                                        [--width 32] [--threads 1] [--seed 0]
    python tests/benchmarks/bench_sd.py --full [--sdxl] [--steps 2] [--size 512] [--threads 1]   (real size: an
        SD 1.5-shaped pipeline with random weights, each side in its own process, time and peak memory; see
        bench_sd_full.py)

A tiny Stable Diffusion pipeline folder (tests/sd_tiny.py: seeded random UNet, VAE and CLIP text encoder, made from
configs, never downloaded; the UNet's block_out_channels are (`--width`, 2·`--width`), 32 by default as in
sd_tiny.TINY_UNET) is written to a temporary folder, resolved and loaded by the app's loader (studio.library.resolve
+ load_model, i.e. the real offline diffusers loading path), and timed two ways, batch 1, float32, `--size`² pixels
(the tiny model's native 16 by default; a multiple of 2, the tiny VAE's scale, and at least 16), on one torch thread
by default (`--threads 0`: torch's own choice; on a small shared CPU, several threads on a network this small mostly
wait for each other and the figures swing by a factor of ten):

(a) ours: the app's path, `StableDiffusionFamily.render(model, RenderRequest(params={sampler: "ddim", eta: 0,
    steps: N, guidance: 7.5, prompt, negative_prompt}))` driven to its end: a cheap preview image (latent → RGB linear map) after
    every step and one VAE decode at the end. The app keeps the prompts' CLIP embeddings in a small cache (moving a
    slider re-renders without re-encoding the text), so after the first render ours does not run CLIP again; the
    script prints what encoding both prompts costs once, for information;
(b) diffusers: `StableDiffusionPipeline` built on the very same loaded parts (UNet, VAE, text encoder, tokenizer; no
    safety checker) with a `DDIMScheduler` made from the folder's own `scheduler/scheduler_config.json`, which is what
    the app's DDIM sampler follows (SD 1.x's: scaled_linear 0.00085 – 0.012 over 1000 steps, leading spacing,
    steps_offset 1, set_alpha_to_one False),
    called with the same prompt, negative prompt, guidance, steps and `latents=` our initial noise (the request's
    seed's draw), `output_type="np"`, its progress bar disabled. It encodes both prompts on every call.

The script checks once that (a) and (b) end at the same picture (max |Δ| ≤ 1 in 0..255 units: ours is rounded to
uint8, diffusers' is a float). Repeats are interleaved (a b, b a, …) after `--warmup` untimed runs of each; it prints
medians in ms per render and steps per second (steps / whole render, text encoding and VAE decode included), and the
ratio ours/diffusers in steps per second (goal ≥ 0.9). It reports; it never fails on a timing (exit 2 only when
diffusers / transformers are missing or the model cannot be made or loaded; `--device cuda` without CUDA prints a
"skipped" line and exits 0).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests", REPO / "tests" / "benchmarks"):  # from anywhere: the app, sd_tiny, bench_common
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

GOAL = 0.9  # our render at least 90 % of the steps per second of diffusers' pipeline
GUIDANCE = 7.5
PROMPT = "a watercolour lighthouse on a cliff at dusk"
NEGATIVE = "blurry, low quality"
SAME = 1.0  # max |Δpixel| in 0..255 units for "the same picture"


from bench_common import (drive as _drive, finish_main, interleaved_medians, on_device,  # noqa: E402
                          sampling_arguments)


def make_bench_parts(width: int, seed: int = 0):
    """sd_tiny's parts; with another `width` the UNet is rebuilt with block_out_channels (width, 2·width), seeded."""
    import torch

    import sd_tiny

    unet, vae, text = sd_tiny.make_parts(seed)
    if list(sd_tiny.TINY_UNET["block_out_channels"]) != [width, 2 * width]:
        from diffusers import UNet2DConditionModel

        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**{**sd_tiny.TINY_UNET, "block_out_channels": [width, 2 * width]})
        sd_tiny._randomise(unet, seed * 10)
        unet = unet.eval()
    return unet, vae, text


def diffusers_pipeline(net, folder: Path):
    """StableDiffusionPipeline on the loaded model's own parts, with diffusers' DDIM made from the folder's own
    scheduler config: the app's DDIM follows that config (SD 1.x ships PNDM settings: leading spacing, offset 1)."""
    import json

    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline

    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler = DDIMScheduler.from_config(PNDMScheduler.from_config(config).config)
    with warnings.catch_warnings():  # a folder with steps_offset 0 makes diffusers warn; the config is the truth
        warnings.filterwarnings("ignore", message=r"(?s).*`steps_offset` should be set to 1", category=FutureWarning)
        pipe = StableDiffusionPipeline(vae=net.vae, text_encoder=net.text_encoder, tokenizer=net.tokenizer,
                                       unet=net.unet, scheduler=scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(steps: int = 20, repeats: int = 5, warmup: int = 1, device: str = "cpu", size: int = 0,
            width: int = 32, threads: int = 1, seed: int = 0) -> dict:
    """Time (a) ours and (b) diffusers on the same parts and noise; medians in seconds and the ratio."""
    import importlib.util

    with on_device(device, threads) as dev:
        missing = [name for name in ("diffusers", "transformers") if importlib.util.find_spec(name) is None]
        if missing:
            raise RuntimeError(f"{' and '.join(missing)} not installed (pip install 'latent-studio[diffusers]'): "
                               "nothing to compare with")
        from transformers.utils import logging as hf_logging

        saved_bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # transformers' "Writing model shards" / "Loading weights" bars
        try:
            with tempfile.TemporaryDirectory(prefix="bench-sd-") as tmp:
                return _measure(Path(tmp), dev, max(1, steps), max(1, repeats), max(0, warmup), size, width, seed)
        finally:
            if saved_bars:
                hf_logging.enable_progress_bar()


def _measure(tmp: Path, dev, steps: int, repeats: int, warmup: int, size: int, width: int, seed: int) -> dict:
    import diffusers
    import numpy as np
    import torch

    from sd_tiny import make_pipeline_folder
    from studio.library import load_model, resolve
    from studio.request import RenderRequest

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    folder = make_pipeline_folder(tmp / "bench-sd", parts=make_bench_parts(width, seed))
    model = load_model(resolve(str(folder)), dev, torch.float32)
    net = model.network
    size = size or int(model.manifest.output["width"])

    def request(k: int):
        return RenderRequest(model_id=model.id, seed=seed + k, width=size, height=size,
                             params={"prompt": PROMPT, "negative_prompt": NEGATIVE, "sampler": "ddim", "steps": steps,
                                     "guidance": float(GUIDANCE), "eta": 0.0})

    pipe = diffusers_pipeline(net, folder)

    def ours(k: int):
        with torch.inference_mode():
            out, previews = _drive(model, request(k))
        assert previews == steps, previews
        return out.data

    def theirs(k: int):
        noise = model.family.latent(model, request(k))[None].to(dev, torch.float32)
        with torch.inference_mode():
            return pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=GUIDANCE,
                        eta=0.0, latents=noise, output_type="np", height=size, width=size).images[0]

    # the same picture from the same noise (uint8 against float in 0..1: within one grey level)
    a, b = ours(0), theirs(0)
    agree = float(np.abs(a.astype(np.float64) - b.astype(np.float64) * 255.0).max())
    # what the app's prompt cache saves per render (both prompts through CLIP), for information
    text_s = []
    for _ in range(3):
        net._texts.clear()
        sync()
        t0 = time.perf_counter()
        net.text_embeddings(PROMPT)
        net.text_embeddings(NEGATIVE)
        sync()
        text_s.append(time.perf_counter() - t0)
    runs = {"ours": ours, "diffusers": theirs}
    med = interleaved_medians(runs, warmup, repeats, sync)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "steps": steps, "repeats": repeats, "warmup": warmup, "size": size,
        "width": width, "unet_params": count(net.unet), "vae_params": count(net.vae),
        "text_params": count(net.text_encoder),
        "ours_ms": med["ours"] * 1e3, "diffusers_ms": med["diffusers"] * 1e3,
        "ours_sps": steps / med["ours"], "diffusers_sps": steps / med["diffusers"],
        "ratio": med["diffusers"] / med["ours"], "text_ms": statistics.median(text_s) * 1e3,
        "max_image_diff": agree, "goal": GOAL,
    }


def report(r: dict) -> str:
    verdict = "meets the goal" if r["ratio"] >= r["goal"] else "BELOW the goal"
    same = "same picture" if r["max_image_diff"] <= SAME else "pictures differ"
    return "\n".join([
        f"Stable Diffusion DDIM (eta 0), {r['steps']} steps, guidance {GUIDANCE:g}, batch 1, float32, "
        f"{r['size']}x{r['size']} pixels; tiny UNet width {r['width']} ({r['unet_params']:,} parameters; VAE "
        f"{r['vae_params']:,}, CLIP {r['text_params']:,}) on {r['device']}, torch {r['torch']} ({r['threads']} "
        f"thread{'s' if r['threads'] != 1 else ''}), diffusers {r['diffusers']}; {r['repeats']} interleaved repeats "
        f"after {r['warmup']} warm-up",
        f"ours (StableDiffusionFamily.render)   : {r['ours_ms']:9.2f} ms/render  {r['ours_sps']:8.1f} steps/s "
        "(median)",
        f"diffusers (StableDiffusionPipeline)   : {r['diffusers_ms']:9.2f} ms/render  {r['diffusers_sps']:8.1f} "
        "steps/s (median)",
        f"text encoding, both prompts: {r['text_ms']:.2f} ms (ours caches it across renders, diffusers encodes "
        "per call)",
        f"check: ours vs diffusers from the same noise, max |Δpixel| = {r['max_image_diff']:.3f} of 255 ({same})",
        f"ratio ours/diffusers (steps/s): {r['ratio']:.3f}  (goal >= {r['goal']:.1f}: {verdict})",
    ])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--full" in argv or "--sdxl" in argv:  # real size, each side in its own process: bench_sd_full.py
        from bench_sd_full import main as full

        return full([a for a in argv if a != "--full"])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sampling_arguments(parser, steps=20, repeats=5)
    parser.add_argument("--size", type=int, default=0,
                        help="image side in pixels, a multiple of 2, at least 16 (default: the tiny model's 16)")
    parser.add_argument("--width", type=int, default=32,
                        help="UNet block_out_channels (width, 2·width), a multiple of 32 (default 32)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steady on a small shared CPU; 0 = torch's own choice)")
    parser.add_argument("--seed", type=int, default=0, help="weights seed; render k uses noise seed+k")
    args = parser.parse_args(argv)
    if args.size and (args.size % 2 or args.size < 16):
        parser.error(f"--size must be a multiple of 2 and at least 16, got {args.size}")
    if args.width < 32 or args.width % 32:
        parser.error(f"--width must be a positive multiple of 32 (the UNet's 32 norm groups), got {args.width}")

    return finish_main("bench_sd", lambda: measure(args.steps, args.repeats, args.warmup, args.device, args.size,
                                                  args.width, args.threads, args.seed), report)


if __name__ == "__main__":
    sys.exit(main())

"""Stable Diffusion at real size: the app against diffusers on an SD 1.5-shaped pipeline (860 M-parameter UNet) built
from configs with random weights, each side in its own process, for time and peak memory.

    python tests/benchmarks/bench_sd.py --full [--sdxl] [--steps 2] [--size 512] [--threads 1] [--repeats 1]
    python tests/benchmarks/bench_sd_full.py [same options]

The pipeline folder: the shipped SD 1.x configs (studio.families.stable_diffusion.files.ARCHITECTURES["sd-v1"]: UNet
320/640/1280/1280, kl-f8 VAE, CLIP ViT-L/14 text encoder, CLIP's tokenizer from the shipped BPE), every part built on
the meta device and given seeded random weights (normal, std 1/√fan-in for matrices and kernels, 1 for norm
scales, 0 for biases; a part with buffers is built on the CPU instead, so no buffer is left uninitialised), saved as
float16 safetensors as the models people download are (both sides load them as float32 on the CPU). `--sdxl` does
the same with an SDXL architecture when this checkout's family has one (ARCHITECTURES holds an "sdxl…" entry), at
1024² and 1 step by default; otherwise it says so and exits 0.

Each side runs in a fresh child process (`--child ours|diffusers`), `--threads` torch threads on both:
(a) ours: studio.library.resolve + load_model (the app's offline loader, float32, CPU), then
    `StableDiffusionFamily.render` driven to its end (DDIM, η 0, guidance 7.5, prompt and negative prompt, a preview
    per step, one VAE decode), `--repeats` renders with seeds seed … seed + repeats − 1;
(b) diffusers: `DiffusionPipeline.from_pretrained(folder, torch_dtype=float32, local_files_only=True)` (the class
    model_index.json names, no safety checker) with its scheduler replaced by a DDIMScheduler made from the folder's
    own scheduler config (what the app's DDIM sampler follows), called with the same prompts, guidance and steps and
    `latents=` the same seed's noise (studio.latent.seeds.sample_prior), output_type "np".
The parent measures each child's peak resident memory and CPU time (os.wait4's rusage: the child alone) and reads
back its timings (load, then each render; wall and CPU time, the latter fairer on a machine others share) and its
first picture; it checks both pictures agree (max |Δ| in 0..255 levels)
and prints the ratios ours/diffusers for the render time, the load + first render time, and the peak memory. It
reports; it never fails on a timing (exit 2 only when something cannot be built, loaded or run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests", REPO / "tests" / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

GUIDANCE = 7.5
PROMPT = "a watercolour lighthouse on a cliff at dusk"
NEGATIVE = "blurry, low quality"


# --- the pipeline folder -----------------------------------------------------------------------------------------


def _random_part(make, seed: int):
    """`make()` on the meta device, materialised on the CPU with seeded random weights (see the module docstring)."""
    import torch

    with torch.device("meta"):
        model = make()
    if any(True for _ in model.buffers()):  # a buffer (position ids …) would be left empty: build it for real
        model = make()
    else:
        model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 1.0 / max(1.0, p[0].numel()) ** 0.5, generator=gen)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
    return model.eval()


def architecture_name(sdxl: bool) -> str | None:
    from studio.families.stable_diffusion.files import ARCHITECTURES

    if not sdxl:
        return "sd-v1"
    return next((name for name in ARCHITECTURES if name.lower().startswith("sdxl")), None)


def make_folder(out: Path, arch: str, seed: int = 0) -> Path:
    """A complete float16 pipeline folder for a shipped architecture, with random weights."""
    import shutil

    import diffusers
    import torch
    import transformers

    from studio.families.stable_diffusion.files import config_folder

    configs = config_folder(arch, out.parent / "configs")
    shutil.copytree(configs, out)
    index = json.loads((out / "model_index.json").read_text())
    for k, (part, spec) in enumerate(sorted(index.items())):
        if not isinstance(spec, list) or spec[0] is None or part in ("tokenizer", "tokenizer_2", "scheduler") \
                or "Tokenizer" in str(spec[1]) or "Scheduler" in str(spec[1]):
            continue
        library, cls = spec
        if library == "diffusers":
            model_cls = getattr(diffusers, cls)
            config = model_cls.load_config(str(out / part))
            model = _random_part(lambda: model_cls.from_config(config), seed * 10 + k)
        else:
            model_cls = getattr(transformers, cls)
            config = model_cls.config_class.from_pretrained(str(out / part))
            model = _random_part(lambda: model_cls(config), seed * 10 + k)
        model.to(torch.float16).save_pretrained(str(out / part), safe_serialization=True)
        del model
    return out


# --- the children --------------------------------------------------------------------------------------------------


def _child(args) -> int:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    result: dict = {"threads": torch.get_num_threads(), "renders": [], "render_cpu": []}
    t0, c0 = time.perf_counter(), time.process_time()
    if args.child == "ours":
        from bench_common import drive
        from studio.library import load_model, resolve
        from studio.request import RenderRequest

        model = load_model(resolve(str(args.folder)), "cpu", torch.float32)
        result["load_s"], result["load_cpu"] = time.perf_counter() - t0, time.process_time() - c0

        def render(seed: int):
            request = RenderRequest(model_id=model.id, seed=seed, width=args.size, height=args.size,
                                    params={"prompt": PROMPT, "negative_prompt": NEGATIVE, "sampler": "ddim",
                                            "steps": args.steps, "guidance": GUIDANCE, "eta": 0.0})
            with torch.inference_mode():
                out, previews = drive(model, request)
            assert previews == args.steps, previews
            return out.data
    else:
        from diffusers import DDIMScheduler, DiffusionPipeline

        from studio.latent.seeds import sample_prior

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = DiffusionPipeline.from_pretrained(str(args.folder), torch_dtype=torch.float32,
                                                     local_files_only=True)
            pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the folder's own, as the app's DDIM
        pipe.set_progress_bar_config(disable=True)
        result["load_s"], result["load_cpu"] = time.perf_counter() - t0, time.process_time() - c0
        channels = int(pipe.vae.config.latent_channels)
        scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)

        def render(seed: int):
            noise = sample_prior(seed, (channels, args.size // scale, args.size // scale))[None]
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=args.steps,
                             guidance_scale=GUIDANCE, eta=0.0, latents=noise, output_type="np", height=args.size,
                             width=args.size).images[0]
            return (image * 255.0).astype(np.float64)  # float, unrounded: the check allows one level

    for r in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        picture = render(args.seed + r)
        result["renders"].append(time.perf_counter() - t)
        result["render_cpu"].append(time.process_time() - c)
        if r == 0:
            np.save(args.out / f"{args.child}.npy", np.asarray(picture, dtype=np.float64))
    result["total_s"] = time.perf_counter() - t0
    (args.out / f"{args.child}.json").write_text(json.dumps(result))
    return 0


def _run_child(side: str, folder: Path, out: Path, args) -> dict:
    """One side in a fresh process; its own timings and its peak resident memory (bytes)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--folder", str(folder), "--out",
           str(out), "--steps", str(args.steps), "--size", str(args.size), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--seed", str(args.seed)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "DIFFUSERS_VERBOSITY": "error", "TRANSFORMERS_VERBOSITY": "error"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the {side} child failed (exit {proc.returncode})")
    result = json.loads((out / f"{side}.json").read_text())
    factor = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    result.update(peak_rss=usage.ru_maxrss * factor, wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime)
    return result


def measure(args) -> dict:
    import importlib.util

    import numpy as np

    missing = [name for name in ("diffusers", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not installed: nothing to compare with")
    arch = architecture_name(args.sdxl)
    if arch is None:
        from bench_common import Skip

        raise Skip("this checkout's stable-diffusion family cannot open SDXL yet (no SDXL architecture in "
                   "studio.families.stable_diffusion.files.ARCHITECTURES)")
    with tempfile.TemporaryDirectory(prefix="bench-sd-full-", dir=args.tmp) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        folder = args.folder or make_folder(root / f"{arch}-random", arch, args.seed)  # --folder: an existing one
        build_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
        sides = {side: _run_child(side, folder, root, args) for side in ("ours", "diffusers")}
        a, b = (np.load(root / f"{side}.npy") for side in ("ours", "diffusers"))
    import diffusers
    import torch

    return {"arch": arch, "steps": args.steps, "size": args.size, "threads": args.threads, "repeats": args.repeats,
            "build_s": build_s, "weights_bytes": size, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "sides": sides, "max_diff": float(np.abs(a - b).max()), "mean_diff": float(np.abs(a - b).mean())}


def report(r: dict) -> str:
    import statistics

    o, d = r["sides"]["ours"], r["sides"]["diffusers"]
    med = {k: statistics.median(s["renders"]) for k, s in r["sides"].items()}
    first = {k: s["load_s"] + s["renders"][0] for k, s in r["sides"].items()}
    cpu = {k: statistics.median(s["render_cpu"]) for k, s in r["sides"].items()}
    lines = [f"Stable Diffusion ({r['arch']}, random float16 weights, {r['weights_bytes'] / 2**30:.2f} GiB "
             f"on disk, built in {r['build_s']:.0f} s): DDIM η 0, {r['steps']} steps, guidance {GUIDANCE:g}, "
             f"{r['size']}x{r['size']}, float32 on the CPU, {r['threads']} torch thread(s) on both sides, "
             f"{r['repeats']} render(s) each in its own process; torch {r['torch']}, diffusers {r['diffusers']}"]
    for name, s in (("ours", o), ("diffusers", d)):
        lines.append(f"{name:<10}: load {s['load_s']:7.1f} s, render {med[name]:7.1f} s (median; "
                     f"{', '.join(f'{t:.1f}' for t in s['renders'])}), load + first render {first[name]:7.1f} s, "
                     f"process wall {s['wall_s']:.1f} s, peak RSS {s['peak_rss'] / 2**30:.2f} GiB")
        lines.append(f"{'':<10}  CPU time (all threads): load {s['load_cpu']:7.1f} s, render {cpu[name]:7.1f} s "
                     f"(median), whole process {s['cpu_s']:.1f} s")
    lines += [f"check: max |Δpixel| {r['max_diff']:.2f} of 255 (mean {r['mean_diff']:.3f})",
              f"ratio ours/diffusers: render time {med['ours'] / med['diffusers']:.3f}, load + first render "
              f"{first['ours'] / first['diffusers']:.3f}, peak memory {o['peak_rss'] / d['peak_rss']:.3f} "
              "(goal: time <= 1.0, memory <= 1.0)",
              f"ratio ours/diffusers in CPU time (fairer on a shared machine): render {cpu['ours'] / cpu['diffusers']:.3f}, "
              f"whole process {o['cpu_s'] / d['cpu_s']:.3f}"]
    return "\n".join(lines)


def arguments(parser) -> None:
    parser.add_argument("--sdxl", action="store_true", help="SDXL (1024², 1 step by default) instead of SD 1.5")
    parser.add_argument("--steps", type=int, default=0, help="DDIM steps (default 2; 1 with --sdxl)")
    parser.add_argument("--size", type=int, default=0, help="image side (default 512; 1024 with --sdxl)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument("--repeats", type=int, default=1, help="renders per side after loading (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="weights and noise seed")
    parser.add_argument("--tmp", default=None, help="where the pipeline folder is written (default: the system's)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments(parser)
    parser.add_argument("--child", choices=("ours", "diffusers"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help="time this pipeline folder instead of building one")
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = args.steps or (1 if args.sdxl else 2)
    args.size = args.size or (1024 if args.sdxl else 512)
    if args.child:
        return _child(args)
    from bench_common import finish_main

    return finish_main("bench_sd --full", lambda: measure(args), report)


if __name__ == "__main__":
    sys.exit(main())

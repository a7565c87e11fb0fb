"""NVIDIA network pickles: time to open (read) a pickle and to convert it into a `stylegan` package, then to open the
package, for the two fixture generators and a 1024² StyleGAN2 (NVIDIA's FFHQ config, random weights, pickled the way
NVIDIA's torch_utils.persistence pickles it: tests/sg_pickles.py). Also the render time per frame through the family
against a plain forward of the same module (mapping + synthesis, as gen_images.py runs it).

Run: `PYTHONPATH=. python tests/benchmarks/bench_stylegan_import.py [--repeats 3] [--frames 3] [--device cpu]
[--threads 0] [--skip-large]`. Prints figures and exits 0; never fails on a timing (not a test).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parents[1]))

FFHQ_1024 = {"z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 1024, "img_channels": 3,
             "mapping_kwargs": {"num_layers": 8}, "channel_base": 32768, "channel_max": 512, "num_fp16_res": 4,
             "conv_clamp": 256, "fused_modconv_default": "inference_only"}


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(label: str, pkl: Path, work: Path, repeats: int, frames: int, device: str) -> None:
    import torch

    from studio.families import get_family
    from studio.io.nv_pickle import extract_network, read_network_pickle
    from studio.library import load_model, resolve
    from studio.nets.stylegan_nv import build_nvidia_generator, z_from_seed
    from studio.request import RenderRequest
    from studio.steps import run_steps

    family = get_family("stylegan")
    read_s, top = timed(lambda: read_network_pickle(pkl), repeats)
    extract_s, net = timed(lambda: extract_network(pkl, obj=top), repeats)
    build_s, _ = timed(lambda: build_nvidia_generator(net.class_name, net.init_args, net.init_kwargs, net.tensors),
                       repeats)
    n = iter(range(10**6))
    convert_s, folder = timed(lambda: family.import_file(pkl, work / f"{label}-{next(n)}"), repeats)
    assert isinstance(folder, Path)
    open_s, model = timed(lambda: load_model(resolve(str(folder)), device), repeats)
    weights_mb = (folder / "weights.safetensors").stat().st_size / 1e6
    print(f"{label}: pickle {pkl.stat().st_size / 1e6:.1f} MB, package weights {weights_mb:.1f} MB")
    print(f"  open (read) the pickle        {read_s * 1000:9.1f} ms   (restricted reader, median of {repeats})")
    print(f"  take G_ema's tensors          {extract_s * 1000:9.1f} ms")
    print(f"  rebuild + load the generator  {build_s * 1000:9.1f} ms")
    print(f"  convert (read → package)      {convert_s * 1000:9.1f} ms   (whole import_file, written atomically)")
    print(f"  open the package (load_model) {open_s * 1000:9.1f} ms   (on {device})")
    g = model.network  # type: ignore[union-attr]

    def family_frame(seed: int) -> None:
        run_steps(family.render(model, RenderRequest(model.id, seed=seed)))

    def plain_frame(seed: int) -> None:
        img = g(z_from_seed(seed, g.z_dim).to(model.device), None, noise_mode="const")  # type: ignore[union-attr]
        (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu()

    with torch.inference_mode():
        family_frame(0)
        plain_frame(0)  # warm-up
        ours, plain = [], []
        for i in range(frames):  # alternating, so drift hits both alike
            for fn, out in ((family_frame, ours), (plain_frame, plain)):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn(i + 1)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                out.append(time.perf_counter() - t0)
    a, b = statistics.median(ours), statistics.median(plain)
    print(f"  render per frame: family {a * 1000:.1f} ms, plain forward {b * 1000:.1f} ms, ratio {a / b:.3f} "
          f"(median of {frames}; budget ≤ 1.05)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own choice)")
    parser.add_argument("--skip-large", action="store_true", help="only the fixture generators")
    args = parser.parse_args(argv)
    import os

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return 0
    from sg_pickles import fixture_snapshot, random_snapshot

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("LATENT_STUDIO_DATA", str(work / "data"))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
        for name in ("sg2_uncond", "sg3t"):
            measure(name, fixture_snapshot(name, work / f"{name}.pkl"), work, args.repeats, args.frames,
                    args.device)
        if not args.skip_large:
            t0 = time.perf_counter()
            pkl = random_snapshot(work / "ffhq-1024.pkl", "stylegan2", FFHQ_1024, seed=0)
            print(f"(built the 1024² StyleGAN2 pickle in {time.perf_counter() - t0:.1f} s)")
            measure("stylegan2-1024", pkl, work, max(1, args.repeats - 1), args.frames, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())

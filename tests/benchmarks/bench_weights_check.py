"""What checking weights at load costs, as a ratio against reading the same file in the same run.

Run: `python tests/benchmarks/bench_weights_check.py [--shipped] [--params 860e6] [--dtype float16|float32]
[--repeats 5] [--threads N] [--no-hash] [--models-dir DIR]`.

For each weights file (the shipped models' with --shipped; a synthetic Stable-Diffusion-UNet-size set of --params
parameters in UNet-like shapes, written to a temporary folder tensor by tensor, with --params) it prints, in ms (best of
--repeats, alternating, after one warm-up):

- read: loading the file the way load_model does (`read_tensors_and_hash`: bytes read, tensors built, sha256;
  with --no-hash `read_tensors`, safetensors' own load_file, whose pages are only read when first touched, so the
  first check then pays for the reading: not a fair baseline, kept to show it);
- header: the full header check made when a package is scanned (`read_header`: byte ranges against the file size);
- finite: the finiteness check made at load (`check_finite`: one summing pass per tensor, exact only on failure);
- exact: the per-value test it replaces (`torch.isfinite(t).all()` per tensor), for comparison;

and the ratios header/read, finite/read and exact/read. It reports and exits 0; it never fails on a timing.

Measured on the shared 2-core development machine (CPU, torch 2.13, `--threads 1` as the render worker there; load
average 7–8 from other work, so reads are slow), best of the repeats:

| weights | read | header check | finite check (ratio to read) | isfinite().all() (ratio) |
|---|---|---|---|---|
| glyph-diffusion, 1.2 M float32 | 10.9 ms | 1.08 ms | 1.7 ms (0.156) | 6.1 ms (0.562) |
| glyph-gan, 0.9 M | 16.2 ms | 0.57 ms | 0.9 ms (0.054) | 2.6 ms (0.158) |
| glyphs, 2.8 M | 15.9 ms | 0.48 ms | 1.2 ms (0.074) | 7.5 ms (0.472) |
| one-shots, 7.0 M | 40.9 ms | 0.49 ms | 1.3 ms (0.032) | 35.0 ms (0.857) |
| synthetic UNet-like, 864 M float16 (1.6 GiB) | 6805 ms | 2.4 ms | 206 ms (0.030) | 6494 ms (0.954) |
| synthetic UNet-like, 864 M float32 (3.2 GiB) | 20053 ms | 1.6 ms | 345 ms (0.017) | 9705 ms (0.484) |

(`--shipped --threads 1 --repeats 7`; `--params 860e6 --dtype float16|float32 --threads 1 --repeats 3`.) With two
torch threads on the same busy machine the small models' checks were 10–60 ms: thread hand-offs, not the arithmetic.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import struct
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[2]))

import torch  # noqa: E402

from studio.io.safetensors import read_header  # noqa: E402
from studio.io.weights import check_finite, read_tensors, read_tensors_and_hash  # noqa: E402

# the shapes of a Stable Diffusion 1.x UNet's big tensors (convolutions, attention and feed-forward projections)
UNET_SHAPES = [(1280, 1280, 3, 3), (1280, 1280), (5120, 1280), (1280, 2560, 3, 3), (640, 640, 3, 3), (640, 640),
               (2560, 640), (320, 320, 3, 3), (320, 320), (1280, 768), (640, 768), (1280,), (640,), (320,)]
CODES = {torch.float16: ("F16", 2), torch.float32: ("F32", 4), torch.bfloat16: ("BF16", 2)}


def write_unet_like(path: Path, params: int, dtype: torch.dtype, seed: int = 0) -> int:
    """A safetensors file of about `params` parameters in UNet-like shapes, values ~ N(0, 0.05), written one
    tensor at a time (never all in memory). Returns the parameter count written."""
    code, size = CODES[dtype]
    shapes: list[tuple[int, ...]] = []
    total = 0
    while total < params:
        shape = UNET_SHAPES[len(shapes) % len(UNET_SHAPES)]
        shapes.append(shape)
        total += math.prod(shape)
    header, offset = {}, 0
    for i, shape in enumerate(shapes):
        nbytes = math.prod(shape) * size
        header[f"unet.block{i}.weight"] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    gen = torch.Generator().manual_seed(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for shape in shapes:
            t = (torch.randn(shape, generator=gen) * 0.05).to(dtype)
            f.write(t.contiguous().view(torch.uint8).numpy().tobytes())
            del t
    return total


def _best(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def measure(path: Path, repeats: int = 5, want_hash: bool = True) -> dict:
    """The figures for one weights file (ms and ratios against the read)."""
    read = (lambda: read_tensors_and_hash(path)[0]) if want_hash else (lambda: read_tensors(path))
    tensors = read()
    check_finite(tensors, path)  # warm-up: torch's first reductions in a process pay a one-off set-up
    [bool(torch.isfinite(t).all()) for t in tensors.values()]
    params = sum(t.numel() for t in tensors.values())
    times = {"read": [], "header": [], "finite": [], "exact": []}
    for _ in range(repeats):  # alternating, so that a busy moment hits every figure alike
        del tensors
        gc.collect()
        t0 = time.perf_counter()
        tensors = read()
        times["read"].append(time.perf_counter() - t0)
        times["header"].append(_best(lambda: read_header(path), 1) / 1000)
        times["finite"].append(_best(lambda: check_finite(tensors, path), 1) / 1000)
        times["exact"].append(_best(lambda: [bool(torch.isfinite(t).all()) for t in tensors.values()], 1) / 1000)
    ms = {k: min(v) * 1000 for k, v in times.items()}
    return {"file": str(path), "params": params, "bytes": path.stat().st_size, **{f"{k}_ms": v for k, v in ms.items()},
            "header_ratio": ms["header"] / ms["read"], "finite_ratio": ms["finite"] / ms["read"],
            "exact_ratio": ms["exact"] / ms["read"], "threads": torch.get_num_threads()}


def report(result: dict) -> None:
    print(f"{result['file']}: {result['params'] / 1e6:.1f} M parameters, {result['bytes'] / 2**20:.1f} MiB, "
          f"{result['threads']} torch threads")
    print(f"  read {result['read_ms']:.1f} ms | header check {result['header_ms']:.2f} ms "
          f"(ratio {result['header_ratio']:.4f}) | finite check {result['finite_ms']:.1f} ms "
          f"(ratio finite/read {result['finite_ratio']:.3f}) | exact isfinite().all() {result['exact_ms']:.1f} ms "
          f"(ratio exact/read {result['exact_ratio']:.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shipped", action="store_true", help="measure the shipped models' weights")
    parser.add_argument("--models-dir", action="append", default=[], help="measure the packages in this folder")
    parser.add_argument("--params", type=float, default=0, help="measure a synthetic UNet-like set of this size")
    parser.add_argument("--dtype", choices=["float16", "float32", "bfloat16"], default="float16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's; the app's render "
                        "worker uses every core but the GUI's)")
    parser.add_argument("--no-hash", action="store_true", help="read the synthetic set with load_file (memory-mapped, "
                        "half the memory) instead of as load_model does (bytes + sha256)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    folders = [Path(d) for d in args.models_dir]
    if args.shipped:
        from studio.paths import shipped_models_dir
        folders.append(shipped_models_dir())
    for folder in folders:
        for weights in sorted(folder.glob("*/weights.safetensors")):
            results.append(measure(weights, args.repeats, want_hash=True))
            report(results[-1])
    if args.params:
        dtype = getattr(torch, args.dtype)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "unet.safetensors"
            t0 = time.perf_counter()
            write_unet_like(path, int(args.params), dtype)
            print(f"(wrote {path.stat().st_size / 2**30:.2f} GiB of {args.dtype} in {time.perf_counter() - t0:.1f} s)")
            results.append(measure(path, args.repeats, want_hash=not args.no_hash))
            results[-1]["file"] = f"synthetic UNet-like {args.dtype}"
            report(results[-1])
    if not results:
        print("nothing measured: give --shipped, --models-dir or --params")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

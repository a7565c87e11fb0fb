"""nn~ (RAVE-style) models: real-time factor of decode for a long render, and the preview latency after a slider move.

    python tests/benchmarks/bench_nn_tilde.py [--seconds 120] [--preview-seconds 4] [--threads 1] [--repeats 5]

It builds a RAVE-v2-sized TorchScript model with random weights (tests/nn_tilde_models.py: 18.2 M parameters, 16
latent channels, 2048 samples per latent frame, 44.1 kHz; `--tiny` for the smoke test) in a temporary folder, makes
packages of it (the importer's model.toml, the file read in this process), and measures on the CPU:

(a) the preview latency after a slider move on a `--preview-seconds` package (measured first, on a fresh process):
    through the engine (the worker process, warm), the time from submitting the request with one more offset slider
    moved to its output, median of `--repeats` moves; and the same render in this process;
(b) the family's render of a `--seconds` sound (the seed's noise trajectory, decoded in chunks with margins), once
    after a warm-up: seconds of sound per second of compute (the real-time factor), beside one plain decode of the
    whole trajectory by the module (what the chunk margins cost, or save: one decode of two minutes at once holds
    gigabytes of activations and runs slower than chunks that stay in cache).
It reports and exits 0; it never fails on a timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests", REPO / "tests" / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_common import drive  # noqa: E402


def measure(seconds: float = 120.0, preview_seconds: float = 4.0, threads: int = 1, repeats: int = 5,
            tiny: bool = False) -> dict:
    import torch

    from nn_tilde_models import RaveV2Like, package_of, rave_v2_like
    from nn_tilde_models import tiny as tiny_model
    from studio.engine import PREVIEW, Engine
    from studio.library import load_model, resolve
    from studio.request import RenderRequest

    torch.set_num_threads(threads)
    result: dict = {"threads": threads, "seconds": seconds, "preview_seconds": preview_seconds}
    with tempfile.TemporaryDirectory(prefix="bench-nn-tilde-") as tmp:
        root = Path(tmp)
        if tiny:
            source = tiny_model(root / "model.ts")
            result["parameters"] = sum(p.numel() for p in torch.jit.load(str(source)).parameters())
        else:
            source = rave_v2_like(root / "model.ts")
            result["parameters"] = sum(p.numel() for p in RaveV2Like().parameters())
        short = package_of(source, root / "models" / "short", preview_seconds)
        here = load_model(resolve(str(short)))
        local = []
        with torch.inference_mode():
            drive(here, RenderRequest("short", seed=0))
            for i in range(repeats):
                start = time.perf_counter()
                drive(here, RenderRequest("short", seed=0, params={"offset0": 0.1 * (i + 1)}))
                local.append(time.perf_counter() - start)
        result["preview_here_ms"] = 1000 * statistics.median(local)
        with Engine(device="cpu", roots=[root / "models"], threads=threads) as engine:
            engine.submit(RenderRequest("short", seed=0), PREVIEW).wait()  # starts and warms the worker
            moves = []
            for i in range(repeats):
                start = time.perf_counter()
                engine.submit(RenderRequest("short", seed=0, params={"offset0": 0.1 * (i + 1)}), PREVIEW).wait()
                moves.append(time.perf_counter() - start)
        result["preview_engine_ms"] = 1000 * statistics.median(moves)
        result["preview_engine_max_ms"] = 1000 * max(moves)
        long = load_model(resolve(str(package_of(source, root / "models" / "long", seconds))))
        frames = long.manifest.latent.shape[1]
        rate = long.manifest.output["sample_rate"]
        result.update(frames=frames, sample_rate=rate, ratio=long.manifest.architecture["ratio"])
        with torch.inference_mode():
            drive(long, RenderRequest("long", seed=0))  # warm-up (allocations, kernels)
            start = time.perf_counter()
            out, _ = drive(long, RenderRequest("long", seed=1))
            result["render_s"] = time.perf_counter() - start
            z = long.family.latent(long, RenderRequest("long", seed=1))
            start = time.perf_counter()
            long.network.decode(z[None])
            result["plain_decode_s"] = time.perf_counter() - start
        audio_seconds = out.data.shape[0] / rate
        result["audio_seconds"] = audio_seconds
        result["rtf"] = audio_seconds / result["render_s"]
        result["rtf_plain"] = audio_seconds / result["plain_decode_s"]
        del long
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the long render (default 120)")
    parser.add_argument("--preview-seconds", type=float, default=4.0, help="length of the preview package")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (here and in the worker; default 1: steadier on a shared machine)")
    parser.add_argument("--repeats", type=int, default=5, help="slider moves timed")
    parser.add_argument("--tiny", action="store_true", help="a tiny model instead of the RAVE-v2-sized one (smoke)")
    args = parser.parse_args(argv)
    r = measure(args.seconds, args.preview_seconds, args.threads, args.repeats, args.tiny)
    print(f"model                  : {r['parameters'] / 1e6:.1f} M parameters, {r['sample_rate']} Hz, "
          f"{r['ratio']} samples per latent frame, {r['frames']} frames")
    print(f"threads                : {r['threads']}")
    print(f"render {r['audio_seconds']:.1f} s of sound : {r['render_s']:.2f} s (chunks with margins)")
    print(f"real-time factor       : {r['rtf']:.2f} x (seconds of sound per second of compute)")
    print(f"plain whole decode     : {r['plain_decode_s']:.2f} s, {r['rtf_plain']:.2f} x real time")
    print(f"preview {r['preview_seconds']:g} s, slider move → output, engine (worker): {r['preview_engine_ms']:.0f} ms "
          f"median, {r['preview_engine_max_ms']:.0f} ms worst of {args.repeats}")
    print(f"preview {r['preview_seconds']:g} s, same render in this process: {r['preview_here_ms']:.0f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())

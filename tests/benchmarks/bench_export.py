"""Animation export throughput: the pipelined export against its two stages alone and against a naive loop.

    python tests/benchmarks/bench_export.py [--model glyphs] [--frames 120] [--fps 24] [--format mp4]
                                            [--models-dir DIR] [--device auto] [--repeats 3]

All on the same frames, a walk through the latent (frame k: the model's default request with edit
d0 = -2 + 4k/N):
(1) decode: `render_frames` on this thread, in batches of 8;
(2) encode: `encode_frames` of those frames on this thread;
(3) export: `export_animation` through an Engine (the worker renders, an encoder thread encodes, overlapping);
(4) naive: render one frame, write it to a VideoWriter, repeat, on this thread.
After a warm-up, the four run `--repeats` times in alternating order (forward, then backward, …); it prints the median
frames/s of each, the ratio export / slower stage against the design budget, and naive / export. It reports; it
never fails on a timing (exit 2 only when the model cannot be found or loaded).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests" / "benchmarks"):  # run as a plain script from anywhere: the app, bench_common
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_common import finish_main, model_arguments  # noqa: E402

BUDGET = 0.8  # the export runs at least at 80 % of the speed of its slower stage alone
BATCH = 8
SUFFIXES = {"mp4": ".mp4", "webm": ".webm", "gif": ".gif", "png": ""}


def measure(model: str | None = None, frames: int = 120, fps: float = 24.0, fmt: str = "mp4", models_dirs=(),
            device: str = "auto", repeats: int = 3) -> dict:
    """Frames/s (medians over `repeats`) of decode, encode, export and the naive loop on the same frames."""
    import numpy as np
    import torch

    from studio.engine import Engine
    from studio.engine.animate import encode_frames, export_animation, render_frame, render_frames
    from studio.export.video import VideoWriter
    from studio.library import DEFAULT_MODEL_ID, default_roots, load_model, resolve
    from studio.request import RenderRequest

    n, repeats = max(1, frames), max(1, repeats)
    roots = default_roots(models_dirs)
    entry = resolve(model or DEFAULT_MODEL_ID, roots)
    cond = entry.manifest.conditions
    prompt = cond.default if cond.kind == "text" else ""
    label = (cond.default or cond.labels[0]) if cond.kind == "class" and cond.labels else None
    condition = {"prompt": prompt} if prompt else {"label": label} if label else {}
    requests = [RenderRequest(model_id=entry.id, params={**condition, "d0": -2 + 4 * k / n}) for k in range(n)]
    suffix = SUFFIXES[fmt]
    engine = Engine(device=device, roots=roots)
    try:
        engine.add_package(entry)
        bare_model = load_model(entry, engine.device, torch.float32)
        torch.set_num_threads(engine.threads)  # what the engine's worker sets for itself
        with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
            paths = (Path(folder) / f"clip-{i}{suffix}" for i in itertools.count())
            rendered = render_frames(bare_model, requests[:BATCH])  # warm-up: kernels, engine's model and worker
            encode_frames(next(paths), rendered, fps)
            export_animation(engine, requests[:BATCH], next(paths), fps).wait()

            def decode() -> float:
                nonlocal rendered
                t0 = time.perf_counter()
                rendered = np.concatenate([render_frames(bare_model, requests[i:i + BATCH])
                                           for i in range(0, n, BATCH)])
                return time.perf_counter() - t0

            def encode() -> float:
                t0 = time.perf_counter()
                encode_frames(next(paths), rendered, fps, batch=BATCH)
                return time.perf_counter() - t0

            def export() -> float:
                t0 = time.perf_counter()
                export_animation(engine, requests, next(paths), fps, batch=BATCH).wait()
                return time.perf_counter() - t0

            def naive() -> float:
                t0 = time.perf_counter()
                with VideoWriter(next(paths), fps) as writer, torch.inference_mode():
                    for request in requests:
                        writer.write(render_frame(bare_model, request)[None])
                return time.perf_counter() - t0

            decode()  # the frames the encode stage writes, before the first timed encode
            runs = [("decode", decode), ("encode", encode), ("export", export), ("naive", naive)]
            times: dict[str, list[float]] = {name: [] for name, _ in runs}
            for r in range(repeats):
                for name, run in runs if r % 2 == 0 else runs[::-1]:
                    times[name].append(run())
        rate = {name: n / statistics.median(seconds) for name, seconds in times.items()}
        slower = min(rate["decode"], rate["encode"])
        return {
            "model": entry.id, "folder": str(entry.folder), "device": str(engine.device), "frames": n,
            "size": f"{rendered.shape[2]}x{rendered.shape[1]}", "format": fmt, "fps": fps, "repeats": repeats,
            "threads": engine.threads, "batch": BATCH,
            **{f"{name}_fps": value for name, value in rate.items()},
            "slower_stage": "decode" if rate["decode"] <= rate["encode"] else "encode", "slower_fps": slower,
            "ratio": rate["export"] / slower, "naive_ratio": rate["naive"] / rate["export"], "budget": BUDGET,
        }
    finally:
        engine.shutdown()


def report(result: dict) -> str:
    verdict = "within budget" if result["ratio"] >= result["budget"] else "UNDER budget"
    return "\n".join([
        f"model {result['model']} ({result['folder']}) on {result['device']}, torch threads {result['threads']}",
        f"{result['frames']} frames of {result['size']} to {result['format']} at {result['fps']:g} fps, batches of "
        f"{result['batch']}, median of {result['repeats']} runs",
        f"(1) bare decode        : {result['decode_fps']:8.1f} frames/s",
        f"(2) bare encode        : {result['encode_fps']:8.1f} frames/s",
        f"(3) export (pipelined) : {result['export_fps']:8.1f} frames/s",
        f"(4) naive loop         : {result['naive_fps']:8.1f} frames/s",
        f"slower stage           : {result['slower_stage']} ({result['slower_fps']:.1f} frames/s)",
        f"ratio export/slower    : {result['ratio']:.3f}  (design budget >= {result['budget']:.2f}: {verdict})",
        f"ratio naive/export     : {result['naive_ratio']:.3f}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.add_argument("--frames", type=int, default=120, help="frames in the clip (default 120)")
    parser.add_argument("--fps", type=float, default=24.0, help="frames per second of the clip (default 24)")
    parser.add_argument("--format", default="mp4", choices=tuple(SUFFIXES), help="mp4 (default), webm, gif, png")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each kind (default 3)")
    args = parser.parse_args(argv)

    from studio.errors import StudioError

    def run() -> dict:
        return measure(args.model, args.frames, args.fps, args.format, args.models_dir, args.device, args.repeats)

    return finish_main("bench_export", run, report, errors=(StudioError,))  # nothing to measure: say why


if __name__ == "__main__":
    sys.exit(main())

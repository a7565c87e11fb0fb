"""Preview-lane overhead: the engine's preview lane against the bare model forward, on the same inputs.

    python tests/benchmarks/bench_preview.py [--model ID] [--device cpu] [--n 200] [--models-dir DIR]

(a) bare: the family's render generator driven directly on a LoadedModel, inside torch.inference_mode, on this
    thread, with the engine's torch thread count;
(b) engine: Engine.submit(request, "preview") then wait for `finished`, one at a time.
Both render the same n requests (seeds seed..seed+n-1), after a warm-up, in alternating blocks (A B, B A, …) so that
drifting load affects both alike; it prints per-render medians and the ratio engine/bare against the design budget.
It reports; it never fails on a timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests" / "benchmarks"):  # run as a plain script from anywhere: the app, bench_common
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_common import finish_main, model_arguments  # noqa: E402

BUDGET = 1.10  # the engine's preview lane may cost at most 10 % over the bare forward


def _drive(model, request):
    """Run a family's render generator to its end; its Output."""
    steps = model.family.render(model, request)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def measure(model: str | None = None, device: str = "auto", n: int = 200, models_dirs=(), block: int = 10,
            warmup: int = 10, seed: int = 0, prompt: str = "", dtype: str = "float32") -> dict:
    """Time (a) the bare forward and (b) the preview lane on the same requests; medians in seconds and the ratio."""
    import torch

    from studio.engine import PREVIEW, Engine
    from studio.engine.device import resolve_dtype
    from studio.library import DEFAULT_MODEL_ID, default_roots, load_model, resolve
    from studio.request import RenderRequest

    n, block, warmup = max(1, n), max(1, block), max(0, warmup)
    roots = default_roots(models_dirs)
    entry = resolve(model or DEFAULT_MODEL_ID, roots)
    engine = Engine(device=device, roots=roots)
    try:
        engine.add_package(entry)
        torch_dtype, _ = resolve_dtype(dtype, engine.device)
        bare_model = load_model(entry, engine.device, torch_dtype)
        torch.set_num_threads(engine.threads)  # what the engine's worker sets for itself
        condition = {"prompt": prompt} if prompt else {}  # "" = the model's own default
        requests = [RenderRequest(model_id=entry.id, seed=seed + i, dtype=dtype, params=condition) for i in range(n)]
        warm = [RenderRequest(model_id=entry.id, seed=seed + n + i, dtype=dtype, params=condition)
                for i in range(warmup)]
        worker_threads: list[int] = []

        def on_started(event):  # runs on the worker thread
            if event.kind == "started" and not worker_threads:
                worker_threads.append(torch.get_num_threads())

        engine.subscribe(on_started)

        def bare(request) -> float:
            t0 = time.perf_counter()
            with torch.inference_mode():
                _drive(bare_model, request)
            return time.perf_counter() - t0

        def lane(request) -> float:
            t0 = time.perf_counter()
            engine.submit(request, PREVIEW).wait()
            return time.perf_counter() - t0

        for request in warm or requests[:1]:  # loads the engine's copy, starts its worker, warms the kernels
            bare(request)
            lane(request)
        times: dict[str, list[float]] = {"bare": [], "engine": []}
        for k, start in enumerate(range(0, n, block)):
            chunk = requests[start:start + block]
            order = (("bare", bare), ("engine", lane)) if k % 2 == 0 else (("engine", lane), ("bare", bare))
            for name, run in order:
                times[name].extend(run(request) for request in chunk)
        bare_s = statistics.median(times["bare"])
        engine_s = statistics.median(times["engine"])
        return {
            "model": entry.id, "folder": str(entry.folder), "device": str(engine.device),
            "dtype": str(torch_dtype).replace("torch.", ""), "n": n, "block": block, "warmup": warmup,
            "threads_bare": torch.get_num_threads(),
            "threads_engine": worker_threads[0] if worker_threads else engine.threads,
            "bare_ms": bare_s * 1000.0, "engine_ms": engine_s * 1000.0, "ratio": engine_s / bare_s,
            "budget": BUDGET,
        }
    finally:
        engine.shutdown()


def report(result: dict) -> str:
    verdict = "within budget" if result["ratio"] <= result["budget"] else "OVER budget"
    return "\n".join([
        f"model {result['model']} ({result['folder']}) on {result['device']}, {result['dtype']}, torch threads "
        f"{result['threads_bare']} bare / {result['threads_engine']} engine; n={result['n']} renders each, "
        f"blocks of {result['block']}, warm-up {result['warmup']}",
        f"bare forward        : {result['bare_ms']:.3f} ms/render (median)",
        f"engine preview lane : {result['engine_ms']:.3f} ms/render (median)",
        f"ratio engine/bare   : {result['ratio']:.3f}  (design budget <= {result['budget']:.2f}: {verdict})",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--n", type=int, default=200, help="timed renders of each kind (default 200)")
    parser.add_argument("--block", type=int, default=10, help="renders per alternating block (default 10)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed renders of each kind first (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; render i uses seed+i")
    parser.add_argument("--prompt", default="", help="text condition (default: the model's own default)")
    args = parser.parse_args(argv)

    from studio.errors import StudioError

    def run() -> dict:
        return measure(args.model, args.device, args.n, args.models_dir, args.block, args.warmup, args.seed,
                       args.prompt, args.dtype)

    return finish_main("bench_preview", run, report, errors=(StudioError,))  # nothing to measure: say why


if __name__ == "__main__":
    sys.exit(main())

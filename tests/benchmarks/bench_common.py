"""What the sampling benchmarks share: driving a render, the device and thread settings for a run, and the end of
`main` (a skipped device exits 0, a missing comparison or an unusable device exits 2); for the window's benchmarks,
a run's own user folders and the stalls of a periodic timer. Not a benchmark itself."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator


class Skip(Exception):
    """The requested device is not present: nothing to measure."""


def drive(model, request):
    """Run a family's render generator to its end; its Output and the number of previews it yielded."""
    from studio.steps import Preview

    steps, previews = model.family.render(model, request), 0
    while True:
        try:
            previews += isinstance(next(steps), Preview)
        except StopIteration as stop:
            return stop.value, previews


@contextlib.contextmanager
def on_device(device: str, threads: int) -> Iterator:
    """The torch device to measure on (Skip when it is CUDA and there is none), with `threads` torch threads (0: torch's
    own choice) for the run and the old count restored afterwards."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Skip("CUDA is not available")
    saved = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield dev
    finally:
        torch.set_num_threads(saved)


def model_arguments(parser) -> None:
    """The options of benchmarks that measure an installed model: which one, where else to look, which device."""
    parser.add_argument("--model", help="package id or folder (default: the shipped default model)")
    parser.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                        help="another folder of model packages (repeatable)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")


def finish_main(name: str, measure: Callable[[], dict], report: Callable[[dict], str],
                errors: tuple[type[BaseException], ...] | None = None) -> int:
    """Run `measure`, print its report; the exit code (0, or 2 with the reason on stderr when it raises one of
    `errors`: by default a StudioError, or a RuntimeError such as an unusable device or a missing comparison)."""
    from studio.errors import StudioError

    try:
        result = measure()
    except Skip as exc:
        print(f"{name}: skipped: {exc}")
        return 0
    except errors or (StudioError, RuntimeError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    print(report(result))
    return 0


def sampling_arguments(parser, steps: int, repeats: int) -> None:
    """The options every sampling benchmark takes: steps, repeats, warm-up and device."""
    parser.add_argument("--steps", type=int, default=steps, help=f"DDIM steps per render (default {steps})")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed renders of each kind (default {repeats})")
    parser.add_argument("--warmup", type=int, default=1, help="untimed renders of each kind first (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")


def interleaved_medians(runs: dict[str, Callable[[int], object]], warmup: int, repeats: int,
                        sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median seconds of each run: `warmup` untimed calls of each, then `repeats` timed rounds in alternating order
    (a b c, c b a, …) so a machine slowing down or speeding up mid-way weighs on every run alike. Run k gets the
    seed 1 + k while warming up and 100 + round when timed; `sync` waits for the device before each clock read."""
    import statistics
    import time

    for k in range(warmup):
        for run in runs.values():
            run(1 + k)
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for r in range(repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            sync()
            t0 = time.perf_counter()
            runs[name](100 + r)
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


@contextlib.contextmanager
def user_folders(prefix: str) -> Iterator[Path]:
    """A temporary folder whose data/ and cache/ are the app's user folders (LATENT_STUDIO_DATA, _CACHE) for the run;
    the variables are put back afterwards."""
    saved = {k: os.environ.get(k) for k in ("LATENT_STUDIO_DATA", "LATENT_STUDIO_CACHE")}
    tmp = tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True)
    os.environ["LATENT_STUDIO_DATA"] = str(Path(tmp.name) / "data")
    os.environ["LATENT_STUDIO_CACHE"] = str(Path(tmp.name) / "cache")
    try:
        yield Path(tmp.name)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tmp.cleanup()


def stall_stats(stamps: list[float], period_ms: float, budget_ms: float) -> dict:
    """Stalls of a periodic timer: gaps between its callbacks minus the period, in ms."""
    gaps = [max(0.0, (b - a) * 1000.0 - period_ms) for a, b in zip(stamps, stamps[1:])]
    if not gaps:
        return {"max": math.nan, "p99": math.nan, "median": math.nan, "ticks": len(stamps), "over": 0}
    ordered = sorted(gaps)
    return {"max": ordered[-1], "p99": ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)],
            "median": statistics.median(ordered), "ticks": len(stamps),
            "over": sum(gap > budget_ms for gap in gaps)}

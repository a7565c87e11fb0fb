"""What every training loop shares, in one place: the [train] schedule of a recipe, the set-up of a run (the data
generator's seed, the device, the precision, the run folder and resuming it), the step driver (checkpoints, previews,
stopping when the monitor asks, the progress it reports) and writing the finished package.

A loop reads like this (studio.train.loops.*):

    run = Run(recipe, run_dir, resume, monitor, schedule)
    run.seed_weights()
    net = Net(...).to(run.device)
    run.begin({"net": net}, {"net": opt}, "on 120 pictures")   # resumes the checkpoint when asked
    for step in run.steps(preview):                              # saves, previews and stops between steps
        ...one optimiser step...
        run.report(step, batch, loss=loss.item())
    run.write(out, "vae", manifest_sections, training, weights, directions, preview)

The data is drawn from `run.gen`, a CPU generator seeded by train.seed and saved in every checkpoint, so a run resumed
from a checkpoint draws what an uninterrupted run draws (bit-identical weights on the CPU).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypedDict

import numpy as np
import torch
from torch import nn

from studio import __version__
from studio.errors import RecipeError, StudioError, WeightsError
from studio.io.safetensors import read_header
from studio.train.monitor import Monitor, check_stop
from studio.io.atomic import atomic_path
from studio.io.package import write_package
from studio.train.recipe import Recipe
from studio.io.weights import read_tensors, write_tensors

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "latent-studio-checkpoint-2"
TRAINING_TABLES = ("trainer", "data", "model", "train")  # what decides the weights; [package] and [evaluate] do not


def positive(v: int | float) -> str | None:
    return None if v > 0 else f"must be positive, got {v}"


# --- the schedule ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The [train] figures every loop reads."""

    steps: int
    batch: int
    lr: float
    warmup: int
    seed: int
    checkpoint_every: int
    preview_every: int


class _ScheduleDefaults(TypedDict):
    batch: int
    lr: float
    warmup: int | Callable[[int], int]
    checkpoint_every: int


class ScheduleDefaults(_ScheduleDefaults, total=False):
    """A loop's keywords for `read_schedule` with one source of data (`batch_key` only where it differs)."""

    batch_key: str


def read_schedule(recipe: Recipe, *, batch: int, lr: float, warmup: int | Callable[[int], int],
                  checkpoint_every: int, batch_key: str = "batch") -> Schedule:
    """The recipe's [train] figures, validated; the keywords are the defaults of the loop and its data (`warmup` may
    depend on the steps; `batch_key` names the batch where a source counts it otherwise, e.g. fonts)."""
    r, t = recipe.reader(), recipe.train
    steps = r.get(t, "steps", int, "train.", check=positive)
    return Schedule(
        steps=steps,
        batch=r.get(t, batch_key, int, "train.", required=False, default=batch, check=positive),
        lr=float(r.get(t, "lr", (int, float), "train.", required=False, default=lr, check=positive)),
        warmup=r.get(t, "warmup", int, "train.", required=False, default=warmup(steps) if callable(warmup) else warmup,
                     check=lambda v: None if v >= 0 else f"must not be negative, got {v}"),
        seed=r.get(t, "seed", int, "train.", required=False, default=0),
        checkpoint_every=r.get(t, "checkpoint_every", int, "train.", required=False, default=checkpoint_every,
                               check=positive),
        preview_every=r.get(t, "preview_every", int, "train.", required=False, default=max(1, steps // 20),
                            check=positive),
    )


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then a cosine decay to zero."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)
        for a, b in zip(ema.buffers(), model.buffers()):
            a.copy_(b)


class RecentMean:
    """The mean of the last `n` values of each figure (the final losses a package records)."""

    def __init__(self, n: int = 50):
        self.n = n
        self.values: dict[str, list[float]] = {}

    def add(self, **figures: float) -> None:
        for key, value in figures.items():
            seen = self.values.setdefault(key, [])
            seen.append(float(value))
            del seen[:-self.n]

    def means(self, prefix: str = "", suffix: str = "_final") -> dict[str, float]:
        return {f"{prefix}{k}{suffix}": round(float(np.mean(v)), 5) for k, v in self.values.items() if v}


# --- device and precision -------------------------------------------------------------------------------------------


def train_device(recipe: Recipe) -> torch.device:
    """train.device: "cpu" (the default), "cuda", "cuda:N", "mps" or "auto"; RecipeError when not available."""
    from studio.engine.device import pick_device

    name = recipe.reader().get(recipe.train, "device", str, "train.", required=False, default="cpu")
    try:
        return pick_device(name)
    except StudioError as exc:
        raise RecipeError(exc.problem, recipe.path, "train.device") from None


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast is native (fast) on `device`: CPUs with AVX-512 BF16 or AMX, CUDA GPUs that have it."""
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(bool(check()) for check in checks if check is not None)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return False


def use_bf16(recipe: Recipe, device: torch.device, log: Callable[[str], None], default: bool | str = "auto") -> bool:
    """train.bfloat16: true, false or "auto" (where the device computes it natively)."""
    value = recipe.reader().get(recipe.train, "bfloat16", (bool, str), "train.", required=False, default=default,
                                check=lambda v: None if isinstance(v, bool) or v == "auto" else
                                f"must be true, false or \"auto\", got {v!r}")
    native = bf16_supported(device)
    if value is True and not native and device.type not in ("cpu", "cuda"):
        log(f"bfloat16 is not used on {device.type}; training in float32")
        return False
    return native if value == "auto" else bool(value)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on the CPU or CUDA when enabled; nothing otherwise."""
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def rand(shape: tuple[int, ...], gen: torch.Generator, device: torch.device, normal: bool = True) -> torch.Tensor:
    """Random numbers drawn on the CPU from the run's generator (the same on every device), moved to `device`."""
    x = torch.randn(shape, generator=gen) if normal else torch.rand(shape, generator=gen)
    return x.to(device)


# --- checkpoints ----------------------------------------------------------------------------------------------------


def same_training(text_a: str, text_b: str) -> bool:
    """Whether two recipe texts train the same network the same way (their packaging and evaluation may differ,
    so a finished run can be measured again or renamed without training it again)."""
    from studio.manifest import tomllib

    try:
        a, b = tomllib.loads(text_a), tomllib.loads(text_b)
    except tomllib.TOMLDecodeError:
        return False
    return all(a.get(k) == b.get(k) for k in TRAINING_TABLES)


def _fitted(module: nn.Module) -> set[str]:
    """A module's buffers that are fitted after training (a VAE's prior map): not training state, not checkpointed."""
    return set(getattr(module, "PRIOR_BUFFERS", ())) & set(module.state_dict())


class Checkpoint:
    """Networks, optimisers and the data generator of a run, saved every so often with safetensors (never pickle)
    and tied to the recipe text that made them. Buffers fitted after training (`PRIOR_BUFFERS`) are left out."""

    def __init__(self, path: Path, recipe: Recipe, modules: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer], gen: torch.Generator):
        self.path, self.recipe, self.modules, self.optimizers, self.gen = path, recipe, modules, optimizers, gen
        self.t0 = time.perf_counter()
        self.seconds_before = 0.0

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    def save(self, step: int) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self.modules.items():
            tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items() if k not in _fitted(module)})
        for name, opt in self.optimizers.items():
            for idx, st in opt.state_dict()["state"].items():
                for key, value in st.items():
                    tensors[f"opt-{name}.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        tensors["rng"] = self.gen.get_state()
        meta = {"step": str(step), "recipe": self.recipe.text, "format": CHECKPOINT_FORMAT,
                "seconds": f"{self.seconds:.1f}"}
        with atomic_path(self.path) as tmp:  # a unique temporary of ours; a killed run's is swept by the next save
            write_tensors(tensors, tmp, metadata=meta)

    def load(self) -> int:
        """Restore the run; the step it had reached."""
        try:
            meta = read_header(self.path).metadata
        except WeightsError as exc:
            raise RecipeError(f"the checkpoint cannot be read ({exc.problem}); remove it to train again",
                              self.path) from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise RecipeError("the checkpoint was written by an older version of the trainer and cannot be "
                              "resumed; remove it to train again", self.path)
        if not same_training(meta.get("recipe", ""), self.recipe.text):
            raise RecipeError("the checkpoint was made by a recipe that trains differently; remove it or train "
                              "with the recipe that made it", self.path)
        tensors = read_tensors(self.path)
        for name, module in self.modules.items():
            prefix = f"{name}."
            fitted = _fitted(module)
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            state = {k: v for k, v in state.items() if k not in fitted}
            try:
                missing, unexpected = module.load_state_dict(state, strict=False)
                if set(missing) - fitted or unexpected:
                    raise RuntimeError(f"missing {sorted(set(missing) - fitted)}, unexpected {sorted(unexpected)}")
            except RuntimeError as exc:
                raise RecipeError(f"the checkpoint does not fit the recipe's {name}: {exc}", self.path) from None
        for name, opt in self.optimizers.items():
            opt_state = opt.state_dict()
            for idx in range(len(opt_state["param_groups"][0]["params"])):
                prefix = f"opt-{name}.{idx}."
                entry = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                if entry:
                    opt_state["state"][idx] = entry
            opt.load_state_dict(opt_state)
        self.gen.set_state(tensors["rng"])
        self.seconds_before = float(meta.get("seconds", 0.0))
        self.t0 = time.perf_counter()
        return int(meta["step"])


# --- a run ----------------------------------------------------------------------------------------------------------


class Run:
    """One run of a recipe: its schedule, the device and precision it computes in, the generator its data is drawn
    from, the run folder with its checkpoint, and the monitor it reports to. Nothing is written before `begin`, so a
    recipe refused while it is read leaves no run folder behind."""

    def __init__(self, recipe: Recipe, run_dir: Path, resume: bool, monitor: Monitor, schedule: Schedule):
        self.recipe, self.run_dir, self.resume, self.monitor = recipe, Path(run_dir), resume, monitor
        self.schedule = schedule
        self.log = monitor.log
        self.device = train_device(recipe)
        self.bf16 = False
        self.gen = torch.Generator().manual_seed(schedule.seed)
        self.checkpoint: Checkpoint | None = None
        self.start = 0
        self._seconds: float | None = None  # the training time, once the steps are done

    def precision(self, default: bool | str = "auto") -> bool:
        """Whether the run computes in bfloat16 (train.bfloat16, with the trainer's default); remembered."""
        self.bf16 = use_bf16(self.recipe, self.device, self.log, default)
        return self.bf16

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.bf16)

    def seed_weights(self) -> None:
        """Seed torch's generator for the networks' initial weights (made next, on the CPU, then moved)."""
        torch.manual_seed(self.schedule.seed)

    def begin(self, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], about: str,
              unit: str = "img") -> int:
        """The run folder and its checkpoint of `modules` and `optimizers`; with `resume`, the run continues from
        the checkpoint there. Says what is trained (`about`: on what data) and starts the monitor. The first step."""
        s = self.schedule
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint = Checkpoint(self.run_dir / CHECKPOINT_NAME, self.recipe, modules, optimizers, self.gen)
        if self.checkpoint.path.exists():
            if self.resume:
                self.start = self.checkpoint.load()
                self.log(f"resumed from {self.checkpoint.path} at step {self.start}")
            else:
                self.log(f"starting over; an older checkpoint at {self.checkpoint.path} will be replaced "
                         "(resume to continue it)")
        counts = {name: sum(p.numel() for group in opt.param_groups for p in group["params"])
                  for name, opt in optimizers.items()}
        sizes = " + ".join(f"{name} {n / 1e6:.2f} M" if len(counts) > 1 else f"{n / 1e6:.2f} M"
                           for name, n in counts.items())
        precision = ", bfloat16" if self.bf16 else ""
        self.log(f"training {sizes} parameters for {s.steps} steps of {s.batch} {about} ({self.device}{precision})")
        self.monitor.start(s.steps, self.start, unit)
        return self.start

    def steps(self, preview: Callable[[], tuple] | None = None) -> Iterator[int]:
        """The steps left (0-based). After each: a preview (`preview()` → the monitor's sample arguments) every
        train.preview_every steps and at the end when the monitor wants samples, a checkpoint every
        train.checkpoint_every steps and at the end, and a stop when the monitor asks (a checkpoint first:
        TrainingStopped)."""
        s, ckpt = self.schedule, self.checkpoint
        if ckpt is None:
            raise RuntimeError("Run.steps() needs Run.begin() first (it makes the checkpoint)")
        if not getattr(self.monitor, "wants_samples", True):
            preview = None  # nobody would look at it
        for step in range(self.start, s.steps):
            yield step
            done = step + 1
            if preview is not None and (done % s.preview_every == 0 or done == s.steps):
                self.monitor.sample(done, *preview())
            if done % s.checkpoint_every == 0 or done == s.steps:
                ckpt.save(done)  # after the preview: the time a checkpoint records is all the run's time
            check_stop(self.monitor, done, ckpt.save, ckpt.path)
        self.monitor.finish()
        self._seconds = ckpt.seconds

    def report(self, step: int, items: int, **figures: float) -> None:
        """Step `step` (0-based) is done: `items` examples went through it; its loss figures."""
        self.monitor.step(step + 1, items, **figures)

    @property
    def seconds(self) -> float:
        """The training time of the run over all its sessions (measuring and packaging it not counted)."""
        if self._seconds is not None:
            return self._seconds
        return self.checkpoint.seconds if self.checkpoint is not None else 0.0

    def write(self, out: Path, family: str, sections: dict[str, Any], training: dict[str, Any],
              weights: dict[str, torch.Tensor], directions=None, preview: np.ndarray | None = None) -> Path:
        """The package: model.toml (the recipe's [package] table, `family`, `sections`, and the training summary with
        `training` added), the weights, the directions (a studio.latent.directions.Directions), the preview, and
        the recipe."""
        s, package = self.schedule, self.recipe.package
        manifest = {
            "format": 1, "id": package["id"], "name": package["name"], "family": family,
            "version": package["version"], "license": package["license"],
            "description": package.get("description", ""),
            **sections,
            "training": {"trainer": self.recipe.trainer, "app_version": __version__, "steps": s.steps,
                         "batch": s.batch, "seconds": round(self.seconds, 1), **training},
        }
        tensors = None if directions is None else directions.to_tensors()
        path = write_package(out, manifest, weights, tensors, preview, self.recipe.text)
        self.log(f"wrote {path}")
        return path

"""Device and dtype choice: CUDA, then MPS, then CPU; memory budgets; out-of-memory detection."""

from __future__ import annotations

import os

import torch

from studio.errors import StudioError

_TORCH_THREADS = torch.get_num_threads()  # torch's own default, before the app changes it
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(preference: str | None = "auto") -> torch.device:
    """'auto' (or None) takes CUDA, then MPS, then CPU; an explicit choice must be available.

    The environment variable LATENT_STUDIO_DEVICE overrides 'auto'.
    """
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        pref = os.environ.get("LATENT_STUDIO_DEVICE", "auto").strip().lower() or "auto"
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(pref)
    except RuntimeError:
        raise StudioError(f"unknown device {preference!r} (use auto, cpu, cuda, cuda:N or mps)", field="device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StudioError("CUDA was asked for, but this PyTorch build sees no CUDA GPU", field="device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise StudioError(f"there is no {device}; this machine has {torch.cuda.device_count()} CUDA device(s)",
                              field="device")
    elif device.type == "mps" and not mps_available():
        raise StudioError("MPS (Apple GPU) was asked for, but it is not available here", field="device")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise StudioError(f"unsupported device type {device.type!r}", field="device")
    return device


def resolve_dtype(name: str, device: torch.device) -> tuple[torch.dtype, str | None]:
    """The dtype to compute in, and a note when it differs from the one asked for.

    Half precision is a GPU feature: on CPU, float16 runs in float32 (it would be slower and some kernels are
    missing). bfloat16 on MPS needs macOS 14; float16 is the safe half type there.
    """
    dtype = _DTYPES[name]
    if device.type == "cpu" and dtype is torch.float16:
        return torch.float32, "float16 is not used on the CPU; rendered in float32"
    if device.type == "mps" and dtype is torch.bfloat16:
        return torch.float16, "bfloat16 is not used on MPS; rendered in float16"
    return dtype, None


def memory_budget(device: torch.device, fraction: float = 0.5) -> int:
    """Bytes the model cache may hold on `device`: a fraction of its memory."""
    try:
        if device.type == "cuda":
            _, total = torch.cuda.mem_get_info(device)
            return int(total * fraction)
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory() * fraction)
    except (RuntimeError, AttributeError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * fraction * 0.5)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        try:
            torch.mps.empty_cache()
        except (RuntimeError, AttributeError):
            pass


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity mask where the OS keeps one (a container's or `taskset`'s
    share), else every core."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def default_threads() -> int:
    """Torch threads for the worker: every core but one, which stays with the GUI."""
    return max(1, usable_cores() - 1)


def headless_threads() -> int:
    """Torch threads for a command-line render: what torch itself (and so diffusers) takes by default, one per
    physical core this process may use; no core is kept back, as there is no GUI (the main thread only waits for the
    picture). On a two-core machine: 2, where `default_threads` gives 1."""
    return max(1, min(usable_cores(), _TORCH_THREADS))

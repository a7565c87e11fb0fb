"""The torch renderer: what runs the scheduler's jobs on a device.

It owns the device, the dtype choice, a memory-bounded model cache and the table of packages added by the app; it
loads models through `studio.library` and turns a job into the family's render (or an encoding, a latent, or the
job's own `work`) on the loaded model. Out of memory on an accelerator, it frees the cache and retries once, then
renders on the CPU (noted in job.info["fallback"]). `studio.engine.Engine` is the scheduler with this renderer.

Models whose family runs code (TorchScript, ONNX: `Family.runs_code`) are never loaded here: `studio.engine.sandbox`
runs them in a worker process the renderer owns (one at a time), with the same steps, events and job.info; `close`
ends it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from studio.engine.cache import ModelCache
from studio.engine.device import (default_threads, is_out_of_memory, memory_budget, pick_device, release_memory,
                                  resolve_dtype)
from studio.engine.sandbox import Sandbox
from studio.engine.scheduler import Job, JobSteps
from studio.errors import StudioError
from studio.families.base import LoadedModel
from studio.params import Capability
from studio.library import PackageEntry, load_model, resolve, resolve_installed
from studio.request import RenderRequest
from studio.steps import Output, Progress, RenderSteps

log = logging.getLogger(__name__)


def _package_stamp(entry: PackageEntry) -> tuple:
    """Where a package is and which weights it has, from the file system alone (no hashing)."""
    try:
        st = entry.manifest.weights_path.stat() if entry.manifest is not None else None
    except OSError:
        st = None
    return (str(entry.folder), st.st_size if st else None, st.st_mtime_ns if st else None)


class TorchRenderer:
    """Renders jobs with torch on `device` ("auto": CUDA, then MPS, then CPU), keeping loaded models in a cache of
    `cache_bytes` (default: a share of the device's memory). `threads` is torch's thread count on the worker
    (default: every core but the GUI's); `oom_fallback` turns the out-of-memory retry and CPU fallback on."""

    def __init__(self, device: str | None = "auto", roots: Iterable[str | Path] | None = None,
                 cache_bytes: int | None = None, threads: int | None = None, oom_fallback: bool = True):
        self.device = pick_device(device)
        self.roots = list(roots) if roots is not None else None
        self.cache: ModelCache[tuple[str, torch.device, torch.dtype]] = ModelCache(
            cache_bytes if cache_bytes is not None else memory_budget(self.device))
        self.threads = threads or default_threads()
        self.oom_fallback = oom_fallback
        self._lock = threading.Lock()
        self._entries: dict[str, PackageEntry] = {}
        self._stamps_by_id: dict[str, tuple] = {}  # where each added package is and its weights file's size/time
        self._stale: set[str] = set()  # ids whose cached networks are out of date
        self.sandbox = Sandbox(self.threads)  # the worker process for models that run code (started when needed)

    def close(self) -> None:
        """End the worker process, if one runs (the engine's shutdown; a later job starts a fresh one)."""
        self.sandbox.close()

    def add_package(self, entry: PackageEntry) -> None:
        """Make a package (e.g. a folder opened by the user) renderable by its id. When the id's package has moved
        or its weights file changed (retrained under the same id, say), its cached networks are dropped before the
        next render, so the new weights are what renders."""
        stamp = _package_stamp(entry)
        with self._lock:
            old = self._stamps_by_id.get(entry.id)
            if old is not None and old != stamp:
                self._stale.add(entry.id)
            self._stamps_by_id[entry.id] = stamp
            self._entries[entry.id] = entry

    @contextlib.contextmanager
    def worker(self) -> Iterator[None]:
        """Around the worker thread's jobs: torch's thread count (per process: every core but the GUI's) and
        inference mode (per thread, so entered here, on the worker)."""
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            yield

    def run(self, job: Job) -> JobSteps:
        """The job on the renderer's device; out of memory there: free the model cache and retry once, then fall
        back to the CPU (noted in job.info)."""
        device = self.device
        try:
            return (yield from self._run_on(job, device))
        except Exception as exc:
            if not (self.oom_fallback and is_out_of_memory(exc) and device.type != "cpu"):
                raise
        log.warning("out of memory on %s; retrying after freeing the model cache", device)
        self.cache.drop()
        release_memory(device)
        try:
            return (yield from self._run_on(job, device))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        release_memory(device)
        job.info["fallback"] = f"out of memory on {device}; rendered on the CPU"
        return (yield from self._run_on(job, torch.device("cpu")))

    def _run_on(self, job: Job, device: torch.device) -> JobSteps:
        request = job.request
        dtype, note = resolve_dtype(request.dtype, device)
        if note:
            job.info["dtype_note"] = note
        self.sandbox.threads = self.threads
        model = self._model(request, device, dtype)
        job.info.update(device=str(device), dtype=str(dtype).replace("torch.", ""), model_sha256=model.sha256,
                        model_name=model.manifest.name, model_version=model.manifest.version)
        steps = self._steps(job, model)
        yield None  # a cancel point once the model is loaded, before the family's first step
        output = yield from steps
        # what made it travels with it (an export's `then` writes the weights' hash into the file)
        output.info.setdefault("model_sha256", model.sha256)
        output.info.setdefault("model_name", model.manifest.name)
        if job.then is None:
            return output
        return job.then(output) or output

    @staticmethod
    def _steps(job: Job, model: LoadedModel) -> RenderSteps:
        # every param known to the model and in range (normalised), or a RequestError naming it
        request = model.checked(job.request)
        if job.work is not None:
            return job.work(model, request)
        if job.kind == "encode":
            images, labels = job.payload
            return _encode_steps(model, images, labels)
        if job.kind == "latent":
            return _latent_steps(model, request)
        return model.family.render(model, request)

    def _model(self, request: RenderRequest, device: torch.device, dtype: torch.dtype) -> LoadedModel:
        key = (request.model_id, device, dtype)
        with self._lock:
            stale = request.model_id in self._stale
            self._stale.discard(request.model_id)
        if stale:
            for cached in [k for k in self.cache.keys() if k[0] == request.model_id]:
                self.cache.drop(cached)
        model = self.cache.get(key, lambda: self._load(request, device, dtype))
        if request.model_hash and model.sha256 != request.model_hash:
            # The package may have changed on disk since it was cached: read it again from its folder. If the
            # weights still differ, loading raises an error that names both hashes.
            self.cache.drop(key)
            model = self.cache.get(key, lambda: self._load(request, device, dtype, reread=True))
        return model

    def _load(self, request: RenderRequest, device: torch.device, dtype: torch.dtype,
              reread: bool = False) -> LoadedModel:
        entry = self._entries.get(request.model_id)
        if entry is None:  # by id among the installed packages: a request never picks a folder to load
            entry = resolve_installed(request.model_id, self.roots)
        elif reread:
            entry = resolve(str(entry.folder))
        self._entries[request.model_id] = entry
        family = entry.family
        if family is not None and family.runs_code:  # its network runs in the worker process, never here
            return self.sandbox.model(entry, device, dtype, expected_sha256=request.model_hash or None)
        return load_model(entry, device, dtype, expected_sha256=request.model_hash or None)


def _latent_steps(model: LoadedModel, request: RenderRequest) -> RenderSteps:
    z = model.family.latent(model, request)
    if isinstance(z, Generator):  # computed in the worker process (a family whose latent needs its network)
        z = yield from z
    yield Progress(1, 1, "latent")
    return Output("latent", z.reshape(-1).float().numpy(), {"shape": list(z.shape)})


def _encode_steps(model: LoadedModel, images: np.ndarray, labels: list[str] | None) -> RenderSteps:
    if Capability.ENCODE not in model.family.capabilities:
        raise StudioError(f"{model.id} ({model.family.name} family) cannot encode images")
    yield Progress(0, 1, "encoding")
    z = model.family.encode(model, images, labels)
    if isinstance(z, Generator):  # long encodings (projection by optimisation) yield progress and cancel points
        z = yield from z
    return Output("latent", z.reshape(-1).float().cpu().numpy(), {"images": int(images.shape[0]),
                                                                  "shape": list(z.shape)})

"""The render engine: the scheduler with the torch renderer, the object the window and the CLI submit work to.

    engine = Engine()
    job = engine.submit(request, lane="preview", on_event=print)
    output = job.wait()

The lanes (newest-wins previews, a FIFO export queue), the worker thread and the events are
`studio.engine.scheduler` (no torch); devices, the model cache and the out-of-memory fallback are
`studio.engine.renderer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from studio.engine.renderer import TorchRenderer
from studio.engine.scheduler import (EXPORT, LANES, PREVIEW, Cancelled, Event, EventCallback, Job, Scheduler, Then,
                                     Work)
from studio.library import PackageEntry

__all__ = ["Engine", "Event", "EventCallback", "Job", "Cancelled", "PREVIEW", "EXPORT", "LANES", "Then", "Work"]


def _renderer_setting(name: str, doc: str) -> property:
    """An Engine attribute that is the renderer's (read and written through)."""
    return property(lambda self: getattr(self.renderer, name), lambda self, value: setattr(self.renderer, name, value),
                    doc=doc)


class Engine(Scheduler):
    """The scheduler driving a TorchRenderer: `device` ("auto": CUDA, then MPS, then CPU), package `roots` to find
    models in, a model cache of `cache_bytes`, torch `threads` on the worker, and the out-of-memory fallback."""

    renderer: TorchRenderer

    def __init__(self, device: str | None = "auto", roots: Iterable[str | Path] | None = None,
                 cache_bytes: int | None = None, threads: int | None = None, oom_fallback: bool = True):
        super().__init__(TorchRenderer(device, roots, cache_bytes, threads, oom_fallback))

    device = _renderer_setting("device", "The torch device jobs render on.")
    roots = _renderer_setting("roots", "The folders models are found in by id (None: the default ones).")
    cache = _renderer_setting("cache", "The memory-bounded model cache.")
    threads = _renderer_setting("threads", "Torch threads on the worker.")
    oom_fallback = _renderer_setting("oom_fallback", "Out of memory: drop the cache and retry, then the CPU.")

    def shutdown(self, wait: bool = True, timeout: float = 10.0) -> bool:
        """Refuse new work, cancel what is there, (with `wait`) join the worker, and end the worker process of
        code-bearing models. Returns whether the worker thread has ended (Scheduler.shutdown)."""
        ended = super().shutdown(wait, timeout)
        self.renderer.close()
        return ended

    def add_package(self, entry: PackageEntry) -> None:
        """Make a package (e.g. a folder opened by the user) renderable by its id; when the id's package moved or its
        weights changed, the cached networks are dropped before the next render (TorchRenderer.add_package)."""
        self.renderer.add_package(entry)

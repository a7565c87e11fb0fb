"""The render engine: the scheduler (lanes, a worker thread, events) with the torch renderer (device, model cache).

    engine = Engine()
    job = engine.submit(request, lane="preview", on_event=print)
    output = job.wait()

Events (queued, started, progress, preview, finished, cancelled, error) reach plain callbacks, called on the worker
thread (or on the submitting thread for `queued` and for jobs superseded before they start). The Qt bridge turns them
into queued signals; nothing here knows about Qt.

The preview lane is newest-wins: a newer preview supersedes a waiting one, so a burst of requests renders at most the
one in flight and the newest. The export lane is a FIFO queue. Each job's render is a generator; every yield is a
cancel point. A failing job becomes an error event; the worker lives on. The lanes and events are
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

    def add_package(self, entry: PackageEntry) -> None:
        """Make a package (e.g. a folder opened by the user) renderable by its id; when the id's package moved or its
        weights changed, the cached networks are dropped before the next render (TorchRenderer.add_package)."""
        self.renderer.add_package(entry)

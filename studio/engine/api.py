"""What the window and the command line ask of an engine, as a typed protocol, with no torch.

`studio.engine.Engine` (the scheduler with the torch renderer) is one; the UI tests' fake engine (the same scheduler
with a fake renderer) is another. The Qt bridge takes an `EngineAPI`, so it never needs to ask what an engine can do.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from studio.engine.scheduler import PREVIEW, EventCallback, Job, Then, Work
from studio.request import RenderRequest


class Package(Protocol):
    """A model package as an engine takes it: a `studio.library.PackageEntry` (named here through this protocol
    because studio.library imports torch)."""

    @property
    def id(self) -> str: ...


@runtime_checkable
class EngineAPI(Protocol):
    """Jobs on two lanes (PREVIEW: newest-wins; EXPORT: first in, first out), their events, and the packages that
    can be rendered. Events reach callbacks on the engine's worker thread (`queued` on the submitting one).

`isinstance(engine, EngineAPI)` checks that every member is there (not their signatures)."""

    @property
    def device(self) -> Any:
        """Where jobs run (a torch.device for the torch engine); `str()` of it is what the window shows."""
        ...

    @property
    def busy(self) -> bool:
        """A job is running or waiting."""
        ...

    def submit(self, request: RenderRequest, lane: str = PREVIEW, on_event: EventCallback | None = None,
               then: Then | None = None, work: Work | None = None, kind: str = "render",
               payload: Any = None) -> Job:
        """Queue `request` on `lane`; `then(output)` runs on the worker after the render, `work(model, request)`
        replaces the render for other tasks on the request's model."""
        ...

    def encode(self, request: RenderRequest, images: np.ndarray, labels: list[str] | None = None,
               on_event: EventCallback | None = None) -> Job:
        """Encode `images` with the request's model (export lane); the output is a "latent"."""
        ...

    def latent(self, request: RenderRequest, on_event: EventCallback | None = None) -> Job:
        """The request's latent values as a "latent" output (export lane)."""
        ...

    def cancel_all(self) -> None:
        """Cancel every waiting job and stop the running one at its next cancel point."""
        ...

    def shutdown(self, wait: bool = True, timeout: float = 10.0) -> bool:
        """Refuse new work, cancel what is there and (with `wait`) join the worker; whether the worker has ended."""
        ...

    def add_package(self, entry: Package) -> None:
        """Make a package renderable by its id (a folder the user opened, say)."""
        ...

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call `callback` for every event of every job; returns a function that unsubscribes."""
        ...

"""Render jobs: request → worker thread → events. No Qt.

The scheduler's names (lanes, Job, Event, Cancelled, Scheduler) import no torch; `Engine` (the scheduler with the
torch renderer) is imported on first use, so `import studio.engine.scheduler` or `studio.engine.api` stays torch-free.
"""

from studio.engine.scheduler import EXPORT, LANES, PREVIEW, Cancelled, Event, Job, Scheduler

__all__ = ["Engine", "Event", "Job", "Cancelled", "PREVIEW", "EXPORT", "LANES", "Scheduler"]


def __getattr__(name: str):
    if name == "Engine":  # imports torch: only when asked for
        from studio.engine.engine import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

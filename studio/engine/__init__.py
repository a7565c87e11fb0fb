"""Render jobs: request → worker thread → events. No Qt."""

from studio.engine.engine import EXPORT, LANES, PREVIEW, Cancelled, Engine, Event, Job

__all__ = ["Engine", "Event", "Job", "Cancelled", "PREVIEW", "EXPORT", "LANES"]

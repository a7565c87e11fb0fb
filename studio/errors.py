"""The errors a user sees: each names the file (and field) and the problem."""

from __future__ import annotations

from pathlib import Path


class StudioError(Exception):
    """A failure the user can act on. `str()` is the whole message: what, and where."""

    def __init__(self, problem: str, path: str | Path | None = None, field: str | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path
            if field:
                where += f" [{field}]"
            where += ": "
        elif field:
            where = f"{field}: "
        super().__init__(where + problem)


class ManifestError(StudioError):
    """model.toml is missing, unreadable or has a wrong or missing field."""


class WeightsError(StudioError):
    """weights are missing, truncated, pickled, or do not fit the architecture."""


class FamilyError(StudioError):
    """The manifest names a family that no installed code provides."""


class RequestError(StudioError):
    """A render request is malformed or does not fit the model."""


class ExportError(StudioError):
    """Writing an output file failed."""


class RecipeError(StudioError):
    """A training recipe is malformed or needs something that is not installed."""


class ProjectError(StudioError):
    """A project document (.lstudio) is missing, unreadable, from a newer app, or has a wrong field."""


class DirectionsError(StudioError):
    """A direction set (.lsdirs: named directions) is unreadable, malformed, or made for another model."""

"""Undoable edits of the session (QUndoStack commands). Each command holds plain values and calls the session back;
a continuous gesture (a slider drag) merges into one command through its merge key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QUndoCommand

from studio.project import SavedLatent
from studio.project.timeline import Timeline
from studio.request import RenderRequest

if TYPE_CHECKING:
    from studio.ui.session import Session

_merge_ids: dict[str, int] = {}


def merge_id(key: str | None) -> int:
    """A stable small integer per merge key (-1: never merge)."""
    if not key:
        return -1
    return _merge_ids.setdefault(key, len(_merge_ids) + 1)


class _SetValue(QUndoCommand):
    """Replace one immutable value of the session (old → new); a gesture with one merge key is one step."""

    def __init__(self, session: "Session", old, new, text: str, merge: str | None = None):
        super().__init__(text)
        self.session, self.old, self.new = session, old, new
        self._id = merge_id(merge)

    def id(self) -> int:  # noqa: A003 (Qt's name)
        return self._id

    def mergeWith(self, other: QUndoCommand) -> bool:
        if type(other) is not type(self) or other.id() != self.id() or other.old != self.new:
            return False
        self.new = other.new
        self.setObsolete(self.new == self.old)  # dragged back to where it started: drop the step
        return True

    def redo(self) -> None:
        self._apply(self.new)

    def undo(self) -> None:
        self._apply(self.old)

    def _apply(self, value) -> None:
        raise NotImplementedError


class SetRequest(_SetValue):
    def __init__(self, session: "Session", old: RenderRequest | None, new: RenderRequest, text: str,
                 merge: str | None = None):
        super().__init__(session, old, new, text, merge)

    def _apply(self, value: RenderRequest | None) -> None:
        self.session._apply_request(value)


class ChangeLatents(QUndoCommand):
    """Add (or remove) an entry of the document's latent library."""

    def __init__(self, session: "Session", entry: SavedLatent, index: int, add: bool, text: str):
        super().__init__(text)
        self.session, self.entry, self.index, self.add = session, entry, index, add

    def redo(self) -> None:
        (self.session._insert_latent if self.add else self.session._remove_latent)(self.index, self.entry)

    def undo(self) -> None:
        (self.session._remove_latent if self.add else self.session._insert_latent)(self.index, self.entry)


class SetTimeline(_SetValue):
    """Replace the document's timeline (timelines are immutable: every edit is a new one)."""

    def __init__(self, session: "Session", old: Timeline, new: Timeline, text: str, merge: str | None = None):
        super().__init__(session, old, new, text, merge)

    def _apply(self, value: Timeline) -> None:
        self.session._apply_timeline(value)

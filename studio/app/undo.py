"""The undo history of the open document: plain command objects on a stack, with no Qt.

    stack = UndoStack()
    stack.push(SetValue(apply, old, new, "Seed 5"))  # applies it (redo) and records it
    stack.undo_text  # "Seed 5"
    stack.undo()     # apply(old)

A gesture (a slider drag) is one step: commands pushed with the same `merge` key fold into the one on top, and a
gesture that ends where it began leaves no step at all. The stack remembers its clean state (the saved document);
listeners hear every change of the index, the count or the clean state. It behaves as Qt's QUndoStack does, so the
window's Edit menu is a thin adapter over it.
"""

from __future__ import annotations

from typing import Any, Callable

from studio.app.listeners import Listeners


class Command:
    """One undoable step. `redo` makes the change (also when first pushed), `undo` takes it back; `text` names it in
    the Edit menu ("Undo Seed 5"); `merge` is a key that folds the next command with the same key into this one."""

    def __init__(self, text: str, merge: str | None = None):
        self.text = text
        self.merge = merge or None

    def redo(self) -> None:
        raise NotImplementedError

    def undo(self) -> None:
        raise NotImplementedError

    def merge_with(self, other: "Command") -> bool:
        """Fold `other` (pushed after this one, with the same merge key) into this step; False when it cannot."""
        return False

    @property
    def obsolete(self) -> bool:
        """Whether the step changes nothing any more (a drag back to where it began): the stack drops it."""
        return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.text!r}>"


class SetValue(Command):
    """Replace one immutable value (a request, a timeline) by another through `apply(value)`."""

    def __init__(self, apply: Callable[[Any], None], old: Any, new: Any, text: str, merge: str | None = None):
        super().__init__(text, merge)
        self.apply, self.old, self.new = apply, old, new

    def redo(self) -> None:
        self.apply(self.new)

    def undo(self) -> None:
        self.apply(self.old)

    def merge_with(self, other: Command) -> bool:
        if not isinstance(other, SetValue) or other.apply != self.apply or other.old != self.new:
            return False
        self.new = other.new
        return True

    @property
    def obsolete(self) -> bool:
        return self.new == self.old


class Edit(Command):
    """A step made of two functions: `do` (redo) and `undo` (adding an entry to a list and removing it, say)."""

    def __init__(self, text: str, do: Callable[[], None], undo: Callable[[], None]):
        super().__init__(text)
        self._do, self._undo = do, undo

    def redo(self) -> None:
        self._do()

    def undo(self) -> None:
        self._undo()


class UndoStack:
    """Commands and an index: those below it are done, those above it undone (and dropped by the next push).

    `changed` is called (with no arguments) after every push, undo, redo, clear and change of the clean state.
    """

    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._index = 0
        self._clean: int | None = 0  # the index of the saved state; None when no reachable state is saved
        self.changed = Listeners()

    # --- changing it ---------------------------------------------------------------------------------------------
    def push(self, command: Command) -> None:
        """Make `command` (its redo) and record it, folded into the step on top when their merge keys match (never
        into a saved step: that step stays the saved state)."""
        command.redo()
        del self._commands[self._index:]
        if self._clean is not None and self._clean > self._index:
            self._clean = None  # the saved state was undone and is now gone
        top = self._commands[-1] if self._index else None
        if (top is not None and command.merge is not None and top.merge == command.merge
                and self._clean != self._index and top.merge_with(command)):
            if top.obsolete:
                self._commands.pop()
                self._index -= 1
        else:
            self._commands.append(command)
            self._index += 1
        self.changed()

    def undo(self) -> None:
        if self.can_undo:
            self._commands[self._index - 1].undo()
            self._index -= 1
            self.changed()

    def redo(self) -> None:
        if self.can_redo:
            self._commands[self._index].redo()
            self._index += 1
            self.changed()

    def clear(self) -> None:
        """Forget every step; the state now is the clean one."""
        self._commands.clear()
        self._index = 0
        self._clean = 0
        self.changed()

    def set_clean(self) -> None:
        """The state now is the saved one."""
        if self._clean != self._index:
            self._clean = self._index
            self.changed()

    def reset_clean(self) -> None:
        """No state is the saved one (a recovered document: nothing of it is saved)."""
        if self._clean is not None:
            self._clean = None
            self.changed()

    # --- reading it ----------------------------------------------------------------------------------------------
    @property
    def index(self) -> int:
        """How many steps are done."""
        return self._index

    @property
    def count(self) -> int:
        return len(self._commands)

    @property
    def is_clean(self) -> bool:
        return self._clean == self._index

    @property
    def clean_index(self) -> int | None:
        return self._clean

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._commands)

    @property
    def undo_text(self) -> str:
        """The text of the step Undo would take back ("" when none)."""
        return self._commands[self._index - 1].text if self.can_undo else ""

    @property
    def redo_text(self) -> str:
        return self._commands[self._index].text if self.can_redo else ""

    def text(self, index: int) -> str:
        """The text of step `index` (0 is the oldest)."""
        return self._commands[index].text if 0 <= index < len(self._commands) else ""

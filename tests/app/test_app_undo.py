"""The core's undo stack (studio.app.undo): plain commands, merged gestures, the clean state, listeners; no Qt."""

from __future__ import annotations

import sys

from studio.app.undo import Command, Edit, SetValue, UndoStack


class Box:
    """A value that commands replace, recording every value applied."""

    def __init__(self, value=0):
        self.value, self.applied = value, []

    def set(self, value) -> None:
        self.value = value
        self.applied.append(value)

    def change(self, stack: UndoStack, new, text: str, merge: str | None = None) -> None:
        stack.push(SetValue(self.set, self.value, new, text, merge))


def test_push_applies_and_undo_redo_walk_the_steps_with_their_texts():
    stack, box = UndoStack(), Box()
    assert not stack.can_undo and not stack.can_redo and stack.undo_text == "" and stack.is_clean
    box.change(stack, 5, "Seed 5")
    box.change(stack, 7, "Seed 7")
    assert box.value == 7 and (stack.index, stack.count) == (2, 2)
    assert stack.undo_text == "Seed 7" and stack.redo_text == "" and stack.text(0) == "Seed 5"
    stack.undo()
    assert box.value == 5 and stack.undo_text == "Seed 5" and stack.redo_text == "Seed 7"
    stack.undo()
    assert box.value == 0 and not stack.can_undo and stack.index == 0
    stack.undo()  # nothing left: nothing happens
    assert box.applied == [5, 7, 5, 0]
    stack.redo()
    stack.redo()
    stack.redo()
    assert box.value == 7 and stack.index == 2 and box.applied[-2:] == [5, 7]


def test_a_push_after_undo_drops_the_undone_steps():
    stack, box = UndoStack(), Box()
    box.change(stack, 1, "one")
    box.change(stack, 2, "two")
    stack.undo()
    box.change(stack, 3, "three")
    assert stack.count == 2 and [stack.text(i) for i in range(2)] == ["one", "three"] and not stack.can_redo


def test_a_gesture_with_one_merge_key_is_one_step_and_a_new_key_a_new_step():
    stack, box = UndoStack(), Box()
    for value in (1, 2, 3):
        box.change(stack, value, "drag", merge="d0:1")
    box.change(stack, 9, "next drag", merge="d0:2")
    assert stack.count == 2 and box.value == 9
    stack.undo()
    assert box.value == 3
    stack.undo()
    assert box.value == 0


def test_a_gesture_back_to_where_it_began_leaves_no_step():
    stack, box = UndoStack(), Box()
    box.change(stack, 4, "seed")
    box.change(stack, 5, "drag", merge="k")
    box.change(stack, 4, "drag", merge="k")
    assert stack.count == 1 and stack.undo_text == "seed" and box.value == 4


def test_only_the_same_kind_of_change_merges():
    stack, a, b = UndoStack(), Box(), Box()
    a.change(stack, 1, "a", merge="k")
    b.change(stack, 1, "b", merge="k")  # same key, another value: two steps
    a.change(stack, 2, "a again")  # no key: never merges
    assert stack.count == 3


def test_the_clean_state_follows_undo_and_a_saved_step_never_absorbs_a_drag():
    stack, box = UndoStack(), Box()
    box.change(stack, 1, "drag", merge="k")
    stack.set_clean()
    assert stack.is_clean and stack.clean_index == 1
    box.change(stack, 2, "drag", merge="k")  # the saved step stays the saved state
    assert stack.count == 2 and not stack.is_clean
    stack.undo()
    assert stack.is_clean
    box.change(stack, 5, "other")  # the step after the saved one is replaced: still reachable
    stack.undo()
    assert stack.is_clean
    stack.undo()
    box.change(stack, 9, "branch")  # the saved state was undone and is now gone
    assert stack.clean_index is None and not stack.is_clean
    stack.reset_clean()
    stack.clear()
    assert stack.is_clean and stack.count == 0 and stack.index == 0


def test_reset_clean_makes_every_state_unsaved():
    stack, box = UndoStack(), Box()
    box.change(stack, 1, "one")
    stack.set_clean()
    stack.reset_clean()
    assert not stack.is_clean
    stack.undo()
    assert not stack.is_clean


def test_listeners_hear_every_change():
    stack, box, heard = UndoStack(), Box(), []
    stop = stack.changed.connect(lambda: heard.append((stack.index, stack.is_clean)))
    box.change(stack, 1, "one")
    box.change(stack, 2, "drag", merge="k")
    box.change(stack, 3, "drag", merge="k")  # merged: the index stays, but the step changed
    stack.undo()
    stack.redo()
    stack.set_clean()
    stack.set_clean()  # already clean: no news
    stack.clear()
    assert heard == [(1, False), (2, False), (2, False), (1, False), (2, False), (2, True), (0, True)]
    stop()
    box.change(stack, 4, "unheard")
    assert len(heard) == 7


def test_a_command_that_fails_is_not_recorded():
    stack = UndoStack()

    def boom() -> None:
        raise RuntimeError("no")

    try:
        stack.push(Edit("broken", boom, lambda: None))
    except RuntimeError:
        pass
    assert stack.count == 0 and not stack.can_undo


def test_edit_commands_run_their_two_functions():
    stack, items = UndoStack(), []
    stack.push(Edit("Add x", lambda: items.append("x"), lambda: items.remove("x")))
    assert items == ["x"] and isinstance(stack, UndoStack)
    stack.undo()
    assert items == []
    assert Command("base").merge_with(Command("other")) is False and not Command("base").obsolete


def test_the_core_imports_no_qt_and_the_undo_stack_no_torch():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    light = ("import sys; import studio.app.undo, studio.app.listeners; "
             "assert 'PySide6' not in sys.modules and 'torch' not in sys.modules")
    core = ("import sys; import studio.app.models, studio.app.document, studio.app.timeline, studio.app.tasks; "
            "assert 'PySide6' not in sys.modules")
    for code in (light, core):
        assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0, code

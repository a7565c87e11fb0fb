"""A modal dialog would wait forever offscreen: in-process window tests answer every question, and an unexpected one
fails the test with its name. One list for every test file (a renamed dialog function fails here, not in five
copies)."""

from __future__ import annotations

import pytest

from studio.ui import dialogs

ASKED = ("ask_open_any", "ask_image_settings", "ask_save_project", "ask_export_image", "ask_model_folder", "ask_chars",
         "ask_recover")


def block_dialogs(monkeypatch, *extra: str) -> None:
    """Unsaved changes are discarded; every other question in ASKED (and `extra`) fails the test when asked."""
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    for name in (*ASKED, *extra):
        assert hasattr(dialogs, name), f"studio.ui.dialogs has no {name}: update tests/ui/dialog_guard.py"
        monkeypatch.setattr(dialogs, name, lambda *args, _n=name: pytest.fail(f"unexpected dialog {_n}"))

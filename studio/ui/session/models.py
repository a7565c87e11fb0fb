"""The installed models for Qt: the core's ModelLibrary (studio.app.models) as a signal, its packages handed to the
engine so that it renders them by id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from studio.app.models import ModelLibrary

if TYPE_CHECKING:
    from studio.engine.api import EngineAPI


class ModelsAdapter(QObject):
    changed = Signal()  # the list of installed packages changed

    def __init__(self, library: ModelLibrary, engine: "EngineAPI", parent: QObject | None = None):
        super().__init__(parent)
        self.library, self.engine = library, engine
        library.changed.connect(self._on_library_changed)

    def _on_library_changed(self) -> None:
        for entry in self.library.entries:
            if entry.ok:
                self.engine.add_package(entry)
        self.changed.emit()

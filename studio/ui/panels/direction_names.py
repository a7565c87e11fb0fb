"""Named directions in the latent panel (issue 20, part 6): the "Principal directions" group's set row — "Names:
[set] Save… ⋯ (Save as Model Default, Share…, Import…, Delete Set)" — and renaming a direction by double-clicking
its label or from its context menu ("Rename…", "Clear Name"; "Suggest This Amount" keeps the slider's amount and a
style GAN's layer range with the name, "Apply Suggestion" sets them as one step). A name replaces the slider's "Dir k" caption, so it is
what the slider's tooltip, its reset button and the Edit menu's undo steps ("Undo Bold +1.20") say. Names are labels:
the request and every render stay as they were. The sets themselves: studio.app.direction_sets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QInputDialog, QLabel, QLineEdit, QMenu,
                               QMessageBox, QPushButton, QToolButton, QWidget)

from studio.app.direction_sets import DEFAULT_KEY, NONE_KEY
from studio.errors import StudioError
from studio.latent.direction_sets import SUFFIX
from studio.ui.panels.controls import ParamControl, ValueSlider, caption_of, tooltip_of

if TYPE_CHECKING:
    from studio.app.direction_sets import DirectionNames
    from studio.ui.session import Session

SET_FILTER = f"Direction sets (*{SUFFIX});;All files (*)"
MAX_CAPTION = 18  # characters of a name on its slider's label (the whole name is in the tooltip)
_DIRECTION = re.compile(r"^d(\d+)$")


def direction_index(name: str) -> int | None:
    m = _DIRECTION.match(name)
    return int(m.group(1)) if m else None


class DirectionSetBar(QWidget):
    """The row above the direction sliders: which set of names is in use, and what to do with it."""

    def __init__(self, session: "Session", parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setObjectName("directionSetBar")
        self.combo = QComboBox()
        self.combo.setObjectName("directionSetCombo")
        self.combo.setToolTip("The names the direction sliders show: a saved set, the model's default, or none. "
                              "Double-click a direction's label to rename it")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(8)
        self.save_button = QPushButton("Save…")
        self.save_button.setObjectName("directionSetSave")
        self.save_button.setToolTip("Save these direction names as a set of your own (in your data folder)")
        self.more = QToolButton()
        self.more.setObjectName("directionSetMenu")
        self.more.setText("⋯")
        self.more.setToolTip("More: save as the model's default names, share the set as a file, import one, "
                             "delete one")
        self.more.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.more)
        self.default_action = menu.addAction("Save as Model Default", self.save_default)
        self.share_action = menu.addAction("Share…", self.share)
        self.import_action = menu.addAction("Import…", self.import_set)
        menu.addSeparator()
        self.delete_action = menu.addAction("Delete Set", self.delete_set)
        self.more.setMenu(menu)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        label = QLabel("Names")
        label.setToolTip(self.combo.toolTip())
        row.addWidget(label)
        row.addWidget(self.combo, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.more)
        self.combo.activated.connect(self._on_chosen)
        self.save_button.clicked.connect(self.save)
        self.refresh()

    @property
    def names(self) -> "DirectionNames":
        return self.session.directions.names

    def refresh(self) -> None:
        """Show the stored sets and the one in use (marked * when its names changed since it was saved)."""
        names = self.names
        blocked = self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem("No names", NONE_KEY)
        for stored in names.stored():
            self.combo.addItem(stored.label, stored.key)
        index = self.combo.findData(names.current_key)
        self.combo.setCurrentIndex(max(index, 0))
        if names.modified:
            self.combo.setItemText(self.combo.currentIndex(), self.combo.currentText() + " *")
        hidden = names.hidden()
        self.combo.setToolTip("The names the direction sliders show: a saved set, the model's default, or none. "
                              "Double-click a direction's label to rename it"
                              + ("\n\nNot shown:\n" + "\n".join(hidden) if hidden else ""))
        self.combo.blockSignals(blocked)
        user_set = names.current_key not in (NONE_KEY, DEFAULT_KEY)
        self.delete_action.setEnabled(user_set)

    # --- actions ---------------------------------------------------------------------------------------------------
    def _say(self, level: str, text: str, detail: str = "") -> None:
        self.session.message.emit(level, text, detail)

    def _on_chosen(self, index: int) -> None:
        key = self.combo.itemData(index)
        if key == self.names.current_key and not self.names.modified:
            return
        if self.names.modified and not self._discard_ok():
            self.refresh()
            return
        self.names.choose(key)

    def _discard_ok(self) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved Direction Names",
                          "The direction names were changed since they were saved. Use the other set and drop "
                          "these changes?", QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
                          self)
        box.setObjectName("discardNamesBox")
        return box.exec() == QMessageBox.StandardButton.Discard

    def ask_set_name(self) -> str | None:
        current = self.names.current_set
        suggestion = current.name if current is not None and self.names.current_key not in (NONE_KEY,) \
            and self.names.current_key != DEFAULT_KEY else "My directions"
        dialog = QInputDialog(self)
        dialog.setObjectName("saveDirectionSetDialog")
        dialog.setWindowTitle("Save Direction Set")
        dialog.setLabelText("Name of the set (a set of that name is replaced):")
        dialog.setTextValue(suggestion)
        return dialog.textValue() if dialog.exec() else None

    def save(self) -> None:
        name = self.ask_set_name()
        if not name or not name.strip():
            return
        try:
            path = self.names.save(name)
        except StudioError as exc:
            self._say("error", f"Cannot save the direction set: {exc.problem}", str(exc))
            return
        self._say("info", f"Saved direction set {name.strip()!r}", str(path))

    def save_default(self) -> None:
        try:
            path, note = self.names.save_default()
        except StudioError as exc:
            self._say("error", f"Cannot save the model's default direction names: {exc.problem}", str(exc))
            return
        self._say("info", "Saved the model's default direction names", note)

    def share(self) -> None:
        current, entry = self.names.current_set, self.names.entry
        if current is None or entry is None:
            return
        stem = re.sub(r"[^\w\- ]", "_", f"{entry.id} {current.name}").strip()
        path = QFileDialog.getSaveFileName(self, "Share Direction Set", stem + SUFFIX, SET_FILTER)[0]
        if not path:
            return
        if not path.endswith(SUFFIX) and not Path(path).suffix:
            path += SUFFIX
        try:
            written = self.names.export(path)
        except StudioError as exc:
            self._say("error", f"Cannot share the direction set: {exc.problem}", str(exc))
            return
        self._say("info", f"Direction set written to {Path(written).name}", str(written))

    def import_set(self) -> None:
        path = QFileDialog.getOpenFileName(self, "Import Direction Set", "", SET_FILTER)[0]
        if path:
            self.import_path(path)

    def import_path(self, path: str | Path) -> bool:
        if self.names.modified and not self._discard_ok():
            return False
        try:
            self.names.import_file(path)
        except StudioError as exc:
            self._say("error", f"Cannot import {Path(path).name}: {exc.problem}", str(exc))
            return False
        current = self.names.current_set
        self._say("info", f"Imported direction set {current.name if current else ''!r}", str(path))
        return True

    def delete_set(self) -> None:
        key = self.names.current_key
        if key in (NONE_KEY, DEFAULT_KEY):
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Delete Direction Set",
                          f"Delete the direction set {self.combo.currentText().rstrip(' *')!r}? Its names stay on "
                          "the sliders until you choose another set.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        if box.exec() == QMessageBox.StandardButton.Yes:
            try:
                self.names.delete(key)
            except (OSError, StudioError) as exc:
                self._say("error", f"Cannot delete the direction set: {exc}", str(exc))


class DirectionLabels(QObject):
    """Names on the direction sliders of a panel, and renaming them: double-click a direction's label, or
    right-click its label or slider for "Rename…" / "Clear Name"."""

    def __init__(self, session: "Session", parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.controls: dict[int, ParamControl] = {}

    @property
    def names(self) -> "DirectionNames":
        return self.session.directions.names

    def attach(self, controls: dict[int, ParamControl]) -> None:
        """Take over the captions of `controls` (direction index → control) of a freshly built group."""
        self.controls = controls
        for index, control in controls.items():
            for widget in (control.caption, control.editor):
                widget.setProperty("directionIndex", index)
                widget.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
                widget.customContextMenuRequested.connect(self._on_context_menu)
            control.caption.installEventFilter(self)
        self.show_names()

    def show_names(self) -> None:
        names = self.names.names()
        for index, control in self.controls.items():
            entry = names.get(index)
            plain = caption_of(control.spec, control.name)
            base_tip = tooltip_of(control.spec, control.name)
            if entry is None:
                control.caption.setText(plain)
                tip = f"{base_tip}\nDouble-click to name it"
            else:
                control.caption.setText(entry.name if len(entry.name) <= MAX_CAPTION
                                        else entry.name[:MAX_CAPTION - 1].rstrip() + "…")
                extra = []
                if entry.amount is not None:
                    extra.append(f"amount {entry.amount:+.2f}")
                if entry.layers is not None:
                    extra.append(f"layers {entry.layers[0]} to {entry.layers[1]}")
                tip = (f"{entry.name} — principal direction {control.name} ({plain}). {base_tip}"
                       + (f"\nSuggested: {', '.join(extra)} (right-click: Apply Suggestion)" if extra else "")
                       + "\nDouble-click to rename it")
            control.caption.setToolTip(tip)
            control.editor.setToolTip(tip)
            if isinstance(control, ValueSlider):
                shown = "unset" if control.default is None else f"{control.default:g}"
                control.reset_button.setToolTip(f"Reset {control.title} to {shown}")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.MouseButtonDblClick:
            index = watched.property("directionIndex")
            if isinstance(index, int):
                self.rename(index)
                return True
        return super().eventFilter(watched, event)

    def _on_context_menu(self, pos: QPoint) -> None:
        widget = self.sender()
        index = widget.property("directionIndex") if isinstance(widget, QWidget) else None
        if not isinstance(widget, QWidget) or not isinstance(index, int):
            return
        menu = QMenu(widget)
        menu.setObjectName("directionMenu")
        menu.addAction("Rename…", lambda: self.rename(index))
        clear = menu.addAction("Clear Name", lambda: self.set_name(index, ""))
        entry = self.names.names().get(index)
        clear.setEnabled(entry is not None)
        menu.addSeparator()
        amount, layers = self._current(index)
        where = f", layers {layers[0]} to {layers[1]}" if layers is not None else ""
        keep = menu.addAction(f"Suggest This Amount ({amount:+.2f}{where})", lambda: self.suggest(index))
        keep.setEnabled(entry is not None and amount != 0)
        keep.setToolTip("Keep the slider's amount (and the layer range) with the name, for whoever uses the set")
        if entry is not None and (entry.amount is not None or entry.layers is not None):
            shown = f"{entry.amount:+.2f}" if entry.amount is not None else ""
            span = f"layers {entry.layers[0]} to {entry.layers[1]}" if entry.layers is not None else ""
            menu.addAction(f"Apply Suggestion ({', '.join(t for t in (shown, span) if t)})",
                           lambda: self.apply_suggestion(index))
        menu.exec(widget.mapToGlobal(pos))

    def _layer_specs(self):
        """The model's layer range params (a style GAN's layer_start / layer_end), or None."""
        entry = self.session.entry
        table = entry.parameters if entry is not None and entry.ok else None
        if table is None:
            return None
        start, end = table.find("layer_start"), table.find("layer_end")
        return (start, end) if start is not None and end is not None else None

    def _current(self, index: int) -> tuple[float, tuple[int, int] | None]:
        """The request's amount along direction `index`, and its layer range when it is not the whole range."""
        request = self.session.request
        if request is None:
            return 0.0, None
        amount = float(request.params.get(f"d{index}", 0.0) or 0.0)
        specs = self._layer_specs()
        if specs is None:
            return amount, None
        start = int(request.params.get("layer_start", specs[0].default) or 0)
        end = int(request.params.get("layer_end", specs[1].default) or 0)
        full = (int(specs[0].default or 0), int(specs[1].default or 0))
        return amount, ((start, end) if (start, end) != full and start < end else None)

    def suggest(self, index: int) -> bool:
        amount, layers = self._current(index)
        try:
            self.names.suggest(index, amount, layers)
        except StudioError as exc:
            self.session.message.emit("error", f"Cannot keep a suggestion for d{index}: {exc.problem}", str(exc))
            return False
        return True

    def apply_suggestion(self, index: int) -> None:
        """Set the slider to the name's suggested amount (and the layer range to its range, where the model has one)
        as one step."""
        entry, request = self.names.names().get(index), self.session.request
        if entry is None or request is None:
            return
        params = dict(request.params)
        if entry.amount is not None:
            params[f"d{index}"] = entry.amount
        specs = self._layer_specs()
        if entry.layers is not None and specs is not None:
            hi = specs[1].range[1] if specs[1].range is not None else entry.layers[1]
            params["layer_start"], params["layer_end"] = min(entry.layers[0], int(hi)), min(entry.layers[1], int(hi))
        self.session.change(f"{entry.name} suggestion", params=params)

    def ask_name(self, index: int, current: str) -> str | None:
        """The new name of direction `index` from a small dialog (None: cancelled; "": clear the name)."""
        control = self.controls.get(index)
        plain = caption_of(control.spec, control.name) if control is not None else f"d{index}"
        dialog = QInputDialog(control.window() if control is not None else None)
        dialog.setObjectName("renameDirectionDialog")
        dialog.setWindowTitle("Rename Direction")
        dialog.setLabelText(f"Name of {plain} (d{index}); leave it empty to clear the name:")
        dialog.setTextEchoMode(QLineEdit.EchoMode.Normal)
        dialog.setTextValue(current)
        return dialog.textValue() if dialog.exec() else None

    def rename(self, index: int) -> None:
        name = self.ask_name(index, self.names.name(index))
        if name is not None:
            self.set_name(index, name)

    def set_name(self, index: int, name: str) -> bool:
        try:
            self.names.rename(index, name)
        except StudioError as exc:
            self.session.message.emit("error", f"Cannot name direction d{index}: {exc.problem}", str(exc))
            return False
        return True

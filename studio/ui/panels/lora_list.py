"""The LoRA list of the conditions panel: the `loras` text param ("name:0.8, other:0.5") shown as rows of
[LoRA name ▾] [weight] [✕], an Add LoRA button and a Refresh button.

The names offered are the LoRA files the model can use (studio.io.loras: `loras/` beside the model and settings.toml's
`lora_folders`), listed when the model is chosen and again on Refresh; the name box is editable, so a LoRA that is
not there (from a restored picture or project) is shown as it is, flagged, and the hint says where it was looked for.
With no LoRA found, the hint names the folders to put them in. Every change (add, remove, another name, a weight)
goes through the panel's normal path as one undoable step; a run of weight changes in one visit of its box (arrow
clicks, a focused wheel, typing) is one step, as a slider drag is. The request keeps the plain text, so `--set
loras=…`, grids and `<lora:…>` tags in the prompt work as before.

No torch here: the listing reads folder names only (no file data), on the GUI thread, bounded by
MAX_LORA_FOLDER_FILES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, \
    QWidget

from studio.errors import RequestError
from studio.io.loras import LORA_PARAM, LoraLibrary, format_lora_list, list_loras, parse_lora_list, usable_name
from studio.limits import MAX_LORAS
from studio.params import Kind, ParamSpec
from studio.ui.panels.controls import ParamControl, tooltip_of

WEIGHT_RANGE = (-2.0, 2.0)  # what artists use; a weight outside it (typed elsewhere) widens its own box
WEIGHT_STEP = 0.05
MISSING_STYLE = "QComboBox { color: #e5a50a; }"  # a LoRA not found (the colour of the text fields' warnings)


def is_lora_list(spec: ParamSpec) -> bool:
    """Whether `spec` is a LoRA list (the `loras` text param a family declares): the panel shows it as rows."""
    return spec.name == LORA_PARAM and spec.kind is Kind.TEXT and not spec.count


class LoraRow(QWidget):
    """One LoRA of the list: its name (an editable combo of the LoRAs found), its weight, and remove."""

    def __init__(self, index: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.index = index
        self.setObjectName(f"loraRow_{index}")
        self.name_box = QComboBox()
        self.name_box.setObjectName(f"loraRow_{index}_name")
        self.name_box.setEditable(True)
        self.name_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.name_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.name_box.setMinimumContentsLength(6)
        self.weight = QDoubleSpinBox()
        self.weight.setObjectName(f"loraRow_{index}_weight")
        self.weight.setDecimals(2)
        self.weight.setSingleStep(WEIGHT_STEP)
        self.weight.setRange(*WEIGHT_RANGE)
        self.weight.setKeyboardTracking(False)  # typing applies on Enter or leaving the box: one change
        self.weight.setToolTip("The LoRA's weight (1: as trained; negative: the opposite)")
        self.remove = QToolButton()
        self.remove.setObjectName(f"loraRow_{index}_remove")
        self.remove.setText("✕")
        self.remove.setAutoRaise(True)
        self.remove.setToolTip("Remove this LoRA")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.name_box, 1)
        layout.addWidget(self.weight)
        layout.addWidget(self.remove)
        self.visits = 0  # focus visits of the weight box: the changes of one visit are one undo step
        self.weight.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.weight and event.type() == QEvent.Type.FocusIn:
            self.visits += 1
        return super().eventFilter(watched, event)

    def set_values(self, name: str, weight: float, names: list[str], missing: str) -> None:
        """Show LoRA `name` at `weight` among `names` (those found), without sending anything; `missing`: why the
        name is flagged ("" when it was found)."""
        box = self.name_box
        blocked = box.blockSignals(True)
        if [box.itemText(k) for k in range(box.count())] != names:
            box.clear()
            box.addItems(names)
        box.setCurrentIndex(box.findText(name, Qt.MatchFlag.MatchExactly))
        box.setEditText(name)
        box.blockSignals(blocked)
        box.setStyleSheet(MISSING_STYLE if missing else "")
        box.setProperty("missing", bool(missing))
        box.setToolTip(missing or f"The LoRA {name}: pick another, or type a name")
        blocked = self.weight.blockSignals(True)
        self.weight.setRange(min(WEIGHT_RANGE[0], weight), max(WEIGHT_RANGE[1], weight))
        self.weight.setValue(weight)
        self.weight.blockSignals(blocked)


class LoraListControl(ParamControl):
    """The `loras` param as rows (see the module's docstring). `entry`: the model's library entry (its manifest
    says where its LoRAs are); None shows no LoRAs found."""

    def __init__(self, spec: ParamSpec, name: str = "", entry: Any = None, parent: QWidget | None = None):
        super().__init__(spec, name, parent)
        self.setObjectName("loraList")
        self.entry = entry
        self.library = LoraLibrary([])
        self.items: list[tuple[str, float]] = []  # what the rows show
        self.problem = ""  # the shown text could not be read
        self.rows: list[LoraRow] = []
        self.spans = True  # the caption heads the control, over its rows: the rows get the panel's width
        self.add_button = QPushButton("Add LoRA")
        self.add_button.setObjectName("loraAddButton")
        self.refresh_button = QToolButton()
        self.refresh_button.setObjectName("loraRefreshButton")
        self.refresh_button.setText("⟳")
        self.refresh_button.setAutoRaise(True)
        self.refresh_button.setToolTip("Look for LoRA files again")
        self.hint = QLabel()
        self.hint.setObjectName("loraHint")
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption.setParent(self)
        self.caption.setToolTip(tooltip_of(spec, self.name))
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(self.caption)
        head.addStretch(1)
        head.addWidget(self.add_button)
        head.addWidget(self.refresh_button)
        self._rows_layout = QVBoxLayout()
        self._rows_layout.setContentsMargins(0, 0, 0, 0)
        self._rows_layout.setSpacing(2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(head)
        layout.addLayout(self._rows_layout)
        layout.addWidget(self.hint)
        self.editor = self.add_button
        self.add_button.clicked.connect(lambda _checked=False: self.add())
        self.refresh_button.clicked.connect(lambda _checked=False: self.refresh())
        self.refresh()

    # --- what is shown ----------------------------------------------------------------------------------------------
    @property
    def folders(self) -> list[Path]:
        return self.library.folders

    def refresh(self) -> None:
        """Look at the model's LoRA folders again (names only; no file is read)."""
        manifest = getattr(self.entry, "manifest", None)
        self.library = list_loras(manifest) if manifest is not None else LoraLibrary([])
        self._show_rows()

    def show_value(self, value: Any) -> None:
        text = str(value if value is not None else (self.default or ""))
        try:
            items, problem = parse_lora_list(text), ""
        except RequestError as exc:
            items, problem = [], (f"The LoRA list {text!r} cannot be read ({exc.problem}); an edit here starts a "
                                  "new one.")
        if items == self.items and problem == self.problem and len(self.rows) == len(items):
            return  # what the rows show already (a change sent from here coming back): the focus stays where it is
        self.items, self.problem = items, problem
        self._show_rows()

    def _show_rows(self) -> None:
        while len(self.rows) > len(self.items):
            row = self.rows.pop()
            row.setParent(None)
            row.deleteLater()
        while len(self.rows) < len(self.items):
            self._add_row()
        names = self.library.names
        missing = []
        for row, (name, weight) in zip(self.rows, self.items):
            entry = self.library.entry(name)
            why = "" if entry is not None else f"{name}: not found in {self._where()}"
            if why:
                missing.append(name)
            row.set_values(name, weight, names, why)
        self.add_button.setEnabled(bool(names) and len(self.items) < MAX_LORAS)
        self.add_button.setToolTip(
            f"Add a LoRA (at most {MAX_LORAS})" if names else f"No LoRA files found: put .safetensors LoRAs in "
                                                              f"{self._where()}, then press ⟳")
        lines = []
        if self.problem:
            lines.append(self.problem)
        if not names:
            lines.append(f"No LoRAs found. Put LoRA .safetensors files in {self._where()} (or add a folder to "
                         "lora_folders in settings.toml), then press ⟳.")
        if missing:
            lines.append(f"Not found: {', '.join(missing)} (looked in {self._where()}). Rendering needs the file.")
        self.hint.setText("\n".join(lines))
        self.hint.setVisible(bool(lines))

    def _where(self) -> str:
        return ", ".join(str(f) for f in self.folders) or "the model's loras folder"

    def _add_row(self) -> None:
        row = LoraRow(len(self.rows), self)
        row.name_box.activated.connect(lambda _i, r=row: self._on_name_chosen(r))
        line = row.name_box.lineEdit()
        if line is not None:
            line.editingFinished.connect(lambda r=row: self._on_name_chosen(r))
        row.weight.valueChanged.connect(lambda value, r=row: self._on_weight(r, value))
        row.remove.clicked.connect(lambda _c=False, r=row: self.remove(r.index))
        self.rows.append(row)
        self._rows_layout.addWidget(row)

    # --- edits ------------------------------------------------------------------------------------------------------
    def _send_items(self, items: list[tuple[str, float]], text: str, merge: str | None = None) -> None:
        self.items, self.problem = items, ""
        self._show_rows()
        self._send(format_lora_list(items), text, merge)

    def add(self) -> None:
        """Add the first LoRA found that the list does not hold yet (else the first one), at weight 1."""
        names = self.library.names
        if not names or len(self.items) >= MAX_LORAS:
            return
        listed = {n.lower() for n, _ in self.items}
        name = next((n for n in names if n.lower() not in listed), names[0])
        self._send_items([*self.items, (name, 1.0)], f"Add LoRA {name}")

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.items):
            name = self.items[index][0]
            self._send_items(self.items[:index] + self.items[index + 1:], f"Remove LoRA {name}")

    def _on_name_chosen(self, row: LoraRow) -> None:
        if row.index >= len(self.items):
            return
        old, weight = self.items[row.index]
        name = row.name_box.currentText().strip()
        if name == old:
            return
        if not usable_name(name):
            row.set_values(old, weight, self.library.names, "" if self.library.entry(old) else f"{old}: not found")
            self.hint.setText(f"{name!r} is not a LoRA name: a file name without its suffix, with none of / \\ : , "
                              "< > and no leading dot.")
            self.hint.setVisible(True)
            return
        items = list(self.items)
        items[row.index] = (name, weight)
        self._send_items(items, f"LoRA {old} → {name}")

    def _on_weight(self, row: LoraRow, value: float) -> None:
        if row.index >= len(self.items):
            return
        name, old = self.items[row.index]
        value = round(float(value), 4)
        if value == old:
            return
        items = list(self.items)
        items[row.index] = (name, value)
        self._send_items(items, f"LoRA {name} weight {value:g}", f"{self.name}:weight{row.index}:{row.visits}")

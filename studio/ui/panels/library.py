"""The latent library: latents saved in the document (named after their origin: "seed 43", "projected from
x.png" …, with a thumbnail and their kind), and interpolation between two of them. The Interpolate combos offer only
latents the current model can use, and only pairs that interpolate (a w and a w+ do: the w is repeated per layer), so
a drag of t never fails; should it, one drag says so once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton,
                               QSlider, QVBoxLayout, QWidget)

from studio.latent.interp import MODES
from studio.ui.images import pixmap_from_png

if TYPE_CHECKING:
    from studio.ui.session import Session

STEPS = 1000


class LibraryPanel(QWidget):
    def __init__(self, session: "Session", parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setObjectName("libraryPanel")
        self._gesture = 0
        self._count = 0  # library entries shown (a new one becomes the interpolation target)
        self._model: str | None = None  # the model whose latents the Interpolate combos offer

        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("latentName")
        self.name_edit.setPlaceholderText("name for the current latent")
        self.name_edit.setToolTip("A name for the latent to save (default: its seed)")
        self.save_button = QPushButton("Save Latent")
        self.save_button.setObjectName("saveLatentButton")
        self.save_button.setToolTip("Save the current latent (as values, latent settings included) in this document "
                                    "(Ctrl+L)")
        save_row = QHBoxLayout()
        save_row.addWidget(self.name_edit, 1)
        save_row.addWidget(self.save_button)

        self.list = QListWidget()
        self.list.setObjectName("latentList")
        self.list.setIconSize(QSize(96, 32))
        self.list.setToolTip("Saved latents: double-click to use one")
        self.use_button = QPushButton("Use")
        self.use_button.setToolTip("Make the selected latent current (its values replace the seed)")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected latent from the library (undoable)")
        list_buttons = QHBoxLayout()
        list_buttons.addWidget(self.use_button)
        list_buttons.addWidget(self.remove_button)
        list_buttons.addStretch(1)

        self.first = QComboBox()
        self.first.setObjectName("interpA")
        self.first.setToolTip("Interpolate from this saved latent…")
        self.second = QComboBox()
        self.second.setObjectName("interpB")
        self.second.setToolTip("…to this one")
        self.mode = QComboBox()
        self.mode.setObjectName("interpMode")
        self.mode.addItems(list(MODES))
        self.mode.setToolTip("slerp follows the sphere where Gaussian latents live (keeps their norm); lerp is a "
                             "straight line")
        self.t_slider = QSlider(Qt.Orientation.Horizontal)
        self.t_slider.setObjectName("interpT")
        self.t_slider.setRange(0, STEPS)
        self.t_slider.setToolTip("Position between the two latents (drag to morph)")
        self.t_label = QLabel("0.00")
        pair = QHBoxLayout()
        pair.addWidget(self.first, 1)
        pair.addWidget(QLabel("→"))
        pair.addWidget(self.second, 1)
        pair.addWidget(self.mode)
        t_row = QHBoxLayout()
        t_row.addWidget(QLabel("t"))
        t_row.addWidget(self.t_slider, 1)
        t_row.addWidget(self.t_label)

        layout = QVBoxLayout(self)
        layout.addLayout(save_row)
        layout.addWidget(self.list, 1)
        layout.addLayout(list_buttons)
        layout.addWidget(QLabel("Interpolate"))
        layout.addLayout(pair)
        layout.addLayout(t_row)

        session.latents_changed.connect(self._on_latents_changed)
        session.request_changed.connect(self._on_request_changed)
        self.save_button.clicked.connect(self.save_current)
        self.name_edit.returnPressed.connect(self.save_current)
        self.use_button.clicked.connect(self._use_selected)
        self.list.itemDoubleClicked.connect(lambda _: self._use_selected())
        self.remove_button.clicked.connect(self._remove_selected)
        self.list.currentRowChanged.connect(lambda _: self._update_buttons())
        self.t_slider.sliderPressed.connect(self._new_gesture)
        self.t_slider.sliderReleased.connect(self._new_gesture)
        self.t_slider.valueChanged.connect(self._on_t_changed)
        self.mode.currentIndexChanged.connect(lambda _: self._on_t_changed(self.t_slider.value()))
        self.first.currentIndexChanged.connect(lambda _: self._on_first_changed())
        self._on_latents_changed()
        self._on_request_changed(session.request)

    def _new_gesture(self) -> None:
        self._gesture += 1

    def _on_latents_changed(self) -> None:
        latents = self.session.document.latents
        row = self.list.currentRow()
        self.list.clear()
        for entry in latents:
            item = QListWidgetItem(QIcon(pixmap_from_png(entry.thumbnail_png)), entry.name)
            item.setToolTip(f"{entry.name}\nmodel {entry.model_id}, {self.session.describe_latent(entry)}")
            self.list.addItem(item)
        self.list.setCurrentRow(min(row, len(latents) - 1) if row >= 0 else len(latents) - 1)
        added = len(latents) > self._count
        self._count = len(latents)
        self._fill_pair(newest=len(latents) - 1 if added else None)
        self._update_buttons()

    def _fill_pair(self, newest: int | None = None) -> None:
        """The Interpolate combos: the first lists the library's latents the current model can use, the second
        those that pair with the first's (a w and a w+ do: the w is repeated per layer), so that no choice can fail.
        Each item holds its library index; the artist's choice is kept, and a newly saved latent (`newest`) becomes
        the target."""
        usable = self.session.usable_latents()
        first = self._fill(self.first, usable, self._chosen(self.first, usable, 0))
        partners = [i for i in self.session.interpolation_partners(first) if i != first] if first >= 0 else []
        keep = newest if newest in partners else self._chosen(self.second, partners, -1)
        self._fill(self.second, partners, keep)

    @staticmethod
    def _chosen(combo: QComboBox, indices: list[int], fallback: int) -> int:
        """The library index `combo` shows now when it is still among `indices`, else `indices[fallback]`."""
        current = combo.currentData()
        if current in indices:
            return current
        return indices[fallback] if indices else -1

    def _fill(self, combo: QComboBox, indices: list[int], chosen: int) -> int:
        """Fill `combo` with the library entries `indices` (their names; kind in the tooltip), `chosen` current;
        the library index it shows (-1: none)."""
        latents = self.session.document.latents
        blocked = combo.blockSignals(True)
        combo.clear()
        for index in indices:
            entry = latents[index]
            combo.addItem(entry.name, index)
            combo.setItemData(combo.count() - 1, f"{entry.name}\n{self.session.describe_latent(entry)}",
                              Qt.ItemDataRole.ToolTipRole)
        if chosen in indices:
            combo.setCurrentIndex(indices.index(chosen))
        combo.blockSignals(blocked)
        return combo.currentData() if combo.count() else -1

    def _on_request_changed(self, request) -> None:
        self.save_button.setEnabled(request is not None)
        model = request.model_id if request is not None else None
        if model != self._model:  # another model: other latents of the library are usable
            self._model = model
            self._fill_pair()
            self._update_buttons()

    def _on_first_changed(self) -> None:
        self._fill_pair()
        self._update_buttons()

    def _update_buttons(self) -> None:
        selected = self.list.currentRow() >= 0
        self.use_button.setEnabled(selected)
        self.remove_button.setEnabled(selected)
        can_interpolate = self.first.count() > 0 and self.second.count() > 0
        for widget in (self.first, self.second, self.mode, self.t_slider):
            widget.setEnabled(can_interpolate)

    def save_current(self) -> None:
        self.session.save_latent(self.name_edit.text())
        self.name_edit.clear()

    def _use_selected(self) -> None:
        if self.list.currentRow() >= 0:
            self.session.use_latent(self.list.currentRow())

    def _remove_selected(self) -> None:
        if self.list.currentRow() >= 0:
            self.session.remove_latent(self.list.currentRow())

    def _on_t_changed(self, value: int) -> None:
        t = value / STEPS
        self.t_label.setText(f"{t:.2f}")
        a, b = self.first.currentData(), self.second.currentData()
        if a is None or b is None:
            return
        self.session.interpolate_latents(a, b, t, self.mode.currentText(), merge=f"interp:{self._gesture}")

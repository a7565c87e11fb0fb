"""The variations grid: N variations of the current output (fresh variation seeds at a strength), rendered on the
export lane as tiles. Picking a tile auditions it in the preview (a sound plays); "Continue from this" makes its
latent the current one, as one undoable step."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QDoubleSpinBox, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem,
                               QPushButton, QSizePolicy, QSpinBox, QVBoxLayout, QWidget)

from studio.ui.images import output_thumbnail, pixmap_from_png
from studio.ui.panels.thumbsize import MENU_HINT, ThumbSizeMenu

DEFAULT_COUNT = 6
DEFAULT_STRENGTH = 0.35


class VariationsPanel(QWidget):
    audition = Signal(int)  # a tile was picked: show (and play) variation `index`

    def __init__(self, session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self._wanted = 0  # tiles asked for by the last Render
        self.count = QSpinBox()
        self.count.setObjectName("variationCount")
        self.count.setRange(2, 16)
        self.count.setValue(DEFAULT_COUNT)
        self.count.setToolTip("How many variations to render")
        self.strength = QDoubleSpinBox()
        self.strength.setObjectName("variationStrength")
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(DEFAULT_STRENGTH)
        self.strength.setToolTip("How far each variation strays from the current latent (0 = the same, 1 = a new "
                                 "random draw)")
        self.render_button = QPushButton("Render")
        self.render_button.setObjectName("renderVariations")
        self.render_button.setToolTip("Render variations of the current output (Ctrl+Shift+V)")
        self.use_button = QPushButton("Continue")
        self.use_button.setObjectName("useVariation")
        self.use_button.setToolTip("Make the picked variation's latent the current one (undoable); double-click a "
                                   "tile does the same")
        self.use_button.setEnabled(False)
        self.status = QLabel()
        self.status.setObjectName("variationStatus")
        self.tiles = QListWidget()
        self.tiles.setObjectName("variationTiles")
        self.tiles.setViewMode(QListView.ViewMode.IconMode)
        self.thumb_menu = ThumbSizeMenu(self.tiles, "tiles")
        self.thumb_menu.chosen.connect(self.set_thumb_size)
        self._set_icon_size()
        self.tiles.setResizeMode(QListView.ResizeMode.Adjust)
        self.tiles.setMovement(QListView.Movement.Static)
        self.tiles.setWrapping(True)
        self.tiles.setToolTip(f"Click a variation to audition it; double-click to continue from it; {MENU_HINT}")

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Count"))
        controls.addWidget(self.count)
        controls.addWidget(QLabel("Strength"))
        controls.addWidget(self.strength)
        controls.addWidget(self.render_button)
        controls.addWidget(self.use_button)
        controls.addStretch(1)
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the dock
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.tiles, 1)

        self.render_button.clicked.connect(self.render_variations)
        self.use_button.clicked.connect(self.use_current)
        self.tiles.currentRowChanged.connect(self._on_current_changed)
        self.tiles.itemDoubleClicked.connect(lambda _item: self.use_current())
        session.variations_changed.connect(self._on_variations_changed)
        session.model_changed.connect(self._on_model_changed)
        self._on_variations_changed()

    def set_thumb_size(self, name: str) -> None:
        """Show the tiles at size `name` (small, medium, large): thumbnails made anew at that height."""
        if not self.thumb_menu.set_size(name) and self.tiles.iconSize().height() == self.thumb_menu.height:
            return
        self._set_icon_size()
        self.tiles.clear()
        self._on_variations_changed()

    def _set_icon_size(self) -> None:
        height = self.thumb_menu.height
        self.tiles.setIconSize(QSize(4 * height, height))

    def render_variations(self) -> None:
        """Render a new set of variations (what the panel's Render button does)."""
        self._wanted = self.count.value()
        self.session.render_variations(self.count.value(), self.strength.value())

    def _on_model_changed(self, _entry) -> None:
        self._wanted = 0
        self.session.clear_variations()

    def use_current(self) -> None:
        row = self.tiles.currentRow()
        if 0 <= row < len(self.session.variations):
            self.session.use_variation(row)

    def _on_current_changed(self, row: int) -> None:
        self.use_button.setEnabled(0 <= row < len(self.session.variations))
        if 0 <= row < len(self.session.variations):
            self.audition.emit(row)

    def _on_variations_changed(self) -> None:
        tiles = self.session.variations
        if len(tiles) < self.tiles.count():  # cleared or replaced: rebuild
            self.tiles.clear()
        for index in range(self.tiles.count(), len(tiles)):
            request, output = tiles[index]
            thumbnail = output_thumbnail(output, self.thumb_menu.height)
            item = QListWidgetItem(QIcon(pixmap_from_png(thumbnail)), f"{index + 1}")
            item.setToolTip(f"variation seed {request.param('variation_seed')}")
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.tiles.addItem(item)
        wanted = self._wanted
        if not tiles and not wanted:
            self.status.setText("Render variations of the current output to compare them")
        elif len(tiles) < wanted:
            self.status.setText(f"Rendering… {len(tiles)} of {wanted}")
        else:
            self.status.setText(f"{len(tiles)} variations: click to audition, double-click to continue")
        self.use_button.setEnabled(0 <= self.tiles.currentRow() < len(tiles))

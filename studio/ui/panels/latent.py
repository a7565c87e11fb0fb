"""The latent panel: the seed (random / fixed / increment, dice, Next), then the family's latent-side params made from
their specs (studio.ui.panels.controls) in its groups — principal directions (with a style-based GAN's layer range),
raw dimensions on demand, truncation / mixing / variation, and any group a family names —, Reset All, and
"Encode Image…" ("Project Image…" when encoding is a projection, "Encode Sound…" for sounds). Every change is one
undoable step; a slider drag is one step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QToolButton, QVBoxLayout, QWidget)

from studio.params import CONDITION_GROUPS, DIRECTIONS, RAW, SHAPING, Capability
from studio.request import SEED_MODES, RenderRequest
from studio.ui.panels.controls import SeedEdit, ValueSlider
from studio.ui.panels.direction_names import DirectionLabels, DirectionSetBar, direction_index
from studio.ui.panels.param_panel import MAX_RAW_SLIDERS, ParamPanel, group_order, shown_specs

if TYPE_CHECKING:
    from studio.ui.session import Session

__all__ = ["LatentPanel", "SeedEdit", "ValueSlider", "MAX_RAW_SLIDERS"]

RAW_TIP = "Sliders for each raw latent dimension z0, z1, … (added to the latent)"
ENCODE_TIP = ("Take the latent from an image (for glyph models: a strip of characters) — or drop an image on the "
              "window")
SOUND_TIP = ("Take the latent (the timbre) from a sound file, read as the current class; any sample rate — or drop "
             "a sound on the window")
PROJECT_TIP = ("Find the style w that redraws the glyphs of an image (a strip of characters): a projection by "
               "optimisation that takes a while; its progress shows in the status bar, and Cancel (or Esc) stops it")
NO_ENCODE_TIP = "This model has no encoder: its latent comes from seeds (and saved or interpolated latents)"
FIRST_GROUPS = (DIRECTIONS, RAW, SHAPING)  # the app's order of the usual groups; a family's own groups follow


class LatentPanel(ParamPanel):
    def __init__(self, session: "Session", parent: QWidget | None = None):
        super().__init__(session, parent)
        self.setObjectName("latentPanel")
        self.seed_modes = SEED_MODES

        # the seed (a core field: every model has one)
        self.seed_edit = SeedEdit("seedEdit", "Seed of the latent (0 … 2⁶⁴−1). Type a number and press Enter; "
                                              "↑/↓ step it.")
        self.dice = QToolButton()
        self.dice.setObjectName("diceButton")
        self.dice.setText("⚄")
        self.dice.setToolTip("Random seed (Ctrl+R)")
        self.seed_mode = QComboBox()
        self.seed_mode.setObjectName("seedMode")
        self.seed_mode.addItems([m.capitalize() for m in self.seed_modes])
        self.seed_mode.setToolTip("What the seed does after an export and on Next (F5): keep it (fixed), add one "
                                  "(increment) or draw a new one (random)")
        self.next_button = QToolButton()
        self.next_button.setObjectName("nextSeedButton")
        self.next_button.setText("Next")
        self.next_button.setToolTip("Next seed by the seed mode (F5)")
        seed_row = QHBoxLayout()
        seed_row.addWidget(QLabel("Seed"))
        seed_row.addWidget(self.seed_edit, 1)
        seed_row.addWidget(self.dice)
        seed_row.addWidget(self.seed_mode)
        seed_row.addWidget(self.next_button)
        self.latent_note = QLabel("Latent: explicit values (encoded or saved) — the seed is not used")
        self.latent_note.setObjectName("latentNote")
        self.latent_note.setWordWrap(True)
        self.latent_note.setToolTip("The latent comes from explicit values (an encoded image or a saved latent) "
                                    "instead of the seed; pick a seed to go back to seeded latents")

        # raw dimensions on demand, and Reset All (where the raw group goes)
        self.show_raw = QCheckBox("Show raw dimensions")
        self.show_raw.setObjectName("showRawCheck")
        self.show_raw.setToolTip(RAW_TIP)
        self.reset_all = QPushButton("Reset All")
        self.reset_all.setObjectName("resetAllButton")
        self.reset_all.setToolTip("Reset every latent setting of this panel (directions, raw dimensions, "
                                  "truncation, mixing, variation …) to the model's defaults")
        self.raw_row = QWidget()
        self.raw_row.setObjectName("rawRow")
        raw_layout = QHBoxLayout(self.raw_row)
        raw_layout.setContentsMargins(0, 0, 0, 0)
        raw_layout.addWidget(self.show_raw)
        raw_layout.addStretch(1)
        raw_layout.addWidget(self.reset_all)
        self.raw_box: QWidget | None = None
        # named directions (studio.ui.panels.direction_names): the set row in the directions group, names on sliders
        self.direction_labels = DirectionLabels(session, self)
        self.direction_bar: DirectionSetBar | None = None

        self.encode_button = QPushButton("Encode Image…")
        self.encode_button.setObjectName("encodeButton")
        self.encode_button.setToolTip(ENCODE_TIP)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(seed_row)
        layout.addWidget(self.latent_note)
        self._groups = QVBoxLayout()  # the family's groups (rebuilt for each model), with the raw row among them
        self._groups.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._groups)
        layout.addWidget(self.encode_button)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        # bindings
        session.model_changed.connect(self._on_model_changed)
        session.request_changed.connect(self._on_request_changed)
        session.seed_mode_changed.connect(self._on_seed_mode_changed)
        self.seed_edit.returnPressed.connect(self._on_seed_entered)
        self.seed_edit.stepped.connect(lambda seed: self.session.change("Seed", seed=seed, latent=None))
        self.dice.clicked.connect(session.random_seed)
        self.next_button.clicked.connect(session.next_seed)
        self.seed_mode.currentIndexChanged.connect(lambda i: session.set_seed_mode(self.seed_modes[i]))
        self.reset_all.clicked.connect(self.reset_all_edits)
        self.show_raw.toggled.connect(self._on_show_raw)
        self.encode_button.clicked.connect(self.encode_dialog)
        session.directions.changed.connect(self._on_direction_names_changed)
        self._on_model_changed(session.entry)

    # --- building --------------------------------------------------------------------------------------------------
    def _on_model_changed(self, entry) -> None:
        self._forget_controls()
        self.raw_box = None
        self.direction_bar = None
        self.direction_labels.attach({})
        self._groups.removeWidget(self.raw_row)
        self._adopt(entry)
        specs = [s for s in shown_specs(self.table) if s.group not in CONDITION_GROUPS]
        groups = group_order(specs, first=FIRST_GROUPS)
        if RAW not in groups:  # the row of Reset All goes where raw dimensions would
            groups.insert(int(DIRECTIONS in groups), RAW)
        raw_count = 0
        for group in groups:
            mine = [s for s in specs if s.group == group]
            if group == RAW:
                self._groups.addWidget(self.raw_row)
                if mine:
                    raw_count = sum(s.count or 1 for s in mine)
                    self.raw_box = self._build_group(group, mine, boxed=False, limit=MAX_RAW_SLIDERS)
                    self.raw_box.setVisible(self.show_raw.isChecked())
                    self._groups.addWidget(self.raw_box)
                continue
            box = self._build_group(group, mine)
            if group == DIRECTIONS:
                box.setToolTip("Move along the model's main axes of variation, in standard deviations")
                self._name_directions(box, mine)
            self._groups.addWidget(box)
        raw_names = {n for s in specs if s.group == RAW for n in s.names()} if raw_count <= MAX_RAW_SLIDERS else set()
        raw = any(name in raw_names for name in self.controls)
        self.show_raw.setEnabled(raw)
        self.show_raw.setToolTip(RAW_TIP if raw or not raw_count else
                                 f"{RAW_TIP} — not offered: this latent has {raw_count} values")
        if not raw:
            self.show_raw.setChecked(False)
        self._show_encode(entry)
        self._on_request_changed(self.session.request)

    def _name_directions(self, box: QWidget, specs) -> None:
        """The set row at the top of the directions group, and names on its d<k> sliders."""
        indexed = {direction_index(name): control for name, control in self.controls.items()
                   if (spec := self.table.find(name)) is not None and spec.group == DIRECTIONS and spec.count
                   and spec.name == "d" and direction_index(name) is not None}
        if not indexed:
            self.direction_labels.attach({})
            return
        self.direction_bar = DirectionSetBar(self.session, box)
        form = box.layout()
        if isinstance(form, QFormLayout):
            form.insertRow(0, self.direction_bar)
        self.direction_labels.attach({k: c for k, c in indexed.items() if k is not None})

    def _on_direction_names_changed(self) -> None:
        self.direction_labels.show_names()
        if self.direction_bar is not None:
            self.direction_bar.refresh()

    def _show_encode(self, entry) -> None:
        caps = entry.capabilities if entry is not None else Capability.NONE
        sound = self.session.output_kind == "audio"
        projects = Capability.PROJECT in caps
        self.encode_button.setEnabled(Capability.ENCODE in caps)
        self.encode_button.setText("Encode Sound…" if sound else "Project Image…" if projects else "Encode Image…")
        self.encode_button.setToolTip(NO_ENCODE_TIP if Capability.ENCODE not in caps else SOUND_TIP if sound
                                      else PROJECT_TIP if projects else ENCODE_TIP)

    def _on_show_raw(self, on: bool) -> None:
        if self.raw_box is not None:
            self.raw_box.setVisible(on)

    # --- session → widgets ----------------------------------------------------------------------------------------
    def _on_request_changed(self, request: RenderRequest | None) -> None:
        self.setEnabled(request is not None)
        if request is None:
            return
        if not self.seed_edit.hasFocus() or self.seed_edit.seed() != request.seed:
            self.seed_edit.setText(str(request.seed))
        self.latent_note.setVisible(request.latent is not None)
        self._show_params(request)
        self.reset_all.setEnabled(bool(self._panel_params(request)))

    def _on_seed_mode_changed(self, mode: str) -> None:
        blocked = self.seed_mode.blockSignals(True)
        self.seed_mode.setCurrentIndex(self.seed_modes.index(mode))
        self.seed_mode.blockSignals(blocked)

    # --- widgets → session ----------------------------------------------------------------------------------------
    def _on_seed_entered(self) -> None:
        seed = self.seed_edit.seed()
        if seed is not None:
            self.session.change("Seed", seed=seed, latent=None)

    def _panel_params(self, request: RenderRequest) -> list[str]:
        """The request's params this panel sets (those of its groups)."""
        return [name for name in request.params
                if (spec := self.table.find(name)) is not None and spec.group not in CONDITION_GROUPS]

    def reset_all_edits(self) -> None:
        """Every param of this panel's groups back to its default, as one step."""
        request = self.session.request
        if request is None:
            return
        names = self._panel_params(request)
        if names:
            self.session.change("Reset all sliders",
                                params={k: v for k, v in request.params.items() if k not in names})

    def encode_dialog(self) -> None:
        from studio.ui.dialogs import ask_encode_image, ask_sound

        if self.session.output_kind == "audio":
            path = ask_sound(self)
            if path:
                self.session.encode_sound(path)
            return
        choice = ask_encode_image(self, self.session)
        if choice is not None:
            self.session.encode_image(*choice)

"""The latent panel: seed (random / fixed / increment, dice), principal-direction sliders, raw dimensions on demand,
truncation, mixing, variation, and "Encode image…" ("Project Image…" for the GAN, "Encode Sound…" for sounds).
Style-based GANs add the layer style mixing starts at, the layer range the directions act on, and noise. Every change is one undoable step; a
slider drag is one step."""

from __future__ import annotations

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QScrollArea, QSlider, QSpinBox, QToolButton, QVBoxLayout,
                               QWidget)

from studio.families.gan.family import NOISE_RANGE, PSI_RANGE, num_style_layers
from studio.latent.seeds import MAX_SEED
from studio.request import RenderRequest
from studio.ui.session import PROJECTING_FAMILIES, SEED_MODES, Session

SCALE = 100  # slider units per value unit
EDIT_SEED_MAX = 2**53  # mix and variation seeds travel as float edit values: whole numbers stay exact up to 2^53
MAX_RAW_SLIDERS = 256  # raw z<k> sliders are offered up to this latent size (a diffusion noise has thousands)
TRUNCATION_RANGE = (0.0, 1.5)
RAW_TIP = "Sliders for each raw latent dimension z0, z1, … (added to the latent)"
ENCODE_TIP = ("Take the latent from an image (for glyph models: a strip of characters) — or drop an image on the "
              "window")
SOUND_TIP = ("Take the latent (the timbre) from a sound file, read as the current class; any sample rate — or drop "
             "a sound on the window")
PROJECT_TIP = ("Find the style w that redraws the glyphs of an image (a strip of characters): a projection by "
               "optimisation that takes a while; its progress shows in the status bar, and Cancel (or Esc) stops it")


class ValueSlider(QWidget):
    """A labelled slider for one named latent edit, with its value and a reset button.

    Emits `moved(name, value, gesture)` while dragged or stepped; `gesture` changes at each press, so one drag
    folds into one undo step.
    """

    moved = Signal(str, float, int)

    def __init__(self, name: str, label: str, lo: float, hi: float, default: float, tooltip: str,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.name, self.default = name, default
        self._gesture = 0
        self.setObjectName(f"slider_{name}")
        self.label = QLabel(label)
        self.label.setMinimumWidth(64)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName(f"slider_{name}_handle")
        self.slider.setRange(round(lo * SCALE), round(hi * SCALE))
        self.slider.setPageStep(SCALE // 4)
        self.slider.setSingleStep(max(1, SCALE // 20))
        self.slider.setToolTip(tooltip)
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(44)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.reset_button = QToolButton()
        self.reset_button.setText("⟲")
        self.reset_button.setToolTip(f"Reset {label} to {default:g}")
        self.reset_button.setAutoRaise(True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label)
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        row.addWidget(self.reset_button)
        self.set_value(default)
        self._label_text = label
        self.slider.sliderPressed.connect(self._new_gesture)
        self.slider.sliderReleased.connect(self._new_gesture)
        self.slider.valueChanged.connect(self._on_value_changed)
        self.reset_button.clicked.connect(self.reset)

    def value(self) -> float:
        return self.slider.value() / SCALE

    def set_value(self, value: float) -> None:
        """Show `value` without emitting (the session already has it)."""
        blocked = self.slider.blockSignals(True)
        self.slider.setValue(round(value * SCALE))
        self.slider.blockSignals(blocked)
        self._show(value)

    def set_default(self, default: float) -> None:
        """A new default (what Reset goes back to, and what the edit's absence means)."""
        self.default = default
        self.reset_button.setToolTip(f"Reset {self._label_text} to {default:g}")
        self._show(self.value())

    def set_range(self, lo: float, hi: float) -> None:
        blocked = self.slider.blockSignals(True)
        self.slider.setRange(round(lo * SCALE), round(hi * SCALE))
        self.slider.blockSignals(blocked)

    def reset(self) -> None:
        self._new_gesture()
        self.slider.setValue(round(self.default * SCALE))
        self._new_gesture()

    def _new_gesture(self) -> None:
        self._gesture += 1

    def _show(self, value: float) -> None:
        self.value_label.setText(f"{value:+.2f}" if self.default == 0 else f"{value:.2f}")
        self.reset_button.setEnabled(abs(value - self.default) > 1e-9)

    def _on_value_changed(self, raw: int) -> None:
        value = raw / SCALE
        self._show(value)
        self.moved.emit(self.name, value, self._gesture)


class SeedEdit(QLineEdit):
    """A seed field for the full 0..2^63-1 range (QSpinBox stops at 2^31); Up/Down step it."""

    stepped = Signal(int)

    def __init__(self, name: str, tooltip: str, placeholder: str = "", maximum: int = MAX_SEED,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.maximum = maximum
        self.setObjectName(name)
        self.setToolTip(tooltip)
        self.setPlaceholderText(placeholder)
        self.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{1,19}"), self))

    def seed(self) -> int | None:
        try:
            value = int(self.text())
        except ValueError:
            return None
        return value if 0 <= value <= self.maximum else None

    def keyPressEvent(self, event) -> None:
        step = {Qt.Key.Key_Up: 1, Qt.Key.Key_Down: -1}.get(event.key())
        if step is not None and self.seed() is not None:
            self.stepped.emit(min(self.maximum, max(0, self.seed() + step)))
            return
        super().keyPressEvent(event)


class LatentPanel(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setObjectName("latentPanel")
        self.sliders: dict[str, ValueSlider] = {}

        # seed
        self.seed_edit = SeedEdit("seedEdit", "Seed of the latent (0 … 2⁶³−1). Type a number and press Enter; "
                                              "↑/↓ step it.")
        self.dice = QToolButton()
        self.dice.setObjectName("diceButton")
        self.dice.setText("⚄")
        self.dice.setToolTip("Random seed (Ctrl+R)")
        self.seed_mode = QComboBox()
        self.seed_mode.setObjectName("seedMode")
        self.seed_mode.addItems([m.capitalize() for m in SEED_MODES])
        self.seed_mode.setToolTip("What the seed does after an export and on Next (F5): keep it (fixed), add one "
                                  "(increment) or draw a new one (random)")
        self.next_button = QToolButton()
        self.next_button.setText("Next")
        self.next_button.setToolTip("Next seed by the seed mode (F5)")
        seed_row = QHBoxLayout()
        seed_row.addWidget(QLabel("Seed"))
        seed_row.addWidget(self.seed_edit, 1)
        seed_row.addWidget(self.dice)
        seed_row.addWidget(self.seed_mode)
        seed_row.addWidget(self.next_button)
        self.latent_note = QLabel()
        self.latent_note.setObjectName("latentNote")
        self.latent_note.setWordWrap(True)
        self.latent_note.setToolTip("The latent comes from explicit values (an encoded image or a saved latent) "
                                    "instead of the seed; pick a seed to go back to seeded latents")

        # directions
        self.directions_box = QGroupBox("Principal directions")
        self.directions_box.setToolTip("Move along the model's main axes of variation, in standard deviations")
        self.directions_grid = QVBoxLayout(self.directions_box)
        self.reset_all = QPushButton("Reset All")
        self.reset_all.setObjectName("resetAllButton")
        self.reset_all.setToolTip("Reset every direction, raw dimension, truncation, mixing and variation (and the "
                                  "layer and noise settings of style-based GANs)")
        self.show_raw = QCheckBox("Show raw dimensions")
        self.show_raw.setObjectName("showRawCheck")
        self.show_raw.setToolTip(RAW_TIP)
        self.raw_box = QWidget()
        self.raw_layout = QVBoxLayout(self.raw_box)
        self.raw_layout.setContentsMargins(0, 0, 0, 0)
        self.raw_box.setVisible(False)

        # truncation, mixing, variation
        self.shaping_box = QGroupBox("Truncation, mixing, variation")
        form = QFormLayout(self.shaping_box)
        self.truncation = ValueSlider("truncation", "ψ", *TRUNCATION_RANGE, 1.0,
                                      "Truncation ψ: 1 keeps the latent, lower values pull it toward the average "
                                      "style (cleaner, less varied)")
        self.mix_seed = SeedEdit("mixSeedEdit", "Mix the latent with the latent of this seed (Enter to apply, "
                                 "empty to stop)", "seed to mix with", EDIT_SEED_MAX)
        self.mix_strength = ValueSlider("mix_strength", "Mix", 0.0, 1.0, 0.5,
                                        "How far to blend toward the mix seed's latent (0 = none, 1 = all)")
        self.variation_seed = SeedEdit("variationSeedEdit", "A nearby variation: slerp toward this seed's latent by "
                                       "the strength", "variation seed", EDIT_SEED_MAX)
        self.variation_strength = ValueSlider("variation_strength", "Strength", 0.0, 1.0, 0.0,
                                              "Variation strength (0 = the latent itself, 1 = the variation seed's)")
        # style-based GANs: the layer mixing starts at, the layers directions act on, noise
        self.mix_layer = QSpinBox()
        self.mix_layer.setObjectName("mixLayerSpin")
        self.mix_layer.setToolTip("Style mixing: layers from this one on take the mix seed's style (low = its "
                                  "shapes too, high = only its fine details)")
        self.noise_check = QCheckBox("Noise")
        self.noise_check.setObjectName("noiseCheck")
        self.noise_check.setToolTip("Per-pixel noise inputs of the generator (texture and small irregularities); "
                                    "off draws clean strokes")
        self.noise = ValueSlider("noise", "Amount", *NOISE_RANGE, 1.0,
                                 "Noise strength: 1 as trained, 0 none, above 1 exaggerated")
        form.addRow(self.truncation)
        form.addRow("Mix seed", self.mix_seed)
        form.addRow(self.mix_strength)
        form.addRow("From layer", self.mix_layer)
        form.addRow("Variation", self.variation_seed)
        form.addRow(self.variation_strength)
        form.addRow(self.noise_check)
        form.addRow(self.noise)
        self._shaping_form = form
        for slider in (self.truncation, self.mix_strength, self.variation_strength, self.noise):
            self.sliders[slider.name] = slider
            slider.moved.connect(self._on_slider_moved)
        self.layer_start = QSpinBox()
        self.layer_start.setObjectName("layerStartSpin")
        self.layer_start.setToolTip("First layer the direction sliders act on (0 = the coarsest)")
        self.layer_end = QSpinBox()
        self.layer_end.setObjectName("layerEndSpin")
        self.layer_end.setToolTip("The direction sliders act on layers before this one (the last = every layer to "
                                  "the finest)")
        self.layer_row = QWidget()
        self.layer_row.setObjectName("layerRange")
        layer_layout = QHBoxLayout(self.layer_row)
        layer_layout.setContentsMargins(0, 0, 0, 0)
        layer_layout.addWidget(QLabel("Layers"))
        layer_layout.addWidget(self.layer_start)
        layer_layout.addWidget(QLabel("to"))
        layer_layout.addWidget(self.layer_end)
        layer_layout.addStretch(1)
        self.directions_grid.addWidget(self.layer_row)
        self._layer_spins = {"mix_layer": self.mix_layer, "layer_start": self.layer_start,
                             "layer_end": self.layer_end}
        self._layer_defaults = {"mix_layer": 0, "layer_start": 0, "layer_end": 0}
        for name, spin in self._layer_spins.items():
            spin.setKeyboardTracking(False)  # typed numbers apply on Enter (one step), arrows at once
            spin.valueChanged.connect(lambda value, n=name: self._on_layer_changed(n, value))
        self._noise_on = 1.0  # the noise strength "Noise" turns back on

        self.encode_button = QPushButton("Encode Image…")
        self.encode_button.setObjectName("encodeButton")
        self.encode_button.setToolTip(ENCODE_TIP)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(seed_row)
        layout.addWidget(self.latent_note)
        layout.addWidget(self.directions_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.show_raw)
        buttons.addStretch(1)
        buttons.addWidget(self.reset_all)
        layout.addLayout(buttons)
        layout.addWidget(self.raw_box)
        layout.addWidget(self.shaping_box)
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
        self.seed_mode.currentIndexChanged.connect(lambda i: session.set_seed_mode(SEED_MODES[i]))
        self.reset_all.clicked.connect(self.reset_all_edits)
        self.show_raw.toggled.connect(self.raw_box.setVisible)
        self.mix_seed.returnPressed.connect(lambda: self._on_seed_edit("mix_seed", self.mix_seed))
        self.variation_seed.returnPressed.connect(lambda: self._on_seed_edit("variation_seed", self.variation_seed))
        self.encode_button.clicked.connect(self.encode_dialog)
        self.noise_check.clicked.connect(self._on_noise_toggled)
        self._on_model_changed(session.entry)
        self._on_request_changed(session.request)

    # --- building --------------------------------------------------------------------------------------------------
    def _on_model_changed(self, entry) -> None:
        for name in [n for n in self.sliders if n[0] in "dz" and n[1:].isdigit()]:
            slider = self.sliders.pop(name)
            slider.setParent(None)
            slider.deleteLater()
        count = entry.direction_count if entry is not None and entry.ok else 0
        size = entry.manifest.latent.size if entry is not None and entry.manifest is not None else 0
        caps = entry.capabilities if entry is not None else frozenset()
        for k in range(count):
            self._add_slider(f"d{k}", f"Dir {k + 1}", -3.0, 3.0, self.directions_grid,
                             f"Principal direction {k + 1} (of {count}, by variance), in standard deviations")
        raw = 0 < size <= MAX_RAW_SLIDERS
        for k in range(size if raw else 0):
            self._add_slider(f"z{k}", f"z{k}", -3.0, 3.0, self.raw_layout, f"Add to raw latent dimension {k}")
        self.directions_box.setVisible(count > 0)
        self.show_raw.setEnabled(raw)
        self.show_raw.setToolTip(RAW_TIP if raw or not size else
                                 f"{RAW_TIP} — not offered: this latent has {size} values")
        if not raw:
            self.show_raw.setChecked(False)
        self.encode_button.setEnabled(entry is not None and "encode" in caps)
        projects = entry is not None and entry.manifest is not None and entry.manifest.family in PROJECTING_FAMILIES
        sound = entry is not None and entry.manifest is not None and entry.manifest.output.kind == "audio"
        self.encode_button.setText("Encode Sound…" if sound else "Project Image…" if projects else "Encode Image…")
        self.encode_button.setToolTip(SOUND_TIP if sound else PROJECT_TIP if projects else ENCODE_TIP)
        self._build_style_controls(entry, caps)
        self._on_request_changed(self.session.request)

    def _build_style_controls(self, entry, caps: frozenset[str]) -> None:
        """Show (and size) the style-based GAN's controls when the family has them; hide them otherwise."""
        mixing, layered, noise = "style_mixing" in caps, "layer_directions" in caps, "noise" in caps
        num_ws = num_style_layers(entry.manifest) if (mixing or layered) and entry.manifest is not None else 0
        self._layer_defaults = {"mix_layer": num_ws // 2, "layer_start": 0, "layer_end": num_ws}
        for spin in self._layer_spins.values():
            blocked = spin.blockSignals(True)
            spin.setRange(0, num_ws)
            spin.blockSignals(blocked)
        self._shaping_form.setRowVisible(self.mix_layer, mixing)
        self.layer_row.setVisible(layered)
        self._shaping_form.setRowVisible(self.noise_check, noise)
        self._shaping_form.setRowVisible(self.noise, noise)
        # a style-based GAN swaps whole layers' styles, so a mix seed takes over fully unless told otherwise
        self.mix_strength.set_default(1.0 if mixing else 0.5)
        self.truncation.set_range(*(PSI_RANGE if mixing else TRUNCATION_RANGE))

    def _add_slider(self, name: str, label: str, lo: float, hi: float, layout, tooltip: str) -> None:
        slider = ValueSlider(name, label, lo, hi, 0.0, tooltip)
        slider.moved.connect(self._on_slider_moved)
        layout.addWidget(slider)
        self.sliders[name] = slider

    # --- session → widgets ----------------------------------------------------------------------------------------
    def _on_request_changed(self, request: RenderRequest | None) -> None:
        self.setEnabled(request is not None)
        if request is None:
            return
        if not self.seed_edit.hasFocus() or self.seed_edit.seed() != request.seed:
            self.seed_edit.setText(str(request.seed))
        self.latent_note.setVisible(request.latent is not None)
        self.latent_note.setText("Latent: explicit values (encoded or saved) — the seed is not used")
        edits = dict(request.edits)
        for name, slider in self.sliders.items():
            slider.set_value(edits.get(name, slider.default))
        for name, edit in (("mix_seed", self.mix_seed), ("variation_seed", self.variation_seed)):
            text = str(int(edits[name])) if name in edits else ""
            if edit.text() != text:
                edit.setText(text)
        self._show_style_controls(edits)

    def _show_style_controls(self, edits: dict[str, float]) -> None:
        values = {name: int(edits.get(name, default)) for name, default in self._layer_defaults.items()}
        top = self._layer_defaults["layer_end"]
        limits = {"mix_layer": (0, top), "layer_start": (0, values["layer_end"]),
                  "layer_end": (values["layer_start"], top)}  # start ≤ end
        for name, spin in self._layer_spins.items():
            blocked = spin.blockSignals(True)
            spin.setRange(*limits[name])
            spin.setValue(values[name])
            spin.blockSignals(blocked)
        noise = float(edits.get("noise", self.noise.default))
        if noise > 0:
            self._noise_on = noise
        self.noise_check.setChecked(noise > 0)  # (the slider stays live: dragging it up turns noise back on)

    def _on_seed_mode_changed(self, mode: str) -> None:
        blocked = self.seed_mode.blockSignals(True)
        self.seed_mode.setCurrentIndex(SEED_MODES.index(mode))
        self.seed_mode.blockSignals(blocked)

    # --- widgets → session ----------------------------------------------------------------------------------------
    def _on_slider_moved(self, name: str, value: float, gesture: int) -> None:
        slider = self.sliders[name]
        label = "Noise" if name == "noise" else slider.label.text()
        self.session.edit(name, None if abs(value - slider.default) < 1e-9 else value,
                          f"{label} {value:+.2f}", merge=f"{name}:{gesture}")

    def _on_layer_changed(self, name: str, value: int) -> None:
        label = {"mix_layer": "Mix from layer", "layer_start": "Directions from layer",
                 "layer_end": "Directions to layer"}[name]
        self.session.edit(name, None if value == self._layer_defaults[name] else float(value), f"{label} {value}")

    def _on_noise_toggled(self, on: bool) -> None:
        value = self._noise_on if on else 0.0
        self.session.edit("noise", None if abs(value - self.noise.default) < 1e-9 else value,
                          "Noise on" if on else "Noise off")

    def _on_seed_entered(self) -> None:
        seed = self.seed_edit.seed()
        if seed is not None:
            self.session.change("Seed", seed=seed, latent=None)

    def _on_seed_edit(self, name: str, edit: SeedEdit) -> None:
        seed = edit.seed()
        self.session.edit(name, float(seed) if seed is not None else None,
                          f"{name.replace('_', ' ').capitalize()} {edit.text() or 'off'}")

    def reset_all_edits(self) -> None:
        if self.session.request is not None and self.session.request.edits:
            self.session.change("Reset all sliders", edits=())

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


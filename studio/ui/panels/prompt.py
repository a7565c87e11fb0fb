"""The prompt / conditions panel: what the model declares — a class picker or a text prompt (and a negative prompt
where the family takes one) —, sampler settings (sampler, steps, guidance, eta) for iterative families, and the
init image and strength of image-to-image."""

from __future__ import annotations

import base64
import binascii

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from studio.errors import StudioError
from studio.families import get_family
from studio.families.diffusion.family import GUIDANCE_RANGE
from studio.nets.samplers import SAMPLER_NAMES
from studio.ui.images import pixmap_from_png
from studio.ui.panels.latent import ValueSlider
from studio.ui.session import DEFAULT_STRENGTH, Session

PREVIEW_HEIGHT = 40  # the init image thumbnail


def family_of(entry):
    """The family object of a package entry (None when there is none or it is unknown)."""
    if entry is None or entry.manifest is None:
        return None
    try:
        return get_family(entry.manifest.family)
    except StudioError:
        return None


def ranges(chars) -> str:
    """'ABC…Zabc…z012…9' → 'A–Z a–z 0–9': runs of three or more consecutive characters shortened."""
    codes = [ord(c) for c in chars if len(c) == 1]
    parts, start = [], 0
    for i in range(1, len(codes) + 1):
        if i == len(codes) or codes[i] != codes[i - 1] + 1:
            run = codes[start:i]
            parts.append(f"{chr(run[0])}–{chr(run[-1])}" if len(run) >= 3 else "".join(map(chr, run)))
            start = i
    return " ".join(parts) if parts else "".join(chars)


class PromptPanel(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setObjectName("promptPanel")
        self._typing = 0  # a new undo step each time a text field gains focus

        self.prompt = QLineEdit()
        self.prompt.setObjectName("promptEdit")
        self.prompt.setToolTip("What to draw. The glyph model draws this text in the current latent style")
        self.prompt_hint = QLabel()
        self.prompt_hint.setObjectName("promptHint")
        self.prompt_hint.setWordWrap(True)
        self.negative = QLineEdit()
        self.negative.setObjectName("negativeEdit")
        self.negative.setToolTip("What to steer away from (negative prompt)")
        self.label = QComboBox()
        self.label.setObjectName("classPicker")
        self.label.setToolTip("The class to draw")
        self.none_note = QLabel("This model takes no condition: its latent decides everything.")
        self.none_note.setWordWrap(True)
        self.conditions = QGroupBox("Conditions")
        form = QFormLayout(self.conditions)
        form.addRow("Prompt", self.prompt)
        form.addRow("", self.prompt_hint)
        form.addRow("Negative", self.negative)
        form.addRow("Class", self.label)
        form.addRow(self.none_note)
        self._form = form

        self.sampler_combo = QComboBox()
        self.sampler_combo.setObjectName("samplerCombo")
        self.sampler_combo.setToolTip("The sampler that walks from noise to the picture: DPM-Solver++ and Euler are "
                                      "good in few steps, DDIM is deterministic (or noisy with η), DDPM needs many "
                                      "steps")
        self.steps = QSpinBox()
        self.steps.setObjectName("stepsSpin")
        self.steps.setRange(1, 1000)
        self.steps.setToolTip("Sampler steps: more is slower and usually cleaner")
        self.guidance = QDoubleSpinBox()
        self.guidance.setObjectName("guidanceSpin")
        self.guidance.setRange(*GUIDANCE_RANGE)
        self.guidance.setSingleStep(0.5)
        self.guidance.setToolTip("Classifier-free guidance: how strongly the condition steers the sample")
        self.eta = QDoubleSpinBox()
        self.eta.setObjectName("etaSpin")
        self.eta.setRange(0.0, 1.0)
        self.eta.setSingleStep(0.1)
        self.eta.setToolTip("DDIM η: 0 is deterministic, 1 adds fresh noise each step (like DDPM); only the DDIM "
                            "sampler uses it")
        # the picture's size, for families that draw at any size (Stable Diffusion: whole latent cells of 8 px)
        self.width_spin, self.height_spin = QSpinBox(), QSpinBox()
        for spin, name in ((self.width_spin, "width"), (self.height_spin, "height")):
            spin.setObjectName(f"{name}Spin")
            spin.setRange(64, 2048)
            spin.setSingleStep(64)
            spin.setSuffix(" px")
            spin.setKeyboardTracking(False)  # one change when typing is done, not one per digit
            spin.setToolTip(f"The picture's {name} in pixels (a multiple of 8; the model's own size draws best)")
        self.size_row = QWidget()
        size_layout = QHBoxLayout(self.size_row)
        size_layout.setContentsMargins(0, 0, 0, 0)
        size_layout.addWidget(self.width_spin)
        size_layout.addWidget(QLabel("×"))
        size_layout.addWidget(self.height_spin)
        self.sampler = QGroupBox("Sampler")
        sampler_form = QFormLayout(self.sampler)
        sampler_form.addRow("Sampler", self.sampler_combo)
        sampler_form.addRow("Steps", self.steps)
        sampler_form.addRow("Guidance", self.guidance)
        sampler_form.addRow("η", self.eta)
        sampler_form.addRow("Size", self.size_row)
        self._sampler_form = sampler_form
        self._native = 0  # the model's own size (when it draws at any size)
        self._defaults: dict = {}  # the family's sampler settings, shown while the request leaves them unset

        # image to image
        self.init_box = QGroupBox("Image to image")
        self.init_box.setObjectName("initBox")
        self.init_box.setToolTip("Start from a picture instead of pure noise: the model redraws it in the prompt's "
                                 "glyphs")
        self.init_button = QPushButton("Init Image…")
        self.init_button.setObjectName("initImageButton")
        self.init_button.setToolTip("Choose the picture to start from (or drop an image on the window); it is "
                                    "fitted to the sheet the prompt draws")
        self.init_clear = QPushButton("Clear")
        self.init_clear.setObjectName("clearInitButton")
        self.init_clear.setToolTip("Stop using the init image: draw from pure noise again")
        self.init_preview = QLabel("No init image")
        self.init_preview.setObjectName("initImagePreview")
        self.init_preview.setMinimumHeight(PREVIEW_HEIGHT)
        self.init_preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.init_preview.setToolTip("The init image, fitted to the prompt's sheet (it follows the prompt)")
        self.strength = ValueSlider("strength", "Strength", 0.01, 1.0, DEFAULT_STRENGTH,
                                    "How much of the init image is redrawn: low keeps the picture, 1 ignores it")
        init_buttons = QHBoxLayout()
        init_buttons.addWidget(self.init_button)
        init_buttons.addWidget(self.init_clear)
        init_layout = QVBoxLayout(self.init_box)
        init_layout.addLayout(init_buttons)
        init_layout.addWidget(self.init_preview)
        init_layout.addWidget(self.strength)
        self._shown_init: str | None = None

        layout = QVBoxLayout(self)
        layout.addWidget(self.conditions)
        layout.addWidget(self.sampler)
        layout.addWidget(self.init_box)
        layout.addStretch(1)

        session.model_changed.connect(self._on_model_changed)
        session.request_changed.connect(self._on_request_changed)
        self.prompt.textEdited.connect(self._on_prompt_edited)
        self.negative.textEdited.connect(
            lambda text: session.change("Negative prompt", merge=f"negative:{self._typing}", negative_prompt=text))
        self.label.activated.connect(lambda i: session.change(f"Class {self.label.itemText(i)}",
                                                              label=self.label.itemText(i)))
        self.steps.valueChanged.connect(lambda v: self._sampler_changed("steps", v))
        self.guidance.valueChanged.connect(lambda v: self._sampler_changed("guidance", v))
        self.eta.valueChanged.connect(lambda v: self._sampler_changed("eta", v))
        self.width_spin.valueChanged.connect(lambda v: self._size_changed("width", v))
        self.height_spin.valueChanged.connect(lambda v: self._size_changed("height", v))
        self.sampler_combo.activated.connect(self._on_sampler_chosen)
        self.init_button.clicked.connect(self.init_image_dialog)
        self.init_clear.clicked.connect(session.clear_init_image)
        self.strength.moved.connect(self._on_strength_moved)
        for edit in (self.prompt, self.negative):
            edit.installEventFilter(self)
        self._on_model_changed(session.entry)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == event.Type.FocusIn:
            self._typing += 1
        return super().eventFilter(watched, event)

    def _on_model_changed(self, entry) -> None:
        cond = entry.manifest.conditions if entry is not None and entry.manifest is not None else None
        kind = cond.kind if cond is not None else "none"
        caps = entry.capabilities if entry is not None else frozenset()
        self._form.setRowVisible(self.prompt, kind == "text")
        self._form.setRowVisible(self.prompt_hint, kind == "text")
        self._form.setRowVisible(self.negative, kind == "text" and "negative_prompt" in caps)
        self._form.setRowVisible(self.label, kind == "class")
        self.none_note.setVisible(entry is not None and kind == "none")
        self.label.clear()
        if kind == "class":
            self.label.addItems(list(cond.labels))
        self.prompt_hint.setText(self._hint(entry) if kind == "text" else "")
        self.sampler.setVisible("iterate" in caps)
        family = family_of(entry)
        self._defaults = dict(getattr(family, "defaults", None) or {})
        blocked = self.sampler_combo.blockSignals(True)
        self.sampler_combo.clear()
        if "samplers" in caps:
            for name in getattr(family, "samplers", ()):
                self.sampler_combo.addItem(SAMPLER_NAMES.get(name, name), name)
        self.sampler_combo.blockSignals(blocked)
        self._sampler_form.setRowVisible(self.sampler_combo, "samplers" in caps)
        self._native = int(entry.manifest.output["width"]) if "free_text" in caps and entry.manifest else 0
        self._sampler_form.setRowVisible(self.size_row, bool(self._native))
        for spin in (self.width_spin, self.height_spin):
            spin.setMinimum(min(64, self._native or 64))
        self.init_box.setVisible("img2img" in caps)
        self._on_request_changed(self.session.request)

    def _on_request_changed(self, request) -> None:
        self.setEnabled(request is not None)
        if request is None:
            return
        if self.prompt.text() != request.prompt:
            self.prompt.setText(request.prompt)
        if self.negative.text() != request.negative_prompt:
            self.negative.setText(request.negative_prompt)
        if request.label is not None and self.label.currentText() != request.label:
            self.label.setCurrentText(request.label)
        for name, spin in (("steps", self.steps), ("guidance", self.guidance), ("eta", self.eta)):
            value = getattr(request, name)
            value = self._defaults.get(name) if value is None else value
            if value is not None and spin.value() != value:
                blocked = spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(blocked)
        if self._native:
            for spin, value in ((self.width_spin, request.width), (self.height_spin, request.height)):
                value = value or self._native
                if spin.value() != value:
                    blocked = spin.blockSignals(True)
                    spin.setValue(value)
                    spin.blockSignals(blocked)
        sampler = request.sampler or self._defaults.get("sampler")
        index = self.sampler_combo.findData(sampler) if sampler is not None else -1
        if index >= 0 and index != self.sampler_combo.currentIndex():
            blocked = self.sampler_combo.blockSignals(True)
            self.sampler_combo.setCurrentIndex(index)
            self.sampler_combo.blockSignals(blocked)
        # η is a DDIM setting: other samplers ignore it (families without a sampler choice take it as it is)
        self.eta.setEnabled(self.sampler_combo.count() == 0 or sampler == "ddim")
        self._show_init(request)

    def _show_init(self, request) -> None:
        has_init = request.init_image is not None
        # the family redraws everything (strength 1) when a request sets an init image but no strength
        self.strength.set_value(request.strength if request.strength is not None
                                else 1.0 if has_init else DEFAULT_STRENGTH)
        self.strength.setEnabled(has_init)
        self.init_clear.setEnabled(has_init or request.strength is not None)
        if request.init_image == self._shown_init:
            return
        self._shown_init = request.init_image
        pixmap = None
        if has_init:
            try:
                pixmap = pixmap_from_png(base64.b64decode(request.init_image.encode("ascii"), validate=True))
            except (ValueError, binascii.Error):
                pixmap = None
        if pixmap is not None and not pixmap.isNull():
            self.init_preview.setPixmap(pixmap.scaledToHeight(PREVIEW_HEIGHT,
                                                              Qt.TransformationMode.SmoothTransformation))
        else:
            self.init_preview.clear()
            self.init_preview.setText("Init image set (unreadable)" if has_init else "No init image")

    @staticmethod
    def _hint(entry) -> str:
        if entry is None or entry.manifest is None:
            return ""
        if "free_text" in entry.capabilities:
            return "Describe the picture"
        return f"Draws {ranges(entry.manifest.conditions.labels)} and spaces"

    def _on_prompt_edited(self, text: str) -> None:
        entry = self.session.entry
        if entry is not None and "free_text" in entry.capabilities:  # any text: the model's tokenizer reads it
            self.prompt_hint.setText(self._hint(entry))
            self.session.change("Prompt", merge=f"prompt:{self._typing}", prompt=text)
            return
        alphabet = set(entry.manifest.conditions.labels) if entry is not None and entry.manifest else set()
        bad = sorted({ch for ch in text if ch not in alphabet and not ch.isspace()})
        if bad:
            self.prompt_hint.setText(f"<span style='color:#e5a50a'>Cannot draw {' '.join(bad)} — "
                                     f"it draws {ranges(entry.manifest.conditions.labels)} and spaces</span>")
            return
        if not text.strip():
            self.prompt_hint.setText("Type something to draw")
            return
        self.prompt_hint.setText(self._hint(entry))
        self.session.change("Prompt", merge=f"prompt:{self._typing}", prompt=text)

    def _size_changed(self, name: str, value: int) -> None:
        """Width or height: snapped to whole latent cells (8 px); the model's own size is stored as "unset"."""
        snapped = max(self.width_spin.minimum(), value - value % 8)
        if snapped != value:
            spin = self.width_spin if name == "width" else self.height_spin
            blocked = spin.blockSignals(True)
            spin.setValue(snapped)
            spin.blockSignals(blocked)
        if self.session.request is not None and self._native:
            stored = None if snapped == self._native else snapped
            if getattr(self.session.request, name) != stored:
                self.session.change(f"{name.capitalize()} {snapped}", **{name: stored})

    def _sampler_changed(self, name: str, value) -> None:
        self.session.change(f"{name.capitalize()} {value}", merge=f"{name}:{self._typing}", **{name: value})

    def _on_sampler_chosen(self, index: int) -> None:
        name = self.sampler_combo.itemData(index)
        if name is not None and self.session.request is not None:
            current = self.session.request.sampler or self._defaults.get("sampler")
            if name != current:
                self.session.change(f"Sampler {self.sampler_combo.itemText(index)}", sampler=name)

    def _on_strength_moved(self, _name: str, value: float, gesture: int) -> None:
        self.session.change(f"Strength {value:.2f}", merge=f"strength:{gesture}", strength=value)

    def init_image_dialog(self) -> None:
        from studio.ui.dialogs import ask_init_image

        path = ask_init_image(self)
        if path:
            self.session.set_init_image(path)

"""The prompt / conditions panel: what the model declares — a class picker or a text prompt (and a negative prompt
where the family takes one) — and sampler settings (steps, guidance, eta) for iterative families."""

from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QSpinBox,
                               QVBoxLayout, QWidget)

from studio.ui.session import Session


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

        self.steps = QSpinBox()
        self.steps.setObjectName("stepsSpin")
        self.steps.setRange(1, 1000)
        self.steps.setToolTip("Sampler steps: more is slower and usually cleaner")
        self.guidance = QDoubleSpinBox()
        self.guidance.setObjectName("guidanceSpin")
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setToolTip("Classifier-free guidance: how strongly the condition steers the sample")
        self.eta = QDoubleSpinBox()
        self.eta.setObjectName("etaSpin")
        self.eta.setRange(0.0, 1.0)
        self.eta.setSingleStep(0.1)
        self.eta.setToolTip("DDIM η: 0 is deterministic, 1 adds fresh noise each step (like DDPM)")
        self.sampler = QGroupBox("Sampler")
        sampler_form = QFormLayout(self.sampler)
        sampler_form.addRow("Steps", self.steps)
        sampler_form.addRow("Guidance", self.guidance)
        sampler_form.addRow("η", self.eta)

        layout = QVBoxLayout(self)
        layout.addWidget(self.conditions)
        layout.addWidget(self.sampler)
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
        self.prompt_hint.setText(f"Draws {ranges(cond.labels)} and spaces" if kind == "text" else "")
        self.sampler.setVisible("iterate" in caps)
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
        for spin, value in ((self.steps, request.steps), (self.guidance, request.guidance), (self.eta, request.eta)):
            if value is not None and spin.value() != value:
                blocked = spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(blocked)

    def _on_prompt_edited(self, text: str) -> None:
        entry = self.session.entry
        alphabet = set(entry.manifest.conditions.labels) if entry is not None and entry.manifest else set()
        bad = sorted({ch for ch in text if ch not in alphabet and not ch.isspace()})
        if bad:
            self.prompt_hint.setText(f"<span style='color:#e5a50a'>Cannot draw {' '.join(bad)} — "
                                     f"it draws {ranges(entry.manifest.conditions.labels)} and spaces</span>")
            return
        if not text.strip():
            self.prompt_hint.setText("Type something to draw")
            return
        self.prompt_hint.setText(f"Draws {ranges(entry.manifest.conditions.labels)} and spaces" if entry else "")
        self.session.change("Prompt", merge=f"prompt:{self._typing}", prompt=text)

    def _sampler_changed(self, name: str, value) -> None:
        self.session.change(f"{name.capitalize()} {value}", merge=f"{name}:{self._typing}", **{name: value})

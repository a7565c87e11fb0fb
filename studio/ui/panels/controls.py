"""Controls made from parameter specs: one widget per `ParamSpec` (or per name of an indexed spec), chosen by its kind
(`make_control`); `studio.ui.panels.param_panel` lays them out in the family's groups and sends their changes to the
session.

    FLOAT   a labelled slider with its value and a reset button (`ValueSlider`; one undo step per drag); a float
            without a span (no slider range) gets a spin box
    INT     a spin box (range, step; typing applies on Enter, one step); sizes snap to the step
    SEED    a seed field for 0 … 2⁶⁴−1 (`SeedEdit`; Enter applies, ↑/↓ step, empty = unset)
    CHOICE  a combo box of the spec's labels (the value in the item data)
    TEXT    a line edit (one undo step per focus); with a charset, the hint of what it draws, and refused characters
    IMAGE   a picker button, a thumbnail and Clear
    SOUND   a picker button, what is set, and Clear

A control shows the request's value, or the spec's default while the request leaves it unset; a value equal to the
default is sent as "unset" (the request stays minimal), except for the params the model's default request writes out
(its condition). A spec's `when` disables its control while its condition does not hold.

Nothing here knows a family: the specs say everything. No torch here either.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import QEvent, QObject, QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSlider,
                               QSpinBox, QToolButton, QVBoxLayout, QWidget)

from studio.params import Kind, ParamSpec, ParamTable
from studio.request import MAX_SEED, RenderRequest

SCALE = 100  # slider units per value unit (a span far from 1 gets another power of ten: see ValueSlider)
MAX_SLIDER_UNITS = 100_000
MIN_SLIDER_UNITS = 50
MAX_INT = 2**31 - 1  # what a QSpinBox holds
PREVIEW_HEIGHT = 40  # an image param's thumbnail
CAPTION_WIDTH = 64
NUMBER_WIDTH = 72  # a spin box's least width
SIZE_FIELDS = ("width", "height")  # core fields a spec may describe (a size in pixels)


# --- small pure helpers ---------------------------------------------------------------------------------------------


def object_name(name: str, suffix: str) -> str:
    """`mix_seed`, "Edit" → "mixSeedEdit": the object name a param's widget goes by (tests and tools find it)."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest) + suffix


def ranges(chars: Iterable[str]) -> str:
    """'ABC…Zabc…z012…9' → 'A–Z a–z 0–9': runs of three or more consecutive characters shortened."""
    codes = [ord(c) for c in chars if len(c) == 1]
    parts, start = [], 0
    for i in range(1, len(codes) + 1):
        if i == len(codes) or codes[i] != codes[i - 1] + 1:
            run = codes[start:i]
            parts.append(f"{chr(run[0])}–{chr(run[-1])}" if len(run) >= 3 else "".join(map(chr, run)))
            start = i
    return " ".join(parts) if parts else "".join(chars)


def holds(spec: ParamSpec, table: ParamTable, request: RenderRequest | None) -> bool:
    """Whether `spec`'s `when` condition holds for `request` (always, without one or when the other param is not the
    model's: there is nothing to wait for)."""
    if spec.when is None or request is None:
        return True
    other, values = spec.when
    if table.find(other) is None:
        return True
    value = table.value(request, other)
    if not values:
        return value is not None and value != ""
    return value in values


def caption_of(spec: ParamSpec, name: str) -> str:
    """The label of one param of a spec: its title, or for an indexed spec "Dir 1", "Dir 2" … (counting from 1) —
    or the param's own name (z0, z1 …) when the spec's title is just its name."""
    if not spec.count:
        return spec.title
    index = int(name[len(spec.name):])
    return name if spec.title == spec.name else f"{spec.title} {index + 1}"


def tooltip_of(spec: ParamSpec, name: str) -> str:
    help_text = spec.help or spec.title
    if spec.count:
        return f"{help_text} — {name}, {int(name[len(spec.name):]) + 1} of {spec.count}"
    return f"{help_text} ({name})" if spec.title.lower().replace(" ", "_") != name else help_text


def same(a: Any, b: Any) -> bool:
    """Equal values, floats to within rounding (a slider's 0.3 is the spec's 0.3)."""
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


# --- the controls ---------------------------------------------------------------------------------------------------


class ParamControl(QWidget):
    """The control of one param: shows a value, sends changes as `edited(name, value, undo text, merge key)` with
    value None for "unset" (the spec's default applies) and merge None for a step of its own.

    `caption` is the label the panel puts before it; `editor` the widget that takes the input."""

    edited = Signal(str, object, str, object)

    def __init__(self, spec: ParamSpec, name: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self.name = name or spec.name
        self.default = spec.default
        self.keep_default = False  # True: a value equal to the default is written out, not unset
        self.spans = False  # True: the control takes its whole row (its caption is inside it)
        self.caption = QLabel(caption_of(spec, self.name))
        self.caption.setObjectName(f"caption_{self.name}")
        self.caption.setToolTip(tooltip_of(spec, self.name))
        self.caption.setMinimumWidth(CAPTION_WIDTH)
        self.editor: QWidget = self

    @property
    def title(self) -> str:
        return self.caption.text()

    def show_value(self, value: Any) -> None:
        """Show `value` (None: the default) without sending anything."""
        raise NotImplementedError

    def set_active(self, active: bool) -> None:
        """Whether the param matters now (its spec's `when`)."""
        self.setEnabled(active)
        self.caption.setEnabled(active)

    def _send(self, value: Any, text: str, merge: str | None = None) -> None:
        unset = value is None or (not self.keep_default and self.default is not None and same(value, self.default))
        self.edited.emit(self.name, None if unset else value, text, merge)


class ValueSlider(ParamControl):
    """A slider for a FLOAT param over its span, with its value and a reset button. A drag (press … release) is one
    undo step: its changes share a merge key."""

    def __init__(self, spec: ParamSpec, name: str = "", parent: QWidget | None = None):
        super().__init__(spec, name, parent)
        span = spec.slider_span
        if span is None:  # make_control gives such a spec a NumberSpin
            raise ValueError(f"a slider needs a span or a range, and {spec.name!r} has neither")
        lo, hi = span
        self.lo, self.hi = float(lo), float(hi)
        width = max(self.hi - self.lo, 1e-9)
        self.scale = float(SCALE)  # units per value unit: a power of ten, so that slider values stay round decimals
        while width * self.scale > MAX_SLIDER_UNITS:
            self.scale /= 10
        while width * self.scale < MIN_SLIDER_UNITS:
            self.scale *= 10
        self.default: float | None = float(spec.default) if spec.default is not None else None
        self._gesture = 0
        self.setObjectName(f"slider_{self.name}")
        self.label = self.caption
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName(f"slider_{self.name}_handle")
        self.slider.setRange(self._raw(self.lo), self._raw(self.hi))
        step = spec.step or 0.05 * (1 if width <= 10 else width / 10)
        self.slider.setSingleStep(max(1, round(step * self.scale)))
        self.slider.setPageStep(max(1, round(max(step, width / 12) * self.scale)))
        self.slider.setToolTip(tooltip_of(spec, self.name))
        self.value_label = QLabel()
        self.value_label.setObjectName(f"slider_{self.name}_value")
        self.value_label.setMinimumWidth(40)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.reset_button = QToolButton()
        self.reset_button.setText("⟲")
        self.reset_button.setObjectName(f"slider_{self.name}_reset")
        shown = "unset" if self.default is None else f"{self.default:g}"
        self.reset_button.setToolTip(f"Reset {self.title} to {shown}")
        self.reset_button.setAutoRaise(True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        row.addWidget(self.reset_button)
        self.editor = self.slider
        self._unset = self.default is None
        self.show_value(None)
        self.slider.sliderPressed.connect(self._new_gesture)
        self.slider.sliderReleased.connect(self._new_gesture)
        self.slider.valueChanged.connect(self._on_value_changed)
        self.reset_button.clicked.connect(self.reset)

    def _raw(self, value: float) -> int:
        return round(value * self.scale)

    def value(self) -> float:
        return self._value(self.slider.value())

    def _value(self, raw: int) -> float:
        return raw / self.scale if self.scale >= 1 else raw * round(1 / self.scale)

    def show_value(self, value: Any) -> None:
        self._unset = value is None and self.default is None
        value = value if value is not None else (self.default if self.default is not None else self.lo)
        blocked = self.slider.blockSignals(True)
        self.slider.setValue(self._raw(min(max(float(value), self.lo), self.hi)))
        self.slider.blockSignals(blocked)
        self._show(float(value))

    def reset(self) -> None:
        if self.default is None:
            if not self._unset:
                self.edited.emit(self.name, None, f"Reset {self.title}", None)
            return
        self._new_gesture()
        self.slider.setValue(self._raw(self.default))
        self._new_gesture()

    def _new_gesture(self) -> None:
        self._gesture += 1

    def _show(self, value: float) -> None:
        if self._unset:
            self.value_label.setText("—")
        else:
            self.value_label.setText(f"{value:+.2f}" if self.default == 0 else f"{value:.2f}")
        self.reset_button.setEnabled(not self._unset if self.default is None else abs(value - self.default) > 1e-9)

    def _on_value_changed(self, raw: int) -> None:
        value = self._value(raw)
        self._unset = False
        self._show(value)
        shown = f"{value:+.2f}" if self.default == 0 else f"{value:.2f}"
        self._send(value, f"{self.title} {shown}", f"{self.name}:{self._gesture}")


class NumberSpin(ParamControl):
    """A FLOAT param with no span to slide over: a spin box (typing applies on Enter)."""

    def __init__(self, spec: ParamSpec, name: str = "", parent: QWidget | None = None):
        super().__init__(spec, name, parent)
        self.spin = QDoubleSpinBox()
        self.spin.setObjectName(object_name(self.name, "Spin"))
        lo, hi = spec.range or (-1e9, 1e9)
        self.spin.setRange(lo, hi)
        self.spin.setDecimals(3)
        self.spin.setSingleStep(spec.step or 0.1)
        self.spin.setKeyboardTracking(False)
        self.spin.setToolTip(tooltip_of(spec, self.name))
        _single(self, self.spin, compact=True)
        self.editor = self.spin
        self.show_value(None)
        self.spin.valueChanged.connect(lambda v: self._send(float(v), f"{self.title} {v:g}"))

    def show_value(self, value: Any) -> None:
        value = value if value is not None else (self.default or 0.0)
        _quietly(self.spin, self.spin.setValue, float(value))


class IntSpin(ParamControl):
    """A whole-number param: a spin box over its range (typing applies on Enter, as one step); with a step, values
    snap to whole steps (sizes in latent cells)."""

    def __init__(self, spec: ParamSpec, name: str = "", parent: QWidget | None = None):
        super().__init__(spec, name, parent)
        self.spin = QSpinBox()
        self.spin.setObjectName(object_name(self.name, "Spin"))
        lo, hi = spec.range or (-MAX_INT, MAX_INT)
        lo, hi = int(max(lo, -MAX_INT)), int(min(hi, MAX_INT))
        if isinstance(self.default, int):  # the default always shows (a small model's own size, say)
            lo, hi = min(lo, self.default), max(hi, self.default)
        self.lo, self.hi = lo, hi
        self.step = int(spec.step) if spec.step and spec.step >= 1 else 1
        self.spin.setRange(lo, hi)
        self.spin.setSingleStep(self.step)
        self.spin.setKeyboardTracking(False)  # one change when typing is done, not one per digit
        self.spin.setToolTip(tooltip_of(spec, self.name))
        if self.name in SIZE_FIELDS:
            self.spin.setSuffix(" px")
        _single(self, self.spin, compact=True)
        self.editor = self.spin
        self.show_value(None)
        self.spin.valueChanged.connect(self._on_value_changed)

    def show_value(self, value: Any) -> None:
        value = value if value is not None else self.default
        if value is not None and self.spin.value() != value:
            _quietly(self.spin, self.spin.setValue, int(value))

    def set_bounds(self, lo: int, hi: int) -> None:
        """Narrow the range to [lo, hi] within the spec's (another param bounds this one)."""
        lo, hi = max(self.lo, lo), min(self.hi, hi)
        if lo <= hi:
            _quietly(self.spin, self.spin.setRange, lo, hi)

    def _on_value_changed(self, value: int) -> None:
        snapped = max(self.spin.minimum(), value - value % self.step) if self.step > 1 else value
        if snapped != value:
            _quietly(self.spin, self.spin.setValue, snapped)
        self._send(snapped, f"{self.title} {snapped}")


class SeedEdit(QLineEdit):
    """A seed field for the full 0 … 2⁶⁴−1 range (a QSpinBox stops at 2³¹); ↑/↓ step it."""

    stepped = Signal(int)

    def __init__(self, name: str, tooltip: str, placeholder: str = "", maximum: int = MAX_SEED,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.maximum = maximum
        self.setObjectName(name)
        self.setToolTip(tooltip)
        self.setPlaceholderText(placeholder)
        self.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,20}"), self))

    def seed(self) -> int | None:
        try:
            value = int(self.text())
        except ValueError:
            return None
        return value if 0 <= value <= self.maximum else None

    def keyPressEvent(self, event) -> None:
        step = {Qt.Key.Key_Up: 1, Qt.Key.Key_Down: -1}.get(event.key())
        seed = self.seed()
        if step is not None and seed is not None:
            self.stepped.emit(min(self.maximum, max(0, seed + step)))
            return
        super().keyPressEvent(event)


class SeedControl(ParamControl):
    """A seed param (mix seed, variation seed): Enter applies the typed seed, an empty field unsets it."""

    def __init__(self, spec: ParamSpec, name: str = "", parent: QWidget | None = None):
        super().__init__(spec, name, parent)
        self.field = SeedEdit(object_name(self.name, "Edit"),
                              f"{tooltip_of(spec, self.name)}. Enter applies; ↑/↓ step it; empty: none",
                              "none")
        _single(self, self.field)
        self.editor = self.field
        self.field.returnPressed.connect(self._on_entered)
        self.field.stepped.connect(lambda seed: self._send(seed, f"{self.title} {seed}"))

    def show_value(self, value: Any) -> None:
        value = value if value is not None else self.default
        text = "" if value is None else str(value)
        if self.field.text() != text:
            self.field.setText(text)

    def _on_entered(self) -> None:
        if not self.field.text().strip():
            self._send(None, f"{self.title} off")
        elif self.field.seed() is not None:
            self._send(self.field.seed(), f"{self.title} {self.field.seed()}")


class ChoiceControl(ParamControl):
    """One of the spec's choices: a combo box of their labels (the values in the item data)."""

    def __init__(self, spec: ParamSpec, name: str = "", parent: QWidget | None = None):
        super().__init__(spec, name, parent)
        self.combo = QComboBox()
        self.combo.setObjectName(object_name(self.name, "Combo"))
        self.combo.setToolTip(tooltip_of(spec, self.name))
        for value, label in spec.choices:
            self.combo.addItem(label, value)
        _single(self, self.combo)
        self.editor = self.combo
        self.show_value(None)
        self.combo.activated.connect(self._on_activated)

    def show_value(self, value: Any) -> None:
        value = value if value is not None else self.default
        index = self.combo.findData(value) if value is not None else -1
        if index != self.combo.currentIndex():
            _quietly(self.combo, self.combo.setCurrentIndex, index)

    def _on_activated(self, index: int) -> None:
        value = self.combo.itemData(index)
        if value is not None:
            self._send(value, f"{self.title} {self.combo.itemText(index)}")


class TextControl(ParamControl):
    """A text param: a line edit; typing in one visit of the field is one undo step. With a charset (a glyph model's
    alphabet), a hint says what it draws, and text it cannot draw (or none at all) is not sent."""

    def __init__(self, spec: ParamSpec, name: str = "", parent: QWidget | None = None):
        super().__init__(spec, name, parent)
        self._visits = 0
        self.field = QLineEdit()
        self.field.setObjectName(object_name(self.name, "Edit"))
        self.field.setToolTip(tooltip_of(spec, self.name))
        self.hint = QLabel()
        self.hint.setObjectName(object_name(self.name, "Hint"))
        self.hint.setWordWrap(True)
        self.charset = set(spec.charset)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.field)
        layout.addWidget(self.hint)
        if self.charset:
            self.hint.setText(self.draws())
        else:
            self.hint.hide()
            self.field.setPlaceholderText(spec.help)
        self.editor = self.field
        self.field.installEventFilter(self)
        self.field.textEdited.connect(self._on_edited)

    def draws(self) -> str:
        return f"Draws {ranges(self.spec.charset)} and spaces"

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.field and event.type() == QEvent.Type.FocusIn:
            self._visits += 1
        return super().eventFilter(watched, event)

    def show_value(self, value: Any) -> None:
        value = value if value is not None else (self.default or "")
        if self.field.text() != value:
            self.field.setText(str(value))
        if self.charset:
            self.hint.setText(self.draws())

    def _on_edited(self, text: str) -> None:
        if self.charset:
            bad = sorted({ch for ch in text if ch not in self.charset and not ch.isspace()})
            if bad:
                self.hint.setText(f"<span style='color:#e5a50a'>Cannot draw {' '.join(bad)} — "
                                  f"it draws {ranges(self.spec.charset)} and spaces</span>")
                return
            if not text.strip():
                self.hint.setText("Type something to draw")
                return
            self.hint.setText(self.draws())
        self._send(text, self.title, f"{self.name}:{self._visits}")


class FileControl(ParamControl):
    """A picture or sound param: a picker button, what is set, and Clear. The panel reads the picked file
    (`picked(name, path)`); Clear sends `cleared(name)`."""

    picked = Signal(str, str)
    cleared = Signal(str)
    what = "file"

    def __init__(self, spec: ParamSpec, name: str = "", parent: QWidget | None = None):
        super().__init__(spec, name, parent)
        self.button = QPushButton(f"{self.title.title()}…")
        self.button.setObjectName(object_name(self.name, "Button"))
        self.button.setToolTip(f"{tooltip_of(spec, self.name)}. Choose a {self.what}")
        self.clear = QPushButton("Clear")
        self.clear.setObjectName(object_name(self.name, "ClearButton"))
        self.clear.setToolTip(f"Unset {self.title.lower()}")
        self.preview = QLabel(f"No {self.title.lower()}")
        self.preview.setObjectName(object_name(self.name, "Preview"))
        self.preview.setMinimumHeight(PREVIEW_HEIGHT)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setToolTip(tooltip_of(spec, self.name))
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.button, 1)
        buttons.addWidget(self.clear, 1)
        self.caption.setParent(self)  # the button says what it picks: the control spans its row
        self.caption.hide()
        self.spans = True
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(buttons)
        layout.addWidget(self.preview)
        self.editor = self.button
        self._shown: Any = object()
        self.show_value(None)
        self.button.clicked.connect(self._choose)
        self.clear.clicked.connect(lambda: self.cleared.emit(self.name))

    def ask(self) -> str:
        raise NotImplementedError

    def _choose(self) -> None:
        path = self.ask()
        if path:
            self.picked.emit(self.name, path)

    def show_value(self, value: Any) -> None:
        self.clear.setEnabled(value is not None)
        if value == self._shown:
            return
        self._shown = value
        self._show(value)

    def _show(self, value: str | None) -> None:
        raise NotImplementedError


class ImageControl(FileControl):
    what = "picture"

    def ask(self) -> str:
        from studio.ui import dialogs

        return dialogs.ask_init_image(self)

    def _show(self, value: str | None) -> None:
        from studio.ui.images import pixmap_from_png

        pixmap = None
        if value is not None:
            try:
                pixmap = pixmap_from_png(base64.b64decode(value.encode("ascii"), validate=True))
            except (ValueError, binascii.Error):
                pixmap = None
        if pixmap is not None and not pixmap.isNull():
            self.preview.setPixmap(pixmap.scaledToHeight(PREVIEW_HEIGHT, Qt.TransformationMode.SmoothTransformation))
        else:
            self.preview.clear()
            self.preview.setText(f"{self.title} set (unreadable)" if value is not None
                                 else f"No {self.title.lower()}")


class SoundControl(FileControl):
    what = "sound"

    def ask(self) -> str:
        from studio.ui import dialogs

        return dialogs.ask_sound(self)

    def _show(self, value: str | None) -> None:
        if value is None:
            self.preview.setText(f"No {self.title.lower()}")
            return
        import io

        import soundfile as sf

        try:
            info = sf.info(io.BytesIO(base64.b64decode(value.encode("ascii"), validate=True)))
            self.preview.setText(f"{info.duration:.2f} s at {info.samplerate} Hz")
        except (ValueError, binascii.Error, RuntimeError, sf.LibsndfileError):
            self.preview.setText(f"{self.title} set (unreadable)")


def _single(owner: QWidget, widget: QWidget, compact: bool = False) -> None:
    """`widget` as all of `owner` (or, `compact`, at its own width on the left: a number box)."""
    layout = QHBoxLayout(owner)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(widget)
    if compact:
        widget.setMinimumWidth(NUMBER_WIDTH)
        layout.addStretch(1)


def _quietly(widget: QObject, setter, *args) -> None:
    blocked = widget.blockSignals(True)
    try:
        setter(*args)
    finally:
        widget.blockSignals(blocked)


CONTROLS: dict[Kind, type[ParamControl]] = {
    Kind.FLOAT: ValueSlider, Kind.INT: IntSpin, Kind.SEED: SeedControl, Kind.CHOICE: ChoiceControl,
    Kind.TEXT: TextControl, Kind.IMAGE: ImageControl, Kind.SOUND: SoundControl,
}


def make_control(spec: ParamSpec, name: str = "") -> ParamControl:
    """The control for param `name` (default: the spec's own name) by the spec's kind."""
    if spec.kind is Kind.FLOAT and spec.slider_span is None:
        return NumberSpin(spec, name)
    return CONTROLS[spec.kind](spec, name)

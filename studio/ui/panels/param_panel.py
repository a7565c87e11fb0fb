"""The panel base of generated controls: the specs of the model's groups laid out as boxes of controls (made by
`studio.ui.panels.controls`), each change sent to the session as one undoable step (`session.set_param`, or
`session.change` for core fields such as width and height), pictures and sounds read into their params.

Layout: a group is a box with a form of caption + control rows, in the family's order; single controls come before
indexed lists (d0 …); two consecutive whole-number specs over one range share a row ("Layers 0 to 8", a size
"w × h"); pickers span their row. No torch here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QScrollArea, QWidget

from studio.params import Capability, Kind, ParamSpec, ParamTable
from studio.request import CORE_FIELDS, RenderRequest
from studio.ui.panels.controls import (SIZE_FIELDS, FileControl, IntSpin, ParamControl, ValueSlider, holds,
                                       make_control, object_name)
from studio.ui.panels.lora_list import LoraListControl, is_lora_list

if TYPE_CHECKING:
    from studio.ui.session import Session

MAX_RAW_SLIDERS = 256  # an indexed spec of more values than this gets no sliders (a diffusion noise has thousands)
INIT_IMAGE = "init_image"  # Capability.IMG2IMG's param: the session fits its picture to what the model draws
MAX_ROW = 2  # consecutive whole-number specs of one range share a row (a layer range "Layers 0 to 8", a size)


# --- files into params ----------------------------------------------------------------------------------------------


def picture_param(path: str | Path, max_side: int = 1024) -> str:
    """A picture file as an IMAGE param holds it: a base64 PNG (grey or RGB, transparency over white), at most
    `max_side` px on its longer side. RequestError naming the file when it is not a readable picture."""
    from studio.export.image import read_picture
    from studio.io.images import encode_init_image

    return encode_init_image(read_picture(path, max_side, colour=True))


def sound_param(path: str | Path, max_seconds: float = 60.0) -> str:
    """A sound file as a SOUND param holds it (a base64 FLAC, at its own rate)."""
    import io

    import soundfile as sf

    from studio.export.audio import read_sound

    wave, info = read_sound(path, None, max_seconds=max_seconds)
    buffer = io.BytesIO()
    sf.write(buffer, wave, int(info["sample_rate"]), format="FLAC")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# --- panels ---------------------------------------------------------------------------------------------------------


class FittingScrollArea(QScrollArea):
    """A frameless scroll area that asks for its content's whole height, up to `fit_height` as its minimum: a dock
    holding it is laid out to show the content when it can, and scrolls when it cannot (many params)."""

    def __init__(self, content: QWidget, fit_height: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.fit_height = fit_height
        self._content = content  # the area's widget for good (widget() is typed as maybe None)
        self.setWidgetResizable(True)
        self.setWidget(content)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # new controls (shown later by Qt): the dock is asked for room again
        return super().eventFilter(watched, event)

    def _extra(self) -> int:
        return self.verticalScrollBar().sizeHint().width()

    def sizeHint(self) -> QSize:
        hint = self._content.sizeHint()
        return QSize(hint.width() + self._extra(), hint.height())

    def minimumSizeHint(self) -> QSize:
        hint = self._content.minimumSizeHint()
        return QSize(hint.width() + self._extra(), min(hint.height(), self.fit_height))


def group_order(specs: Sequence[ParamSpec], groups: Sequence[str] | None = None,
                first: Sequence[str] = ()) -> list[str]:
    """The groups of `specs` to show: those of `groups` (None: every group) — the names of `first` first, in that
    order, then the others in the order the family declares them."""
    declared = list(dict.fromkeys(s.group for s in specs if groups is None or s.group in groups))
    return [g for g in first if g in declared] + [g for g in declared if g not in first]


def shown_specs(specs: Iterable[ParamSpec]) -> list[ParamSpec]:
    """The specs that get a control: not the core fields the panels show themselves (seed, latent, dtype); width and
    height do (the size row)."""
    return [s for s in specs if not s.is_core or s.name in SIZE_FIELDS]


class ParamPanel(QWidget):
    """A panel of generated controls: `controls` by param name; every change goes to the session as one undoable
    step (`session.set_param`, or `session.change` for core fields)."""

    def __init__(self, session: "Session", parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.controls: dict[str, ParamControl] = {}
        self.boxes: dict[str, QWidget] = {}  # group name → its box
        self.table = ParamTable(())
        self._written: set[str] = set()  # params the model's default request writes out (kept when at the default)
        self.entry: Any = None  # the model's library entry (a LoRA list lists the files beside it)

    # --- building -------------------------------------------------------------------------------------------------
    @property
    def sliders(self) -> dict[str, ValueSlider]:
        return {name: c for name, c in self.controls.items() if isinstance(c, ValueSlider)}

    def control(self, name: str) -> ParamControl | None:
        return self.controls.get(name)

    def editor(self, name: str) -> QWidget | None:
        """The input widget of param `name` (its slider, spin box, combo box, line edit, picker button)."""
        control = self.controls.get(name)
        return control.editor if control is not None else None

    def group_box(self, group: str) -> QWidget | None:
        return self.boxes.get(group)

    def _forget_controls(self) -> None:
        for box in self.boxes.values():
            box.setParent(None)
            box.deleteLater()
        self.boxes = {}
        self.controls = {}

    def _adopt(self, entry) -> None:
        ok = entry is not None and getattr(entry, "ok", False) and entry.manifest is not None
        self.table = entry.parameters if ok else ParamTable(())
        self.entry = entry if ok else None
        try:
            self._written = set(entry.default_request().params) if ok else set()
        except Exception:  # noqa: BLE001 - a broken package shows no controls rather than breaking the panel
            self._written = set()

    def _build_group(self, title: str, specs: Sequence[ParamSpec], boxed: bool = True,
                     limit: int | None = None) -> QWidget:
        """A box of the controls of `specs` (in their order; single controls before indexed lists; two consecutive
        whole-number specs over one range on one row); indexed specs of more than `limit` values get none."""
        box: QWidget = QGroupBox(title) if boxed else QWidget()
        box.setObjectName(object_name(re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_"), "Group"))
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        if not boxed:
            form.setContentsMargins(0, 0, 0, 0)
        singles = [s for s in specs if not s.count]
        lists = [s for s in specs if s.count and (limit is None or s.count <= limit)]
        row: list[ParamControl] = []

        def flush() -> None:
            if not row:
                return
            if len(row) == 1:
                form.addRow(row[0].caption, row[0])
            else:
                line = QWidget()
                layout = QHBoxLayout(line)
                layout.setContentsMargins(0, 0, 0, 0)
                for k, control in enumerate(row):
                    if k:
                        if all(c.name in SIZE_FIELDS for c in row):
                            control.caption.setText("×")
                        control.caption.setMinimumWidth(0)
                        layout.addWidget(control.caption)
                    layout.addWidget(control)
                layout.addStretch(1)
                if all(c.name in SIZE_FIELDS for c in row):
                    row[0].caption.setText("Size")
                form.addRow(row[0].caption, line)
            row.clear()

        for spec in singles:
            control = self._add_control(spec, spec.name)
            if spec.kind is Kind.INT:
                if row and (len(row) == MAX_ROW or row[-1].spec.range != spec.range):
                    flush()
                row.append(control)
                continue
            flush()
            if control.spans:
                form.addRow(control)
            else:
                form.addRow(control.caption, control)
        flush()
        for spec in lists:
            for name in spec.names():
                control = self._add_control(spec, name)
                form.addRow(control.caption, control)
        self.boxes[title] = box
        return box

    def _add_control(self, spec: ParamSpec, name: str) -> ParamControl:
        control = LoraListControl(spec, name, self.entry) if is_lora_list(spec) else make_control(spec, name)
        control.keep_default = name in self._written
        control.edited.connect(self._on_control_edited)
        if isinstance(control, FileControl):
            control.picked.connect(self._on_file_picked)
            control.cleared.connect(self._on_file_cleared)
        self.controls[name] = control
        return control

    # --- session → controls ---------------------------------------------------------------------------------------
    def _show_params(self, request: RenderRequest | None) -> None:
        if request is None:
            return
        for name, control in self.controls.items():
            if name in CORE_FIELDS:
                control.show_value(getattr(request, name))
            else:
                control.show_value(self.table.value(request, name))
            control.set_active(holds(control.spec, self.table, request))
        self._bound_pairs(request)

    def _bound_pairs(self, request: RenderRequest) -> None:
        """A param that may not exceed another (`spec.at_most`, a layer range's start and end): each spin box stops
        at the other's value."""
        for name, control in self.controls.items():
            other_name = getattr(control.spec, "at_most", "") or ""
            other = self.controls.get(other_name)
            if not isinstance(control, IntSpin) or not isinstance(other, IntSpin):
                continue
            mine, theirs = self.table.value(request, name), self.table.value(request, other_name)
            if mine is None or theirs is None:
                continue
            control.set_bounds(control.lo, int(theirs))
            other.set_bounds(int(mine), other.hi)

    # --- controls → session ---------------------------------------------------------------------------------------
    def _on_control_edited(self, name: str, value: Any, text: str, merge: str | None) -> None:
        if self.session.request is None:
            return
        if name in CORE_FIELDS:
            if getattr(self.session.request, name) != value:
                self.session.change(text, merge, **{name: value})
        else:
            self.session.set_param(name, value, text, merge)

    def _on_file_picked(self, name: str, path: str) -> None:
        spec = self.table.find(name)
        if spec is None:
            return
        if name == INIT_IMAGE and Capability.IMG2IMG in self._capabilities():
            self.session.set_init_image(path)  # fitted to what the model draws, with a starting strength
            return
        try:
            value = picture_param(path) if spec.kind is Kind.IMAGE else sound_param(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, never raised into Qt
            problem = getattr(exc, "problem", None) or str(exc)
            self.session.message.emit("error", f"Cannot use {Path(path).name} as {spec.title.lower()}", problem)
            return
        self.session.set_param(name, value, f"{spec.title} {Path(path).name}")

    def _on_file_cleared(self, name: str) -> None:
        if name == INIT_IMAGE and Capability.IMG2IMG in self._capabilities():
            self.session.clear_init_image()  # its strength goes with it
            return
        spec = self.table.find(name)
        self.session.set_param(name, None, f"Clear {spec.title.lower() if spec else name}")

    def _capabilities(self) -> Capability:
        entry = self.session.entry
        return entry.capabilities if entry is not None else Capability.NONE
